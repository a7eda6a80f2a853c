"""The terminal chat's read-answer loop and its slash commands, over any backend of ``cli/chat.py``.

A backend answers (``answer``) and may offer more: ``continue_last`` (``/continue``),
``history``/``new`` (a stored conversation), ``set_system`` (a stored conversation keeps its own
system prompt). What a backend lacks, the REPL keeps itself (the history, the system prompt).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Protocol

from xiaoq.cli.chat_input import read_message
from xiaoq.cli.chat_remote import Reply, Turn, Write
from xiaoq.engine.types import SamplingParams
from xiaoq.errors import XiaoQError

USER_PROMPT = "你> "
BOT_PREFIX = "小Q> "
HELP_TEXT = (
    "/continue goes on with a cut reply · /system [TEXT|default] · /set [temperature|top_p|max_tokens|seed VALUE] · "
    "/save FILE.md · /history · /reset · /new · /exit (or Ctrl-D) · Ctrl-C stops an answer · "
    'a pasted block is one message; type several lines between """ lines, or end a line with \\'
)
#: /set NAME VALUE: (parse, check, message when the check fails).
SETTABLE: dict[str, tuple[Callable[[str], Any], Callable[[Any], bool], str]] = {
    "temperature": (float, lambda v: 0 <= v <= 2, "between 0 and 2"),
    "top_p": (float, lambda v: 0 < v <= 1, "above 0 and at most 1"),
    "max_tokens": (int, lambda v: v >= 1, "a whole number of at least 1"),
    "seed": (int, lambda v: 0 <= v < 2**32, "a whole number from 0"),
}


class Backend(Protocol):
    """What the REPL needs from where the answers come from."""

    name: str

    def start(self) -> None: ...

    def answer(self, system: str, history: list[Turn], prompt: str, sampling: SamplingParams, write: Write) -> Reply: ...

    def close(self) -> None: ...


class Repl:
    """Read a message, answer it, repeat; lines starting with ``/`` are commands."""

    def __init__(self, backend: Backend, system: str, sampling: SamplingParams, out: Any = None, speak: Optional[Callable[[], Any]] = None, max_tokens: int = 0):
        self.backend = backend
        #: Makes a :class:`~xiaoq.voice.speaking.SpokenReply` per answer when answers are read aloud.
        self.speak = speak
        self.system = system
        self.default_system = system
        self.sampling = sampling
        self.max_tokens = max_tokens  # the server-side cap /set max_tokens must respect (0: none)
        self.out = out or sys.stdout
        self.history: list[Turn] = []
        self.commands: dict[str, Callable[[str], bool]] = {
            "/reset": self.cmd_reset,
            "/exit": self.cmd_exit,
            "/quit": self.cmd_exit,
            "/help": self.cmd_help,
            "/history": self.cmd_history,
            "/new": self.cmd_new,
            "/system": self.cmd_system,
            "/set": self.cmd_set,
            "/save": self.cmd_save,
            "/continue": self.cmd_continue,
        }

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    # ---- commands (each returns False to leave) ----------------------------------------------
    def cmd_reset(self, arg: str) -> bool:
        self.history.clear()
        self.write("(history cleared)\n")
        return True

    def cmd_exit(self, arg: str) -> bool:
        return False

    def cmd_help(self, arg: str) -> bool:
        self.write(HELP_TEXT + "\n")
        return True

    def turns(self) -> list[Turn]:
        """The turns so far (a stored conversation's come from the database or server)."""
        stored = getattr(self.backend, "history", None)
        return stored() if callable(stored) else self.history

    def cmd_history(self, arg: str) -> bool:
        turns = self.turns()
        for user, bot in turns:
            self.write(f"{USER_PROMPT}{user}\n{BOT_PREFIX}{bot}\n")
        if not turns:
            self.write("(no history yet)\n")
        return True

    def cmd_new(self, arg: str) -> bool:
        """A fresh conversation (a new stored one when chatting with --conversation)."""
        self.history.clear()
        new = getattr(self.backend, "new", None)
        self.write(f"(new conversation {new()})\n" if callable(new) else "(new conversation)\n")
        return True

    def cmd_system(self, arg: str) -> bool:
        """``/system`` shows the prompt, ``/system TEXT`` sets it, ``/system default`` restores it."""
        if not arg:
            self.write(f"(system prompt: {self.system})\n")
            return True
        text = None if arg == "default" else arg
        stored = getattr(self.backend, "set_system", None)
        if callable(stored):
            try:
                stored(text)  # the stored conversation keeps it; the server's default when None
            except XiaoQError as e:
                self.write(f"[error: {e.message}]\n")
                return True
        self.system = self.default_system if text is None else text
        self.write("(system prompt set)\n" if text is not None else "(system prompt: the default)\n")
        return True

    def cmd_set(self, arg: str) -> bool:
        name, _, value = arg.partition(" ")
        name = name.replace("-", "_")
        if not name:
            s = self.sampling
            self.write(f"(temperature {s.temperature} · top_p {s.top_p} · max_tokens {s.max_tokens} · seed {s.seed})\n")
            return True
        if name not in SETTABLE:
            self.write(f"[error: /set knows {', '.join(SETTABLE)}]\n")
            return True
        parse, ok, rule = SETTABLE[name]
        try:
            parsed = parse(value.strip())
        except ValueError:
            parsed = None
        cap = self.max_tokens if name == "max_tokens" and self.max_tokens else None
        if parsed is None or not ok(parsed) or (cap is not None and parsed > cap):
            self.write(f"[error: {name} must be {rule}{f' and at most {cap}' if cap else ''}]\n")
            return True
        self.sampling = replace(self.sampling, **{name: parsed})
        self.write(f"({name} = {parsed})\n")
        return True

    def cmd_save(self, arg: str) -> bool:
        if not arg:
            self.write("[error: /save needs a file name, e.g. /save chat.md]\n")
            return True
        path = Path(arg).expanduser()
        try:
            path.write_text(transcript(self.system, self.turns()), encoding="utf-8")
        except OSError as e:
            self.write(f"[error: cannot write {path}: {e.strerror or e}]\n")
            return True
        self.write(f"(saved to {path})\n")
        return True

    def cmd_continue(self, arg: str) -> bool:
        go_on = getattr(self.backend, "continue_last", None)
        if not self.turns():
            self.write("(nothing to continue yet)\n")
        elif not callable(go_on):
            self.write("[error: /continue needs a local model or a stored conversation (--conversation)]\n")
        else:
            self.write(BOT_PREFIX + "…")
            reply = self._stream(lambda write: go_on(self.system, self.history, self.sampling, write))
            if reply.text and self.history:
                user, bot = self.history[-1]
                self.history[-1] = (user, bot + reply.text)
        return True

    # ---- the loop ---------------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            try:
                text = read_message(USER_PROMPT).strip()
            except (EOFError, KeyboardInterrupt):  # Ctrl-D / Ctrl-C at the prompt: leave
                self.write("\n")
                return
            if not text:
                continue
            if text.startswith("/") and "\n" not in text:
                name, _, arg = text.partition(" ")
                command = self.commands.get(name.lower())
                if command is None:
                    self.write(f"unknown command {name}: {HELP_TEXT}\n")
                    continue
                if not command(arg.strip()):
                    return
                continue
            self.ask(text)

    def ask(self, prompt: str) -> Reply:
        self.write(BOT_PREFIX)
        reply = self._stream(lambda write: self.backend.answer(self.system, self.history, prompt, self.sampling, write))
        if reply.text:  # a stopped answer stays in the history as far as it went
            self.history.append((prompt, reply.text))
        return reply

    def _stream(self, run: Callable[[Write], Reply]) -> Reply:
        spoken = self.speak() if self.speak else None
        write = self.write if spoken is None else lambda piece: (self.write(piece), spoken.feed(piece))[0]
        reply = run(write)
        self.write(ending(reply) + "\n")
        if spoken is not None:
            self._finish_speaking(spoken, reply)
        return reply

    def _finish_speaking(self, spoken: Any, reply: Reply) -> None:
        """Wait until the answer has been spoken; Ctrl-C (or a stopped answer) cuts the speech."""
        if reply.finish_reason in ("cancelled", "error"):
            spoken.stop()
            return
        try:
            spoken.finish()
        except KeyboardInterrupt:
            spoken.stop()
            self.write("[speech stopped]\n")


def ending(reply: Reply) -> str:
    """The note after a reply that did not simply end ('' when it did)."""
    if reply.finish_reason == "cancelled":
        return "\n[stopped]"
    if reply.finish_reason == "error":
        return f"\n[error: {reply.error or 'generation failed'}]"
    if reply.finish_reason == "length":
        return "\n[reply cut at --max-tokens] (/continue goes on)"
    if reply.finish_reason == "repetition":
        return "\n[stopped: the answer was repeating itself] (/continue goes on)"
    return ""


def transcript(system: str, turns: list[Turn]) -> str:
    """The chat as Markdown, for ``/save``."""
    out = ["# XiaoQ chat", ""]
    if system:
        out += ["> **System:** " + system.replace("\n", "\n> "), ""]
    for user, bot in turns:
        out += ["## User", "", user, "", "## XiaoQ", "", bot, ""]
    return "\n".join(out).rstrip() + "\n"

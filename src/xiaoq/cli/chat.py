"""``xiaoq chat``: a terminal chat that streams the answer as it is generated.

Two backends speak the same small interface: :class:`LocalBackend` loads the engine in this process
(the default), :class:`~xiaoq.cli.chat_remote.RemoteBackend` talks to a running server's ``/chat``
SSE endpoint (``--url``); ``cli/chat_stored.py`` adds both over a stored conversation.
The REPL keeps the multi-turn history, so each turn sends the whole conversation.

Ctrl-C semantics (what terminal users expect): during an answer it cancels that generation (the
engine stops between tokens; over HTTP the connection is closed, which the server treats the same)
and returns to the prompt; at the prompt it leaves. Ctrl-D and ``/exit`` leave too.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Protocol

import click

from xiaoq.chat import policy
from xiaoq.chat.budget import plan_context
from xiaoq.cli.chat_remote import RemoteBackend, Reply, Turn, Write
from xiaoq.cli.options import build_settings, settings_options
from xiaoq.cli.runtime import model_path, pin_cpus
from xiaoq.config import Settings
from xiaoq.engine.types import ChatMessage, SamplingParams
from xiaoq.errors import XiaoQError

#: Settings that shape the in-process engine and sampling, offered as ``chat`` options.
CHAT_SETTINGS = ("model", "quant", "ctx", "threads", "batch", "parallel", "cpus", "mmap", "kv_cache_mb",
                 "system_prompt", "temperature", "top_p", "default_max_tokens", "seed", "api_key", "db", "tts", "tts_voice")
#: ``chat`` spells some settings the way a chat user thinks of them.
CHAT_FLAGS = {"system_prompt": "--system", "default_max_tokens": "--max-tokens"}
CHAT_HELPS = {
    "system_prompt": "System prompt of this chat",
    "default_max_tokens": "Longest reply, in tokens (at most XIAOQ_MAX_TOKENS, as on the server)",
    "temperature": "Sampling temperature",
    "api_key": "API key sent to the --url server",
}

#: Settings sent to a server's /chat (as these body fields) when the user set them.
REMOTE_FIELDS = {"system_prompt": "system", "default_max_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "seed": "seed"}

USER_PROMPT = "你> "
BOT_PREFIX = "小Q> "
HELP_TEXT = "/reset clears the history · /history shows it · /new starts over · /exit quits (or Ctrl-D) · Ctrl-C stops an answer"


class Backend(Protocol):
    """What the REPL needs from where the answers come from."""

    name: str

    def start(self) -> None: ...

    def answer(self, system: str, history: list[Turn], prompt: str, sampling: SamplingParams, write: Write) -> Reply: ...

    def close(self) -> None: ...


class LocalBackend:
    """The engine in this process, driven by a private event loop between ``input()`` calls."""

    def __init__(self, path: Path, settings: Settings):
        from xiaoq.engine.llama_engine import LlamaEngine

        self.path = path
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.engine = LlamaEngine(path, settings)

    @property
    def name(self) -> str:
        return self.engine.model_name  # the GGUF's general.name once loaded

    def start(self) -> None:
        self.loop.run_until_complete(self.engine.start())

    def _fit(self, system: str, history: list[Turn], prompt: str, max_tokens: int) -> tuple[list[ChatMessage], int]:
        """The server's budget (``chat/budget.py``) without summaries: the oldest whole turns drop
        out (in chunks, so the cached prefix stays), then the reply shrinks."""
        plan = plan_context(system=system, turns=history, new_message=prompt, n_ctx=self.engine.n_ctx,
                            max_tokens=max_tokens, count=self.engine.count_prompt_tokens, summary_reserve=0)
        return plan.messages, plan.max_tokens

    def answer(self, system: str, history: list[Turn], prompt: str, sampling: SamplingParams, write: Write) -> Reply:
        from xiaoq.engine.types import GenerationRequest

        async def run() -> Reply:
            messages, max_tokens = self._fit(system, history, prompt, sampling.max_tokens)
            gen = await self.engine.submit(GenerationRequest(messages=messages, sampling=replace(sampling, max_tokens=max_tokens)))
            # Ctrl-C now cancels this generation instead of raising KeyboardInterrupt; the engine
            # stops between tokens and finishes the stream with finish_reason 'cancelled'.
            self.loop.add_signal_handler(signal.SIGINT, gen.cancel)
            parts: list[str] = []
            try:
                async for piece in gen:
                    parts.append(piece)
                    write(piece)
            finally:
                self.loop.remove_signal_handler(signal.SIGINT)  # back to KeyboardInterrupt
            result = gen.result
            reason = result.finish_reason if result else ("cancelled" if gen.cancelled else "error")
            return Reply("".join(parts), reason, result.error if result else None)

        try:
            return self.loop.run_until_complete(run())
        except XiaoQError as e:  # context too long, busy, ...: report and keep chatting
            return Reply("", "error", e.message)

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.engine.close())
        finally:
            self.loop.close()


# ---- the REPL ---------------------------------------------------------------------------------


class Repl:
    """Read a line, answer it, repeat. Slash commands live in :attr:`commands` (later: /history, /new)."""

    def __init__(self, backend: Backend, system: str, sampling: SamplingParams, out: Any = None, speak: Optional[Callable[[], Any]] = None):
        self.backend = backend
        #: Makes a :class:`~xiaoq.voice.speaking.SpokenReply` per answer when answers are read aloud.
        self.speak = speak
        self.system = system
        self.sampling = sampling
        self.out = out or sys.stdout
        self.history: list[Turn] = []
        self.commands: dict[str, Callable[[str], bool]] = {
            "/reset": self.cmd_reset,
            "/exit": self.cmd_exit,
            "/quit": self.cmd_exit,
            "/help": self.cmd_help,
            "/history": self.cmd_history,
            "/new": self.cmd_new,
        }

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def cmd_reset(self, arg: str) -> bool:
        self.history.clear()
        self.write("(history cleared)\n")
        return True

    def cmd_exit(self, arg: str) -> bool:
        return False

    def cmd_help(self, arg: str) -> bool:
        self.write(HELP_TEXT + "\n")
        return True

    def cmd_history(self, arg: str) -> bool:
        """The turns so far (a stored conversation's come from the database or server)."""
        stored = getattr(self.backend, "history", None)
        turns = stored() if callable(stored) else self.history
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

    def run(self) -> None:
        while True:
            try:
                line = input(USER_PROMPT)
            except (EOFError, KeyboardInterrupt):  # Ctrl-D / Ctrl-C at the prompt: leave
                self.write("\n")
                return
            text = line.strip()
            if not text:
                continue
            if text.startswith("/"):
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
        spoken = self.speak() if self.speak else None
        write = self.write if spoken is None else lambda piece: (self.write(piece), spoken.feed(piece))[0]
        reply = self.backend.answer(self.system, self.history, prompt, self.sampling, write)
        if reply.finish_reason == "cancelled":
            self.write("\n[stopped]\n")
        elif reply.finish_reason == "error":
            self.write(f"\n[error: {reply.error or 'generation failed'}]\n")
        elif reply.finish_reason == "length":
            self.write("\n[reply cut at --max-tokens]\n")
        else:
            self.write("\n")
        if spoken is not None:
            self._finish_speaking(spoken, reply)
        if reply.text:  # a stopped answer stays in the history as far as it went
            self.history.append((prompt, reply.text))
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


def _setup_terminal() -> None:
    """Line editing for input() when interactive; never crash on a non-UTF-8 terminal."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")  # type: ignore[attr-defined]
        except (AttributeError, ValueError):
            pass
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401  (importing it is enough: input() gains editing and history)
        except ImportError:
            pass


@click.command()
@click.option("--url", default=None, metavar="URL", help="Chat with a running XiaoQ server (e.g. http://127.0.0.1:8000) instead of loading the model here")
@click.option("--conversation", default=None, metavar="ID", help="Continue a stored conversation (from the web UI, or 'new'); it is saved as you chat")
@click.option("--speak", is_flag=True, default=False, help="Read the answers aloud (espeak-ng or Piper, see --tts) on the default audio device")
@settings_options(CHAT_SETTINGS, flags=CHAT_FLAGS, helps=CHAT_HELPS)
def chat(url: Optional[str], conversation: Optional[str], speak: bool, **given: Any) -> None:
    """Chat in the terminal, streaming. /reset clears the history, /exit quits, Ctrl-C stops an answer."""
    settings = build_settings(given, flags=CHAT_FLAGS)
    sampling = SamplingParams(
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_tokens=policy.default_max_tokens(settings),
        seed=settings.seed,
    )
    _setup_terminal()
    backend: Backend
    if url:
        if conversation:
            from xiaoq.cli.chat_stored import StoredRemoteBackend

            backend = StoredRemoteBackend(url, conversation, settings.key())
        else:
            # Only what the user chose (flag or env) travels; the server's defaults cover the rest.
            chosen = {wire for field, wire in REMOTE_FIELDS.items() if field in settings.model_fields_set}
            backend = RemoteBackend(url, settings.key(), send=chosen)
        click.echo(f"connecting to {url}…", err=True)
    else:
        pin_cpus(settings)
        path = model_path(settings)
        click.echo(f"loading model {path.name}…", err=True)
        if conversation:
            from xiaoq.cli.chat_stored import StoredLocalBackend

            backend = StoredLocalBackend(path, settings, conversation)
        else:
            backend = LocalBackend(path, settings)
    speaker = None
    if speak:
        from xiaoq.cli.voice_out import reply_speaker

        speaker = reply_speaker(settings)
    try:
        backend.start()
        click.echo(f"XiaoQ chat · {backend.name} · {HELP_TEXT}", err=True)
        Repl(backend, policy.system_prompt(settings, None), sampling, speak=speaker).run()
    finally:
        backend.close()

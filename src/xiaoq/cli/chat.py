"""``xiaoq chat``: a terminal chat that streams the answer as it is generated.

Two backends speak the same small interface: :class:`LocalBackend` loads the engine in this process
(the default), :class:`~xiaoq.cli.chat_remote.RemoteBackend` talks to a running server's ``/chat``
SSE endpoint (``--url``); ``cli/chat_stored.py`` adds both over a stored conversation.
The REPL (``cli/repl.py``) keeps the multi-turn history, so each turn sends the whole conversation.
``xiaoq chat "question"`` answers once and exits; so does ``xiaoq chat`` with stdin not a terminal,
sending the whole of stdin as one message (``--repl`` reads it line by line as commands and
messages instead, for scripts).

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
from typing import Any, Optional

import click

from xiaoq.chat import policy
from xiaoq.chat.budget import plan_context
from xiaoq.cli.chat_remote import RemoteBackend, Reply, Turn, Write
from xiaoq.cli.repl import BOT_PREFIX, HELP_TEXT, USER_PROMPT, Backend, Repl, ending
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
        messages, max_tokens = self._fit(system, history, prompt, sampling.max_tokens)
        return self._run(messages, replace(sampling, max_tokens=max_tokens), write)

    def continue_last(self, system: str, history: list[Turn], sampling: SamplingParams, write: Write) -> Reply:
        """Go on with the last reply: it is sent as an open assistant message (``continue_last``)."""
        *past, (prompt, reply) = history
        so_far = len(self.engine.tokenize(reply))
        messages, room = self._fit(system, past, prompt, sampling.max_tokens + so_far)
        max_tokens = max(1, min(sampling.max_tokens, room - so_far))
        messages = [*messages, ChatMessage(role="assistant", content=reply)]
        return self._run(messages, replace(sampling, max_tokens=max_tokens), write, continue_last=True)

    def _run(self, messages: list[ChatMessage], sampling: SamplingParams, write: Write, continue_last: bool = False) -> Reply:
        from xiaoq.engine.types import GenerationRequest

        async def run() -> Reply:
            gen = await self.engine.submit(GenerationRequest(messages=messages, sampling=sampling, continue_last=continue_last))
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


def terminal_sampling(settings: Settings) -> SamplingParams:
    """The sampling a terminal session (`xiaoq chat`, `xiaoq listen`) asks for: the server's
    defaults, with the reply cap decided where the server decides it (``chat/policy.py``)."""
    return SamplingParams(
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_tokens=policy.default_max_tokens(settings),
        seed=settings.seed,
    )


@click.command()
@click.argument("question", nargs=-1)
@click.option("--repl", is_flag=True, default=False, help="Read stdin line by line as messages and /commands even when it is not a terminal (for scripts)")
@click.option("--url", default=None, metavar="URL", help="Chat with a running XiaoQ server (e.g. http://127.0.0.1:8000) instead of loading the model here")
@click.option("--conversation", default=None, metavar="ID", help="Continue a stored conversation (from the web UI, or 'new'); it is saved as you chat")
@click.option("--speak", is_flag=True, default=False, help="Read the answers aloud (espeak-ng or Piper, see --tts) on the default audio device")
@settings_options(CHAT_SETTINGS, flags=CHAT_FLAGS, helps=CHAT_HELPS)
def chat(question: tuple[str, ...], repl: bool, url: Optional[str], conversation: Optional[str], speak: bool, **given: Any) -> None:
    """Chat in the terminal, streaming; /help lists the commands, Ctrl-C stops an answer.

    With QUESTION (or with stdin not a terminal: all of it, as one message) XiaoQ answers once
    and exits."""
    settings = build_settings(given, flags=CHAT_FLAGS)
    sampling = terminal_sampling(settings)
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
        once = one_message(question, repl)  # read after the model loaded: its errors come first
        if once is not None:
            answer_once(backend, policy.system_prompt(settings, None, once), sampling, once)
            return
        click.echo(f"XiaoQ chat · {backend.name} · {HELP_TEXT}", err=True)
        Repl(backend, policy.system_prompt(settings, None), sampling, speak=speaker, max_tokens=settings.max_tokens).run()
    finally:
        backend.close()


def one_message(question: tuple[str, ...], repl: bool) -> Optional[str]:
    """The message of a one-shot chat: the QUESTION words, else all of a stdin that is not a
    terminal (unless ``--repl``); None for the interactive chat."""
    if question:
        text = " ".join(question)
    elif repl or sys.stdin.isatty():
        return None
    else:
        text = sys.stdin.read()
    if not text.strip():
        raise click.UsageError("nothing to send: the question is empty")
    return text.strip("\n")


def answer_once(backend: Backend, system: str, sampling: SamplingParams, message: str) -> None:
    """Stream one answer to stdout; a reply that did not simply end says why on stderr (exit 1
    when it failed or was stopped)."""
    reply = backend.answer(system, [], message, sampling, lambda piece: (sys.stdout.write(piece), sys.stdout.flush()))
    click.echo()
    note = ending(reply).strip().replace(" (/continue goes on)", "")
    if note:
        click.echo(note, err=True)
    if reply.finish_reason in ("error", "cancelled"):
        sys.exit(1 if reply.finish_reason == "error" else 130)

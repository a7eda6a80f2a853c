"""``xiaoq chat``: a terminal chat that streams the answer as it is generated.

Two backends speak the same small interface: :class:`LocalBackend` loads the engine in this process
(the default), :class:`RemoteBackend` talks to a running server's ``/chat`` SSE endpoint (``--url``).
The REPL keeps the multi-turn history, so each turn sends the whole conversation.

Ctrl-C semantics (what terminal users expect): during an answer it cancels that generation (the
engine stops between tokens; over HTTP the connection is closed, which the server treats the same)
and returns to the prompt; at the prompt it leaves. Ctrl-D and ``/exit`` leave too.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Protocol

import click

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


@dataclass
class Reply:
    """One answer: the text shown and why it ended ('stop', 'length', 'cancelled', 'error')."""

    text: str
    finish_reason: str
    error: Optional[str] = None


Turn = tuple[str, str]  # (user, assistant)
Write = Callable[[str], None]


class Backend(Protocol):
    """What the REPL needs from where the answers come from."""

    name: str

    def start(self) -> None: ...

    def answer(self, system: str, history: list[Turn], prompt: str, sampling: SamplingParams, write: Write) -> Reply: ...

    def close(self) -> None: ...


def build_messages(system: str, history: list[Turn], prompt: str) -> list[ChatMessage]:
    """The chat as messages: the system prompt, each past turn, the new question."""
    messages: list[ChatMessage] = [{"role": "system", "content": system}] if system else []
    for user, bot in history:
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": bot})
    messages.append({"role": "user", "content": prompt})
    return messages


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
        """Drop the oldest turns until prompt + reply fit the context; if the question alone leaves
        less room than ``max_tokens``, shorten the reply instead (as the server does)."""
        turns = list(history)
        while True:
            messages = build_messages(system, turns, prompt)
            used = self.engine.count_prompt_tokens(messages)
            if used + max_tokens <= self.engine.n_ctx:
                return messages, max_tokens
            if not turns:
                return messages, max(1, self.engine.n_ctx - used)  # still too long: the engine says so
            turns.pop(0)

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


class RemoteBackend:
    """A running XiaoQ server's ``POST /chat`` (SSE), with ``Authorization: Bearer`` when a key is set."""

    def __init__(self, url: str, api_key: Optional[str] = None, timeout: float = 600.0, send: Optional[Collection[str]] = None):
        self.url = url.rstrip("/")
        self.name = self.url
        self.api_key = api_key
        self.timeout = timeout
        #: Which of the /chat fields ("system", "max_tokens", ...) to send; None: all. Leaving one
        #: out lets the server apply its own configured default (e.g. its system prompt).
        self.send = None if send is None else frozenset(send)

    def _request(self, path: str, body: Optional[dict[str, Any]] = None) -> urllib.request.Request:
        headers = {"Accept": "text/event-stream" if body is not None else "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        return urllib.request.Request(self.url + path, data=data, headers=headers, method="POST" if body is not None else "GET")

    def start(self, wait: float = 300.0) -> None:
        """Check the server is there; wait (bounded) while it is still loading its model."""
        deadline = time.monotonic() + wait
        while True:
            try:
                with urllib.request.urlopen(self._request("/health"), timeout=10) as resp:
                    resp.read()
                model = self._model_name()
                if model:
                    self.name = f"{model} at {self.url}"
                return
            except urllib.error.HTTPError as e:
                if e.code != 503 or time.monotonic() > deadline:
                    raise XiaoQError(f"server at {self.url} answered /health with HTTP {e.code}: {_error_message(e)}") from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise XiaoQError(f"cannot reach a XiaoQ server at {self.url}: {reason}") from None
            time.sleep(0.5)

    def _model_name(self) -> Optional[str]:
        """The served model's name, from ``/v1/models`` (behind the key: the public ``/health`` says
        only the status). None when it cannot be read; a wrong key shows on the first message."""
        try:
            with urllib.request.urlopen(self._request("/v1/models"), timeout=10) as resp:
                data = json.loads(resp.read() or b"{}").get("data") or [{}]
                return data[0].get("id")
        except (urllib.error.URLError, OSError, ValueError, AttributeError):
            return None

    def answer(self, system: str, history: list[Turn], prompt: str, sampling: SamplingParams, write: Write) -> Reply:
        options: dict[str, Any] = {
            "system": system,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
        }
        body: dict[str, Any] = {"prompt": prompt, "history": [{"user": u, "bot": b} for u, b in history]}
        body.update((k, v) for k, v in options.items() if v is not None and (self.send is None or k in self.send))
        return self.post_stream("/chat", body, write)

    def post_stream(self, path: str, body: dict[str, Any], write: Write) -> Reply:
        """POST ``body`` and show the SSE ``token`` events as they arrive; the ``done`` or ``error``
        event ends the reply. Ctrl-C closes the connection, which the server takes as a cancel."""
        parts: list[str] = []
        try:
            resp = urllib.request.urlopen(self._request(path, body), timeout=self.timeout)
        except urllib.error.HTTPError as e:
            return Reply("", "error", f"HTTP {e.code}: {_error_message(e)}")
        except (urllib.error.URLError, OSError) as e:
            return Reply("", "error", f"cannot reach {self.url}: {getattr(e, 'reason', e)}")
        except KeyboardInterrupt:
            return Reply("", "cancelled")
        try:
            with resp:  # leaving the block closes the connection: the server cancels the generation
                for event in _sse_events(resp):
                    if "token" in event:
                        parts.append(event["token"])
                        write(event["token"])
                    elif event.get("done"):
                        return Reply("".join(parts), str(event.get("finish_reason") or "stop"))
                    elif "error" in event:
                        err = event["error"]
                        return Reply("".join(parts), "error", err.get("message") if isinstance(err, dict) else str(err))
        except KeyboardInterrupt:
            return Reply("".join(parts), "cancelled")
        except (OSError, ValueError) as e:
            return Reply("".join(parts), "error", f"connection lost: {e}")
        return Reply("".join(parts), "error", "the server closed the stream before it finished")

    def close(self) -> None:
        pass


def _sse_events(resp: Any) -> Any:
    """JSON payloads of the ``data:`` lines of an SSE response, in order."""
    for raw in resp:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if data:
            yield json.loads(data)


def _error_message(e: urllib.error.HTTPError) -> str:
    """The message of XiaoQ's one JSON error shape, or the raw body."""
    try:
        raw = e.read()
        payload = json.loads(raw)
        err = payload.get("error", payload)
        return str(err.get("message") or err) if isinstance(err, dict) else str(err)
    except Exception:
        return e.reason if isinstance(e.reason, str) else "request failed"


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
        max_tokens=min(settings.default_max_tokens, settings.max_tokens),
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
        Repl(backend, settings.system_prompt, sampling, speak=speaker).run()
    finally:
        backend.close()

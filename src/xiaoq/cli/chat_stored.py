"""``xiaoq chat --conversation ID``: the terminal chat on a STORED conversation.

The same two places answers can come from as the plain chat (:mod:`xiaoq.cli.chat`, :mod:`xiaoq.cli.chat_remote`), but the
history lives in the conversations database instead of the REPL:

- :class:`StoredLocalBackend` opens the database (``--db``, default the user data dir) and runs
  the same :class:`~xiaoq.chat.conversation.ConversationService` the server uses, in process, so a
  conversation started in the web UI can be continued in a terminal and vice versa (budget,
  summaries, fence repair and durable replies included);
- :class:`StoredRemoteBackend` talks to a server's ``/api/conversations`` routes (``--url``).

Both add ``history()`` (for ``/history``), ``new()`` (for ``/new``), ``continue_last`` (for
``/continue``: the stored reply grows in place) and ``set_system`` (``/system`` changes the
conversation's own prompt). ``--conversation new`` starts a fresh stored conversation.
"""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

from xiaoq.cli.chat_remote import RemoteBackend, Reply, Turn, Write, error_message
from xiaoq.config import Settings
from xiaoq.engine.types import SamplingParams
from xiaoq.errors import XiaoQError

NEW = "new"


def _overrides(sampling: SamplingParams) -> Any:
    from xiaoq.chat.conversation import SamplingOverrides

    return SamplingOverrides(temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens, seed=sampling.seed)


def turns_of(messages: list[dict[str, Any]]) -> list[Turn]:
    """Stored messages as (user, assistant) pairs for ``/history``."""
    from xiaoq.store import iter_turns

    return [(u["content"], a["content"] if a else "") for u, a in iter_turns(messages)]


class StoredLocalBackend:
    """The engine, the database and the conversation service in this process."""

    def __init__(self, path: Path, settings: Settings, conversation_id: str):
        from xiaoq.engine.llama_engine import LlamaEngine
        from xiaoq.store import open_store

        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.engine = LlamaEngine(path, settings)
        self.store = open_store(settings.database())
        self.conversation_id = conversation_id
        self.name = path.name

    def start(self) -> None:
        from xiaoq.chat.conversation import ConversationService

        self.loop.run_until_complete(self.engine.start())
        self.service = ConversationService(self.store, self.engine, self.settings)
        if self.conversation_id == NEW:
            self.new()
        else:
            self.store.get_conversation(self.conversation_id)  # NotFound: one clear line
        self.name = f"{self.name} · conversation {self.conversation_id}"

    def new(self) -> str:
        self.conversation_id = self.store.create_conversation()["id"]
        return self.conversation_id

    def history(self) -> list[Turn]:
        return turns_of(self.store.get_messages(self.conversation_id))

    def set_system(self, text: Optional[str]) -> None:
        self.store.update_conversation(self.conversation_id, system_prompt=text)

    def answer(self, system: str, history: list[Turn], prompt: str, sampling: SamplingParams, write: Write) -> Reply:
        return self._turn(lambda: self.service.send(self.conversation_id, prompt, _overrides(sampling)), write)

    def continue_last(self, system: str, history: list[Turn], sampling: SamplingParams, write: Write) -> Reply:
        return self._turn(lambda: self.service.continue_reply(self.conversation_id, _overrides(sampling)), write)

    def _turn(self, start: Any, write: Write) -> Reply:
        async def run() -> Reply:
            turn = await start()
            # Ctrl-C cancels this reply (kept as `incomplete`), not the program.
            self.loop.add_signal_handler(signal.SIGINT, turn.cancel)
            parts: list[str] = []
            try:
                async for event in turn.events():
                    if "token" in event:
                        parts.append(event["token"])
                        write(event["token"])
                    elif event.get("done"):
                        return Reply("".join(parts), str(event["finish_reason"]))
                    elif "error" in event:
                        return Reply("".join(parts), "error", event["error"].get("message"))
            finally:
                self.loop.remove_signal_handler(signal.SIGINT)
            return Reply("".join(parts), "error", "the reply ended unexpectedly")

        try:
            return self.loop.run_until_complete(run())
        except XiaoQError as e:
            return Reply("", "error", e.message)

    def close(self) -> None:
        try:
            if hasattr(self, "service"):
                self.loop.run_until_complete(self.service.close())
            self.loop.run_until_complete(self.engine.close())
        finally:
            self.loop.close()
            self.store.close()


class StoredRemoteBackend(RemoteBackend):
    """A server's ``/api/conversations`` routes."""

    def __init__(self, url: str, conversation_id: str, api_key: Optional[str] = None, timeout: float = 600.0):
        super().__init__(url, api_key, timeout)
        self.conversation_id = conversation_id

    def _call(self, method: str, path: str, body: Optional[dict[str, Any]] = None) -> Any:
        req = self._request(path, body)
        req.method = method
        req.headers["Accept"] = "application/json"
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raise XiaoQError(f"HTTP {e.code}: {error_message(e)}") from None
        except (urllib.error.URLError, OSError) as e:
            raise XiaoQError(f"cannot reach {self.url}: {getattr(e, 'reason', e)}") from None

    def start(self, wait: float = 300.0) -> None:
        super().start(wait)
        if self.conversation_id == NEW:
            self.new()
        else:
            self._call("GET", f"/api/conversations/{self.conversation_id}")
        self.name = f"{self.name} · conversation {self.conversation_id}"

    def new(self) -> str:
        self.conversation_id = self._call("POST", "/api/conversations", {})["id"]
        return self.conversation_id

    def history(self) -> list[Turn]:
        return turns_of(self._call("GET", f"/api/conversations/{self.conversation_id}")["messages"])

    def set_system(self, text: Optional[str]) -> None:
        self._call("PATCH", f"/api/conversations/{self.conversation_id}", {"system_prompt": text})

    def answer(self, system: str, history: list[Turn], prompt: str, sampling: SamplingParams, write: Write) -> Reply:
        # Closing the connection (Ctrl-C) stops the reply; the server keeps it `incomplete`.
        return self.post_stream(f"/api/conversations/{self.conversation_id}/messages", {"content": prompt, **_sampling_body(sampling)}, write)

    def continue_last(self, system: str, history: list[Turn], sampling: SamplingParams, write: Write) -> Reply:
        return self.post_stream(f"/api/conversations/{self.conversation_id}/continue", _sampling_body(sampling), write)


def _sampling_body(sampling: SamplingParams) -> dict[str, Any]:
    body: dict[str, Any] = {"max_tokens": sampling.max_tokens, "temperature": sampling.temperature, "top_p": sampling.top_p}
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    return body

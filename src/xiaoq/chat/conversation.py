"""The conversation service: stored conversations over one engine, for the HTTP routes, ``/chat``
with a ``conversation_id`` and the terminal chat alike.

It owns one thing, the registry of running turns (one reply at a time per conversation: a second
one is a 409, so turns never interleave), and decides what a turn answers: a new question
(:meth:`send`), the last one again (:meth:`regenerate`), an edited one (:meth:`edit`), or more of
the last reply (:meth:`continue_reply`). The life
of a turn is in ``chat/turn.py``; the budget and summaries in ``chat/summaries.py``. The store is
synchronous, so every call goes through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass
from typing import Any, Optional

from xiaoq.chat import policy
from xiaoq.chat.kb_turn import KnowledgeTurns
from xiaoq.kb.types import check_kb_name
from xiaoq.chat.presets import BUILTINS
from xiaoq.chat.summaries import Summaries
from xiaoq.chat.titles import heuristic_title
from xiaoq.chat.turn import ReplyTurn, TurnDeps, TurnSpec, open_turn
from xiaoq.config import Settings
from xiaoq.engine.types import Engine, SamplingParams
from xiaoq.errors import InvalidRequest, NotFound, XiaoQError
from xiaoq.store import Store
from xiaoq.store.presets import PresetStore


class ConversationBusy(XiaoQError):
    """A reply is already being generated in this conversation (409): one at a time, so turns never
    interleave. Stop it first (``POST /api/conversations/{id}/stop``) or wait for it to end."""

    status = 409
    type = "invalid_request_error"
    code = "conversation_busy"


@dataclass
class SamplingOverrides:
    """Per-request sampling (None: the conversation's settings, else the server's defaults)."""

    temperature: Optional[float] = None
    top_p: Optional[float] = None
    max_tokens: Optional[int] = None
    seed: Optional[int] = None
    stop: Optional[list[str]] = None
    min_p: Optional[float] = None
    repeat_penalty: Optional[float] = None
    loop_guard: Optional[bool] = None
    language_check: Optional[bool] = None


class ConversationService:
    """Stored conversations over one engine. Create once per app; :meth:`close` at shutdown."""

    def __init__(self, store: Store, engine: Engine, settings: Settings, kbs: Any = None):
        self.store = store
        self.engine = engine
        self.settings = settings
        self.knowledge = KnowledgeTurns(kbs, engine) if kbs is not None else None
        self._running: dict[str, ReplyTurn] = {}
        self._deps = TurnDeps(store, engine, Summaries(store, engine, settings), self._release)
        self.presets = PresetStore(store.db)
        self.presets.ensure_builtins(BUILTINS)

    def for_user(self, user: Any) -> "ConversationService":
        """The same service seeing only ``user``'s conversations (its store is a view of the
        user's rows), the knowledge bases shared with them and the presets they may use; the
        registry of running turns stays shared, one reply per conversation."""
        view = copy.copy(self)
        view.store = self.store.for_owner(user.id)
        view._deps = TurnDeps(view.store, self.engine, Summaries(view.store, self.engine, self.settings), self._release)
        if self.knowledge is not None:
            view.knowledge = KnowledgeTurns(self.knowledge.kbs.for_viewer(user), self.engine)
        view.presets = self.presets.for_viewer(user)
        return view

    # ---- plain storage (async wrappers so routes never block the loop) -----------------------
    async def _db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def list(self, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        return await self._db(self.store.list_conversations, limit, offset)

    async def create(
        self,
        title: Optional[str] = None,
        system_prompt: Optional[str] = None,
        settings: Optional[dict[str, Any]] = None,
        kb: Optional[str] = None,
        preset: Optional[str] = None,
    ) -> dict[str, Any]:
        """A new conversation; with ``preset``, a COPY of that preset's prompt and settings (what
        the caller gives wins), so later edits of the preset change only later conversations."""
        if preset is not None:
            p = await self._db(self.presets.get, preset)
            system_prompt = p["system_prompt"] if system_prompt is None else system_prompt
            settings = {**p["settings"], **(settings or {})}
        return await self._db(self.store.create_conversation, title or "", system_prompt, settings, kb)

    async def check_kb(self, name: Optional[str]) -> Optional[str]:
        """A conversation's knowledge base: None for none, else an existing one's name (404 otherwise)."""
        if not name:
            return None
        if self.knowledge is None:
            raise InvalidRequest("Knowledge bases are not enabled on this server.", code="kb_unavailable")
        kb = await self._db(self.knowledge.kbs.store.get_kb, check_kb_name(name))
        return str(kb["name"])

    async def get(self, conversation_id: str, messages: bool = True) -> dict[str, Any]:
        return await self._db(self.store.get_conversation, conversation_id, messages=messages)

    async def update(self, conversation_id: str, **fields: Any) -> dict[str, Any]:
        return await self._db(self.store.update_conversation, conversation_id, **fields)

    async def delete(self, conversation_id: str) -> None:
        await self.stop(conversation_id, wait=1.0)  # its final write lands before the delete
        await self._db(self.store.delete_conversation, conversation_id)

    async def export(self, conversation_id: str, fmt: str) -> Any:
        if fmt == "json":
            return await self._db(self.store.export_json, conversation_id)
        if fmt == "md":
            return await self._db(self.store.export_markdown, conversation_id)
        raise InvalidRequest(f"format must be 'md' or 'json', not {fmt!r}", code="invalid_format")

    async def search(self, q: str, limit: int = 20) -> list[dict[str, Any]]:
        return await self._db(self.store.search, q, limit)

    async def suggestions(self, q: str, limit: int = 8) -> list[str]:
        return await self._db(self.store.suggestions, q, limit)

    def is_running(self, conversation_id: str) -> bool:
        return conversation_id in self._running

    # ---- turns ---------------------------------------------------------------------------------
    async def send(self, conversation_id: str, content: str, overrides: Optional[SamplingOverrides] = None, kb: Optional[str] = None) -> ReplyTurn:
        """Commit ``content`` as the next user message and start the reply (``kb``: answer from
        this knowledge base for this turn instead of the conversation's; "" for none)."""
        _check_content(content)

        async def spec(conv: dict[str, Any], messages: list[dict[str, Any]]) -> TurnSpec:
            if not conv["title"]:
                await self._db(self.store.update_conversation, conversation_id, title=heuristic_title(content))
            return self._spec(conv, messages, content, overrides)

        return await self._turn(conversation_id, spec, kb)

    async def regenerate(self, conversation_id: str, overrides: Optional[SamplingOverrides] = None, kb: Optional[str] = None) -> ReplyTurn:
        """Answer the last user message again; the reply after it (if any) is replaced once the new
        one completes."""

        async def spec(conv: dict[str, Any], messages: list[dict[str, Any]]) -> TurnSpec:
            users = [i for i, m in enumerate(messages) if m["role"] == "user"]
            if not users:
                raise InvalidRequest("This conversation has no user message to answer again.", code="nothing_to_regenerate")
            i = users[-1]
            return self._spec(conv, messages[:i], messages[i]["content"], overrides, messages[i]["id"], messages[i + 1 :])

        return await self._turn(conversation_id, spec, kb)

    async def edit(self, conversation_id: str, message_id: int, content: str, overrides: Optional[SamplingOverrides] = None, kb: Optional[str] = None) -> ReplyTurn:
        """Ask user message ``message_id`` again with new content; it and everything after it are
        replaced once the new reply completes. Idempotent, so a client may retry it after a 503."""
        _check_content(content)

        async def spec(conv: dict[str, Any], messages: list[dict[str, Any]]) -> TurnSpec:
            i = next((i for i, m in enumerate(messages) if m["id"] == message_id), None)
            if i is None:
                raise NotFound(f"No message {message_id} in conversation {conversation_id!r}")
            if messages[i]["role"] != "user":
                raise InvalidRequest("Only user messages can be edited.", code="not_a_user_message")
            return self._spec(conv, messages[:i], content, overrides, None, messages[i:])

        return await self._turn(conversation_id, spec, kb)

    async def continue_reply(self, conversation_id: str, overrides: Optional[SamplingOverrides] = None) -> ReplyTurn:
        """Let the model go on with its last reply (cut by ``max_tokens``, stopped, or ended by the
        loop guard), appending to the same message; it is written back as it was unless the
        continuation completes."""

        async def spec(conv: dict[str, Any], messages: list[dict[str, Any]]) -> TurnSpec:
            if len(messages) < 2 or messages[-1]["role"] != "assistant" or messages[-2]["role"] != "user" or not messages[-1]["content"]:
                raise InvalidRequest("The conversation does not end with a reply to continue.", code="nothing_to_continue")
            user, reply = messages[-2], messages[-1]
            made = self._spec(conv, messages[:-2], user["content"], overrides, user["id"])
            made.continues = reply
            return made

        return await self._turn(conversation_id, spec)

    async def stop(self, conversation_id: str, wait: float = 5.0) -> bool:
        """Cancel the reply being generated in this conversation and wait (at most ``wait`` s) until
        its partial text is stored, so what the caller reads next is final; False when none runs."""
        turn = self._running.get(conversation_id)
        if turn is None or not self._mine(turn):
            return False
        turn.cancel()
        await turn.wait_stored(wait)
        return True

    async def close(self) -> None:
        """Server shutdown: stop every running reply and store each as ``incomplete``."""
        for turn in list(self._running.values()):
            await turn.wait_settled()

    # ---- internals -------------------------------------------------------------------------------
    async def _turn(self, conversation_id: str, make_spec: Any, kb: Optional[str] = None) -> ReplyTurn:
        """Claim the conversation (before any await, so two sends cannot both pass), then open the turn."""
        running = self._running.get(conversation_id)
        if running is not None and not self._mine(running):
            raise NotFound(f"No conversation with id {conversation_id!r}")
        if running is not None:
            raise ConversationBusy("A reply is already being generated in this conversation; stop it or wait for it to finish.")
        turn = ReplyTurn(self._deps, TurnSpec(conversation_id, "", [], "", SamplingParams()))
        self._running[conversation_id] = turn
        try:
            conv = await self.get(conversation_id, messages=True)
            turn.spec = await make_spec(conv, conv["messages"])
            if self.knowledge is not None:
                await self.knowledge.apply(conv, turn.spec, kb)
            elif kb:
                raise InvalidRequest("Knowledge bases are not enabled on this server.", code="kb_unavailable")
        except BaseException:
            self._release(turn)
            raise
        return await open_turn(self._deps, turn.spec, turn)

    def _spec(
        self,
        conv: dict[str, Any],
        messages: list[dict[str, Any]],
        question: str,
        overrides: Optional[SamplingOverrides],
        user_message_id: Optional[int] = None,
        replaced: Optional[list[dict[str, Any]]] = None,
    ) -> TurnSpec:
        return TurnSpec(
            conversation_id=conv["id"],
            system=policy.system_prompt(self.settings, conv.get("system_prompt"), question),
            past=messages,
            question=question,
            sampling=self.sampling(conv, overrides),
            user_message_id=user_message_id,
            replaces=[m["id"] for m in replaced or []],
        )

    def _mine(self, turn: ReplyTurn) -> bool:
        """Whether this view may see the running turn (the whole store sees every one)."""
        return self.store.owner is None or turn.deps.store.owner == self.store.owner

    def _release(self, turn: ReplyTurn) -> None:
        if self._running.get(turn.conversation_id) is turn:
            del self._running[turn.conversation_id]

    def sampling(self, conv: dict[str, Any], overrides: Optional[SamplingOverrides]) -> SamplingParams:
        """Request overrides, else the conversation's settings, else the server's; max_tokens capped."""
        o = overrides or SamplingOverrides()
        cs = conv.get("settings") or {}
        s = self.settings

        def pick(name: str, default: Any) -> Any:
            v = getattr(o, name)
            if v is None:
                v = cs.get(name)
            return default if v is None else v

        return SamplingParams(
            temperature=float(pick("temperature", s.temperature)),
            top_p=float(pick("top_p", s.top_p)),
            max_tokens=policy.max_tokens(s, pick("max_tokens", None)),
            seed=pick("seed", s.seed),
            stop=list(o.stop or []),
            min_p=float(pick("min_p", s.min_p)),
            repeat_penalty=float(pick("repeat_penalty", s.repeat_penalty)),
            loop_guard=bool(pick("loop_guard", s.loop_guard)),
            language_check=bool(pick("language_check", s.language_check)),
        )


def _check_content(content: str) -> None:
    if not isinstance(content, str) or not content.strip():
        raise InvalidRequest("content must not be empty", code="empty_content", param="content")

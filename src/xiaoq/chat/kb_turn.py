"""What a conversation turn reads from knowledge bases: the conversation's knowledge base (its
``kb`` column, or the request's ``kb`` for this turn) and the files attached to the conversation.

A question gets the passages that fit the budget (:mod:`xiaoq.kb.answer`), XiaoQ's answer rules in
the system message and the worked turns between it and the history, as ``/chat`` does. A request to summarise
the attached files gets all of them: in one prompt when they fit the budget, else through a
map-reduce (:mod:`xiaoq.kb.summarize`) whose map step runs inside the stream, reporting progress.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Optional

from xiaoq.chat.grounding import ground_scope
from xiaoq.chat.language import reply_language
from xiaoq.engine.types import Engine
from xiaoq.errors import InvalidRequest
from xiaoq.kb.answer import Grounding, compose, example_turns, grounded_system
from xiaoq.kb.retrieve import Hit
from xiaoq.kb.summarize import is_summary_request, map_parts, reduce_content, windows
from xiaoq.kb.types import check_kb_name, conversation_scope

#: Tokens of document text per map request (the summary prompt's own room comes on top).
MAP_WINDOW_TOKENS = 1200


class KnowledgeTurns:
    """Grounds conversation turns in knowledge bases (``kbs``: :class:`xiaoq.kb.service.KnowledgeBases`)."""

    def __init__(self, kbs: Any, engine: Engine):
        self.kbs, self.engine = kbs, engine

    def _count(self, text: str) -> int:
        return len(self.engine.tokenize(text))

    async def apply(self, conv: dict[str, Any], spec: Any, kb_override: Optional[str]) -> None:
        """Set ``spec.prompt`` / ``spec.grounding`` (or ``spec.prepare``) for this turn's scope."""
        named = conv.get("kb") if kb_override is None else (kb_override or None)
        store = self.kbs.store
        ids: list[int] = []
        if named:
            ids.append((await asyncio.to_thread(store.get_kb, check_kb_name(named)))["id"])
        files = await asyncio.to_thread(store.find_kb, conversation_scope(conv["id"]))
        if files is not None and files["chunk_count"]:
            ids.append(files["id"])
            if is_summary_request(spec.question) and not spec.continues:  # a continuation reads top passages
                await self._summary(files["id"], spec)
                return
        if ids:
            # a continuation goes on with a reply already given: never cut it short with a refusal
            grounding = await ground_scope(self.kbs, self.engine, ids, spec.question, gate=not spec.continues)
            spec.grounding, spec.prompt = grounding, grounding.content
            answer = grounding.answerable is True
            spec.system = grounded_system(spec.system, spec.question, answer)
            spec.prefix = example_turns(reply_language(spec.question), answer)

    async def _summary(self, kb_id: int, spec: Any) -> None:
        chunks = await asyncio.to_thread(self._all_chunks, kb_id)
        passages = [Hit(c["id"], 1.0, chunk=c) for c in chunks]
        budget = self.kbs.settings.kb_passage_tokens
        total = await asyncio.to_thread(lambda: sum(self._count(c["text"]) for c in chunks))
        spec.grounding = Grounding(spec.question, passages if total <= budget else _first_of_each(passages), passages)
        if total <= budget:
            spec.prompt = compose(spec.question, passages)
            return
        parts = await asyncio.to_thread(windows, chunks, MAP_WINDOW_TOKENS, self._count)
        spec.prepare = lambda turn: self._map(turn, spec, parts)

    def _all_chunks(self, kb_id: int) -> list[dict[str, Any]]:
        store = self.kbs.store
        return [c for d in store.list_documents(kb_id) if d["status"] == "ready" for c in store.document_chunks(d["id"])]

    async def _map(self, turn: Any, spec: Any, parts: list[str]) -> AsyncIterator[dict[str, Any]]:
        """The map step, inside the stream: one status event per part summarised."""
        partials: list[str] = []
        yield {"status": "reading_document", "progress": {"done": 0, "total": len(parts)}}
        async for done, text in map_parts(self.engine, parts, stopped=lambda: turn.stopped):
            partials.append(text)
            yield {"status": "reading_document", "progress": {"done": done, "total": len(parts)}}
        spec.prompt = reduce_content(spec.question, partials)


def _first_of_each(passages: list[Hit]) -> list[Hit]:
    """One citation per summarised document: its first passage."""
    seen: set[Any] = set()
    out = []
    for h in passages:
        if h.chunk.get("document_id") not in seen:
            seen.add(h.chunk.get("document_id"))
            out.append(h)
    return out


def check_files_enabled(kbs: Any) -> Any:
    if kbs is None:
        raise InvalidRequest("Files need conversation storage, which is not enabled on this server.", code="kb_unavailable")
    return kbs

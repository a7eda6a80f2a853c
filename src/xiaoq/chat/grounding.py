"""A turn answered from a knowledge base: its last user message replaced by the grounded one.

The retrieval and the token counting of the passages run in a worker thread: neither may hold
the event loop while other replies stream.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from xiaoq.engine.types import ChatMessage, Engine
from xiaoq.errors import InvalidRequest
from xiaoq.kb.answer import Grounding, ground, grounded_messages
from xiaoq.kb.types import check_kb_name


async def ground_messages(kbs: Any, engine: Engine, kb_name: str, messages: list[ChatMessage], budget: Optional[int] = None) -> tuple[list[ChatMessage], Grounding]:
    """``messages`` answered from ``kb_name`` (:func:`xiaoq.kb.answer.grounded_messages`: the
    rules, worked turns, and the last user message carrying the passages), and the grounding."""
    if kbs is None:
        raise InvalidRequest("Knowledge bases need conversation storage, which is not enabled on this server.", code="kb_unavailable")
    if not messages or messages[-1]["role"] != "user":
        raise InvalidRequest("Answering from a knowledge base needs the last message to be the user's question.", param="kb")
    kb = await asyncio.to_thread(kbs.store.get_kb, check_kb_name(kb_name))
    grounding = await ground_scope(kbs, engine, [kb["id"]], messages[-1]["content"], budget)
    return grounded_messages(messages, grounding), grounding


async def ground_scope(kbs: Any, engine: Engine, kb_ids: list[int], question: str, budget: Optional[int] = None) -> Grounding:
    limit = budget if budget is not None else kbs.settings.kb_passage_tokens
    return await asyncio.to_thread(ground, kbs.retriever, kb_ids, question, limit, lambda text: len(engine.tokenize(text)))

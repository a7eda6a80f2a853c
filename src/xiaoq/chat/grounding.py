"""A turn answered from a knowledge base: its last user message replaced by the grounded one, and
its reply's stream (the model's, or the retrieval gate's refusal: :func:`submit_answer`, the one
place every answer surface submits through).

The retrieval and the token counting of the passages run in a worker thread: neither may hold
the event loop while other replies stream.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from xiaoq.chat import language_check
from xiaoq.engine.types import STOP, ChatMessage, Engine, Generation, GenerationRequest, GenerationResult, Timings, Usage
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


async def ground_scope(kbs: Any, engine: Engine, kb_ids: list[int], question: str, budget: Optional[int] = None, gate: bool = True) -> Grounding:
    """The grounding of ``question`` in ``kb_ids``; with ``gate``, judged by the retrieval gate
    (:mod:`xiaoq.kb.gate`) at the deployment's threshold."""
    limit = budget if budget is not None else kbs.settings.kb_passage_tokens
    threshold = kbs.answer_threshold if gate else 0.0
    return await asyncio.to_thread(ground, kbs.retriever, kb_ids, question, limit, lambda text: len(engine.tokenize(text)), threshold)


async def submit_answer(engine: Engine, request: GenerationRequest, grounding: Optional[Grounding] = None) -> Generation:
    """The reply's stream: the model's (through the language check), or, when the retrieval gate
    refused the question, the fixed refusal without a model call (the fastest honest answer: the
    model would be told the same and could only get it wrong)."""
    if grounding is not None and grounding.refusal is not None:
        return fixed_reply(grounding.refusal)
    return await language_check.submit(engine, request)


def fixed_reply(text: str) -> Generation:
    """A finished stream of ``text`` that used no tokens (must be called on the event loop)."""
    generation = Generation()
    generation.emit(text)
    generation.finish(GenerationResult(STOP, Usage(), Timings()))
    return generation

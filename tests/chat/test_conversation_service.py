"""ConversationService unit tests over the FakeEngine and a real SQLite file: summaries requested at
low priority and reused, the stall ticker that saves sent text without a new piece, sampling
precedence, and the one-reply-per-conversation rule."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterator

import pytest

from xiaoq.chat.budget import SUMMARY_LABEL
from xiaoq.chat.conversation import ConversationBusy, ConversationService, SamplingOverrides
from xiaoq.engine.fake import FakeEngine
from xiaoq.engine.types import Generation, GenerationRequest, GenerationResult, Timings, Usage
from xiaoq.store import Store

from tests.api.helpers import make_settings
from tests.chat.facts import FACT


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "svc.db")
    yield s
    s.close()


class ManualEngine(FakeEngine):
    """Hands out generations the test feeds by hand (to make a stall)."""

    async def submit(self, request: GenerationRequest) -> Generation:
        gen = Generation(prompt_tokens=self.count_prompt_tokens(request.messages))
        self.requests.append(request)
        self.generations.append(gen)
        return gen


async def started(store: Store, content: str):  # type: ignore[no-untyped-def]
    """A conversation turn on a ManualEngine: (engine, service, turn, the turn's generation)."""
    engine = ManualEngine(make_settings())
    await engine.start()
    service = ConversationService(store, engine, engine.settings)
    cid = store.create_conversation()["id"]
    turn = await service.send(cid, content)
    return engine, service, turn, engine.generations[-1]


async def run(turn) -> tuple[str, dict]:  # type: ignore[no-untyped-def]
    text, last = "", {}
    async for event in turn.events():
        text += event.get("token", "")
        last = event
    return text, last


async def test_dropped_turns_are_summarized_at_low_priority_stored_and_reused(store: Store) -> None:
    settings = make_settings(ctx=700, system_prompt="SYS", default_max_tokens=40)
    engine = FakeEngine(settings)
    await engine.start()
    service = ConversationService(store, engine, settings)
    cid = store.create_conversation()["id"]
    await run(await service.send(cid, f"{FACT}。"))
    for i in range(12):
        _, done = await run(await service.send(cid, f"问题{i}：" + "很长的内容" * 12))
        assert done["done"] is True
    summaries = [r for r in engine.requests if r.priority == -1]
    assert summaries, "no summary was requested"
    assert all(r.sampling.temperature == 0.0 for r in summaries)
    assert '<data label="对话"' in summaries[0].messages[-1]["content"]  # the conversation's language (Chinese)
    stored = store.get_summary(cid)
    assert stored is not None and stored["upto_message_id"] is not None
    # The user's own facts survive verbatim at the head; the model's prose follows.
    assert stored["summary"].startswith(f"用户说过的关于自己的话（原话引用）：“{FACT}”。\n")
    assert len(stored["summary"]) > len(f"用户说过的关于自己的话（原话引用）：“{FACT}”。\n")
    last = engine.requests[-1]
    assert last.priority == 0 and last.messages[0]["role"] == "system"
    assert last.messages[0] == {"role": "system", "content": "SYS"}
    assert last.messages[1]["role"] == "user" and SUMMARY_LABEL in last.messages[1]["content"]
    assert stored["summary"] in last.messages[1]["content"]
    assert done["budget"]["turns_summarized"] > 0 and done["budget"]["trimmed"] is True
    # The summary is refreshed only when more turns drop out: far fewer summary requests than turns.
    assert len(summaries) < 6
    await engine.close()


async def test_ticker_saves_sent_text_during_a_stall(store: Store) -> None:
    engine, _, turn, gen = await started(store, "hi")
    events = turn.events()
    assert (await events.__anext__())["start"] is True
    gen.emit("已经发送的文字")
    assert (await events.__anext__()) == {"token": "已经发送的文字"}
    pending = asyncio.ensure_future(events.__anext__())  # the consumer waits; the engine stalls
    await asyncio.sleep(2.3)
    saved = store.get_message(turn.message_id)
    assert (saved["status"], saved["content"]) == ("incomplete", "已经发送的文字")
    gen.emit("。")
    assert (await pending) == {"token": "。"}
    gen.finish(GenerationResult("stop", Usage(prompt_tokens=10, completion_tokens=2), Timings()))
    rest = [e async for e in events]
    assert rest[-1]["done"] is True
    final = store.get_message(turn.message_id)
    assert (final["status"], final["content"]) == ("complete", "已经发送的文字。")
    await engine.close()


async def test_sampling_precedence_and_one_reply_per_conversation(store: Store) -> None:
    settings = make_settings(temperature=0.7, top_p=0.9, default_max_tokens=100, max_tokens=200, seed=5)
    engine = ManualEngine(settings)
    await engine.start()
    service = ConversationService(store, engine, settings)
    cid = store.create_conversation(settings={"temperature": 0.2, "max_tokens": 150})["id"]
    turn = await service.send(cid, "hi", SamplingOverrides(top_p=0.5, max_tokens=10_000))
    s = engine.requests[-1].sampling
    assert (s.temperature, s.top_p, s.max_tokens, s.seed) == (0.2, 0.5, 200, 5)  # request > conversation > server; capped
    with pytest.raises(ConversationBusy):
        await service.send(cid, "again")
    assert [m["content"] for m in store.get_messages(cid)] == ["hi", ""]  # the refused one is not stored
    assert await service.stop(cid, wait=0) is True  # nobody reads the stream yet: do not wait for its settling
    gen = engine.generations[-1]
    assert gen.cancelled
    gen.finish(GenerationResult("cancelled", Usage(prompt_tokens=10), Timings()))  # as the engine does
    text, done = await run(turn)
    assert done["finish_reason"] == "cancelled" and text == ""
    assert store.get_message(turn.message_id)["status"] == "incomplete"
    assert await service.stop(cid) is False and not service.is_running(cid)
    await engine.close()


async def test_stop_returns_once_the_partial_reply_is_stored(store: Store) -> None:
    # The browser aborts its stream and posts Stop; a reload right after must read the whole partial
    # reply with its final fields, not the last periodic save (CI once saw 2,163 of 2,505 characters).
    engine, service, turn, gen = await started(store, "写一篇文章")
    cid = turn.conversation_id
    reader = asyncio.ensure_future(run(turn))
    pieces = [f"第{i}段。" for i in range(40)]
    for piece in pieces:
        gen.emit(piece)
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)

    async def engine_sees_the_cancel() -> None:  # the scheduler ends a cancelled generation a step later
        while not gen.cancelled:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        gen.finish(GenerationResult("cancelled", Usage(prompt_tokens=5, completion_tokens=40), Timings()))

    finisher = asyncio.ensure_future(engine_sees_the_cancel())
    assert await service.stop(cid) is True
    row = store.get_message(turn.message_id)  # read at once, as a reload would
    assert row["content"] == "".join(pieces) and row["status"] == "incomplete" and row["finish_reason"] == "cancelled"
    await finisher
    await reader
    await engine.close()

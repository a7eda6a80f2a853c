"""A turn that must summarize first, on a busy server (FakeEngine with a delay, one slot): the
stream starts at once with ``start`` and ``{"status": "summarizing"}``, the summary has a deadline
and falls back to the trimmed history, and a client that leaves while it summarizes cancels the
summary and frees the conversation (no 409 on the retry)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from xiaoq.api.app import create_app
from xiaoq.engine.fake import FakeEngine
from xiaoq.store import Store

from tests.api.helpers import make_settings
from tests.api.test_disconnect import RawClient, _until

LONG = "这是另一个用户很长的回答。" * 40  # 520 tokens at 10 ms: the only slot is busy for ~5 s


def setup(tmp_path: Path, **overrides: Any) -> tuple[Any, FakeEngine, Store, str]:
    settings = make_settings(parallel=1, queue=4, ctx=1200, default_max_tokens=40, **overrides)
    engine = FakeEngine(settings, replies=[LONG], delay=0.01)
    store = Store(tmp_path / "turns.db")
    cid = store.create_conversation(title="长对话")["id"]
    # More history than 1200 tokens hold: the next turn drops turns and summarizes them, in one
    # request (so it is submitted, and refused if need be, before the response starts).
    for i in range(10):
        store.add_message(cid, "user", f"问题{i}：" + "很长的内容" * 12)
        store.add_message(cid, "assistant", f"回答{i}：" + "很长的回答" * 12)
    return create_app(settings, engine, store=store, web_dir=None), engine, store, cid


def summary_generations(engine: FakeEngine) -> list[Any]:
    return [g for r, g in zip(engine.requests, engine.generations) if r.priority == -1]


async def test_stream_starts_at_once_and_a_late_summary_falls_back_to_trimming(tmp_path: Path) -> None:
    app, engine, store, cid = setup(tmp_path, summary_timeout=0.5)
    await engine.start()
    other = RawClient(app, "/chat", {"prompt": "占用唯一的位置", "max_tokens": 600})
    t_other = asyncio.create_task(other.run())
    await _until(lambda: len(other.events()) >= 2)  # the only slot is streaming someone else's answer
    turn = RawClient(app, f"/api/conversations/{cid}/messages", {"content": "新的问题"})
    t0 = time.monotonic()
    t_turn = asyncio.create_task(turn.run())
    await _until(lambda: len(turn.events()) >= 2, timeout=2)
    first = time.monotonic() - t0
    print(f"first events after {first * 1000:.0f} ms while another stream holds the slot")
    start, status = turn.events()[:2]
    assert start["start"] is True and status == {"status": "summarizing"}
    await asyncio.wait_for(t_turn, 15)
    done = turn.events()[-1]
    assert done["done"] is True and done["budget"]["trimmed"] is True, done
    (summary,) = summary_generations(engine)
    assert summary.cancelled and summary.result is not None and summary.result.usage.completion_tokens == 0
    assert store.get_summary(cid) is None  # nothing half-written was stored
    assert store.get_message(done["message_id"])["status"] == "complete"
    await asyncio.wait_for(t_other, 15)
    await engine.close()
    store.close()


async def test_disconnect_while_summarizing_cancels_it_and_the_retry_is_served(tmp_path: Path) -> None:
    app, engine, store, cid = setup(tmp_path, summary_timeout=60)
    await engine.start()
    service = app.state.conversations
    other = RawClient(app, "/chat", {"prompt": "占用唯一的位置", "max_tokens": 600})
    t_other = asyncio.create_task(other.run())
    await _until(lambda: len(other.events()) >= 2)
    turn = RawClient(app, f"/api/conversations/{cid}/messages", {"content": "新的问题"})
    t_turn = asyncio.create_task(turn.run())
    await _until(lambda: {"status": "summarizing"} in turn.events(), timeout=2)
    turn.disconnect.set()
    await asyncio.wait_for(t_turn, 2)  # nothing hangs
    (summary,) = summary_generations(engine)
    assert summary.cancelled
    await _until(lambda: not service.is_running(cid), timeout=2)
    retry = RawClient(app, f"/api/conversations/{cid}/messages", {"content": "新的问题"})
    t_retry = asyncio.create_task(retry.run())
    await _until(lambda: len(retry.events()) >= 1, timeout=2)
    assert retry.status() == 200 and retry.events()[0]["start"] is True  # not 409
    other.disconnect.set()
    retry.disconnect.set()
    await asyncio.wait_for(asyncio.gather(t_other, t_retry), 5)
    await engine.close()
    store.close()

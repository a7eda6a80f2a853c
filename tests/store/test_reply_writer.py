"""ReplyWriter: time-based saves (at most one per interval) with an injected clock."""

from __future__ import annotations

import pytest

from xiaoq.store import ReplyWriter, Store, open_store


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["sqlite", "postgresql"])
def setup(request, tmp_path):
    store = open_store(tmp_path / "x.db" if request.param == "sqlite" else request.getfixturevalue("pg_url"))
    cid = store.create_conversation()["id"]
    store.add_message(cid, "user", "讲个故事")
    reply = store.add_message(cid, "assistant", "", status="incomplete")
    yield store, reply["id"]
    store.close()


def _row(store, mid):
    return store.get_message(mid)


def test_saves_at_most_once_per_interval(setup):
    store, mid = setup
    clock = FakeClock()
    w = ReplyWriter(store, mid, clock=clock, interval=1.0)
    pieces = [f"字{i}" for i in range(40)]
    saved_at: list[int] = []
    for i, p in enumerate(pieces):
        clock.t += 0.125  # 8 tokens per second (exact in binary floating point)
        if w.append(p):
            saved_at.append(i)
            row = _row(store, mid)
            assert row["content"] == "".join(pieces[: i + 1]) and row["status"] == "incomplete"
    # every 8 pieces (1 s), never more often
    assert saved_at == [7, 15, 23, 31, 39]
    assert w.saves == 5


def test_crash_loses_at_most_last_interval(setup):
    store, mid = setup
    clock = FakeClock()
    w = ReplyWriter(store, mid, clock=clock, interval=1.0)
    streamed = ""
    for i in range(57):
        clock.t += 0.07
        piece = f"<{i}>"
        w.append(piece)
        streamed += piece
        # what is on disk is a prefix of what was streamed, and lags at most one interval of text
        on_disk = _row(store, mid)["content"]
        assert streamed.startswith(on_disk)
        assert len(streamed) - len(on_disk) <= len("<00>") * (1.0 / 0.07 + 1)


def test_no_save_without_new_text_and_burst_after_stall(setup):
    store, mid = setup
    clock = FakeClock()
    w = ReplyWriter(store, mid, clock=clock, interval=1.0)
    clock.t += 5
    assert w.append("") is False  # nothing new to save
    assert w.append("a") is True  # first piece after a long wait is saved at once
    assert w.append("b") is False
    assert _row(store, mid)["content"] == "a"


def test_finish_writes_final_row(setup):
    store, mid = setup
    clock = FakeClock()
    w = ReplyWriter(store, mid, clock=clock)
    for p in ["你", "好", "！"]:
        w.append(p)
    row = w.finish("complete", completion_tokens=3, prompt_tokens=10, cached_tokens=4, timings={"ttft_ms": 5.0}, budget={"trimmed": False})
    assert row["content"] == "你好！" and row["status"] == "complete"
    assert row["completion_tokens"] == 3 and row["timings"] == {"ttft_ms": 5.0} and row["budget"] == {"trimmed": False}
    with pytest.raises(RuntimeError):
        w.append("more")


def test_stopped_reply_stays_incomplete(setup):
    store, mid = setup
    w = ReplyWriter(store, mid, clock=FakeClock())
    w.append("半")
    row = w.finish("incomplete")
    assert row["status"] == "incomplete" and row["content"] == "半"


async def test_async_helpers(setup):
    store, mid = setup
    clock = FakeClock()
    w = ReplyWriter(store, mid, clock=clock)
    clock.t += 2
    assert await w.aappend("x") is True
    assert await w.aappend("y") is False
    row = await w.afinish("error", error="engine failed")
    assert (row["content"], row["status"], row["error"]) == ("xy", "error", "engine failed")


def test_ticker_saves_text_streamed_before_a_stall(setup):
    store, mid = setup
    clock = FakeClock()
    w = ReplyWriter(store, mid, clock=clock, interval=1.0)
    clock.t += 1.0
    assert w.append("a") is True
    clock.t += 0.2
    assert w.append("b") is False  # too soon after the last save
    assert w.save_if_due() is False
    clock.t += 0.9  # generation stalls; the ticker fires
    assert w.due and w.save_if_due() is True
    assert _row(store, mid)["content"] == "ab"
    assert w.save_if_due() is False  # nothing new
    w.finish("complete")
    clock.t += 5
    assert w.due is False


def test_memory_database_for_quick_checks():
    s = Store(":memory:")
    try:
        cid = s.create_conversation(title="m")["id"]
        s.add_message(cid, "user", "hello there")
        assert s.search("hello")[0]["conversation_id"] == cid
    finally:
        s.close()


def test_revert_writes_the_row_back_as_it_was_after_periodic_saves(setup):
    store, mid = setup
    store.update_message(mid, content="已经写好的开头", status="complete", finish_reason="length", completion_tokens=7, timings={"ttft_ms": 5.0})
    before = _row(store, mid)
    clock = FakeClock()
    w = ReplyWriter(store, mid, clock=clock, interval=1.0, text=before["content"])
    clock.t += 2
    assert w.append("，接着写")
    assert _row(store, mid)["content"] == "已经写好的开头，接着写" and _row(store, mid)["status"] == "incomplete"
    w.revert(before)
    assert _row(store, mid) == before
    w.save()  # a late periodic save after the revert writes nothing
    assert _row(store, mid) == before

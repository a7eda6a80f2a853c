"""Map-reduce summaries of a document larger than the budget."""

from __future__ import annotations

import pytest

from tests.api.helpers import make_settings
from xiaoq.engine.fake import FakeEngine
from xiaoq.kb.summarize import is_summary_request, map_parts, reduce_content, windows


@pytest.mark.parametrize("text", ["总结这份文件", "帮我概括一下这个文档", "这份文件讲了什么？", "Please summarize the attached file", "tl;dr"])
def test_summary_requests_are_recognised(text: str) -> None:
    assert is_summary_request(text)


@pytest.mark.parametrize("text", ["VPN 端口是多少？", "How do I mount a disk?", "文件在哪个目录？"])
def test_questions_are_not_summary_requests(text: str) -> None:
    assert not is_summary_request(text)


def test_windows_keep_reading_order_within_budget() -> None:
    chunks = [{"text": f"第{i}段" + "字" * 40} for i in range(10)]
    parts = windows(chunks, budget=100, count=len)
    assert len(parts) == 5 and all(len(p) <= 100 for p in parts)
    assert "".join(parts).replace("\n\n", "").startswith("第0段") and parts[-1].endswith("字")
    assert [p.count("段") for p in parts] == [2, 2, 2, 2, 2]


async def test_map_runs_each_part_at_low_priority_then_reduce_holds_them_as_data() -> None:
    engine = FakeEngine(make_settings(), replies=["甲部分要点", "乙部分要点"])
    await engine.start()
    done = [(n, s) async for n, s in map_parts(engine, ["甲" * 30, "乙" * 30])]
    assert done == [(1, "甲部分要点"), (2, "乙部分要点")]
    assert [r.priority for r in engine.requests] == [-1, -1]
    assert "document part 1 of 2" in engine.requests[0].messages[0]["content"]
    content = reduce_content("总结这份文件", [s for _, s in done])
    assert content.startswith("<data") and "[2] 乙部分要点" in content and content.endswith("总结这份文件")
    await engine.close()

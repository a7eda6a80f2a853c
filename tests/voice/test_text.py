"""Cutting a streamed answer into pieces to speak: first clause early, code never read aloud."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xiaoq.voice.text import ClauseSplitter, detect_language, speakable

#: Shared with the web UI's splitter test, so both cut an answer the same way.
CASES = json.loads((Path(__file__).resolve().parents[2] / "frontend" / "src" / "__tests__" / "split_cases.json").read_text(encoding="utf-8"))["cases"]


def _split(pieces: list[str]) -> list[str]:
    s = ClauseSplitter()
    out = [p for piece in pieces for p in s.feed(piece)]
    return out + s.flush()


def test_first_piece_ends_at_the_first_clause_then_at_sentences() -> None:
    s = ClauseSplitter()
    assert s.feed("Well") == []
    assert s.feed(", that depends on") == ["Well,"]  # speech can start here
    assert s.feed(" the case, mostly") == []  # later pieces wait for a sentence end
    assert s.feed(". Next one") == ["that depends on the case, mostly."]
    assert s.flush() == ["Next one"]


def test_chinese_clauses_and_sentences() -> None:
    text = "冒泡排序是一种简单的算法，它反复比较相邻的元素。如果顺序错误就交换！最后"
    assert _split(list(text)) == ["冒泡排序是一种简单的算法，", "它反复比较相邻的元素。", "如果顺序错误就交换！", "最后"]


def test_code_blocks_are_skipped_even_when_fences_arrive_in_pieces() -> None:
    pieces = ["Here is one", " example:\n`", "``py", "thon\nprint('x')\n`", "``\nThat prints x."]
    assert _split(pieces) == ["Here is one example:", "That prints x."]


def test_decimals_and_file_names_do_not_end_sentences() -> None:
    assert _split(["Pi is 3.", "14 and main.py runs it. Done"]) == ["Pi is 3.14 and main.py runs it.", "Done"]


def test_markdown_is_made_speakable_and_language_detected() -> None:
    assert speakable("**Bold** and `code` with a [link](http://x.example) # title") == "Bold and code with a link title"
    assert detect_language("你好，请问 Python 是什么？") == "zh"
    assert detect_language("What does 你好 mean?") == "en"


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_the_same_pieces_as_the_web_ui(case: dict) -> None:
    assert _split(case["stream"]) == case["pieces"]

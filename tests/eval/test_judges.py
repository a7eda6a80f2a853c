"""The quality eval's offline judges (``eval/judges.py``): they decide the eval's figures, so they
get their own cases, including those the issue names (a loop, an email in a code fence, a Python
block nested in a list item)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "eval"))

import judges  # noqa: E402


def test_loops_exact_and_near_repeats() -> None:
    assert judges.is_loop("原因如下：" + "坚固的防御路线、坚固的防御武器、" * 12)
    assert judges.is_loop("Answer:\n" + "Please check the settings again.\n" * 8)
    near = "它的特点有" + "".join(f"第{i}种方法很好，" for i in range(1, 30))  # digits differ
    assert judges.is_loop(near, ran_to_cap=True) and not judges.is_loop(near, ran_to_cap=False)


def test_legitimate_repetition_is_no_loop() -> None:
    table = "| 名称 | 价格 |\n|---|---|\n" + "".join(f"| 商品{c} | {i * 13} 元 |\n" for i, c in enumerate("甲乙丙丁戊己庚辛壬癸"))
    numbers = ", ".join(str(i) for i in range(300))
    code = "```python\n" + "x = 1\n" * 3 + "print(x)\n```"
    for text in (table, numbers, code, "哈哈哈哈哈哈", "Dear Tom,\n\nThanks!\n\nBest,\nAnn"):
        assert not judges.is_loop(text), text
    assert not judges.is_loop(table, ran_to_cap=True)


def test_language_ignores_code() -> None:
    assert judges.reply_language("这个函数返回列表的和。\n```python\ndef total(values):\n    return sum(values)\n```") == "zh"
    assert judges.reply_language("Use `列表` here: it is the Chinese word for list.") == "en"
    assert judges.reply_language("```\n```") == "none"
    fenced_email = "```python\nDear team,\nLunch is on Friday.\n```"
    assert judges.reply_language(fenced_email) == "none" and judges.reply_language(fenced_email, fenced_is_prose=True) == "en"


def test_python_blocks_in_list_items_lose_the_item_indentation() -> None:
    text = "1. 定义函数：\n   ```python\n   def f(x):\n       return x * 2\n   ```\n2. 调用：\n\n```py\nprint(f(2))\n```\n"
    blocks = judges.python_blocks(text)
    assert [b.code for b in blocks] == ["def f(x):\n    return x * 2", "print(f(2))"]
    assert all(judges.parses(b.code) for b in blocks)
    assert not judges.parses("Dear Ms. Wang,\nI am writing to ask for a day off.")


def test_prose_in_a_fence() -> None:
    assert judges.fenced_prose("```python\nDear team,\nLunch is on Friday.\n```")
    assert not judges.fenced_prose("Dear team,\nLunch is on Friday.")


def test_length_change_compares_prompt_means_and_totals() -> None:
    before = {"a": 100.0, "b": 200.0, "c": 50.0}
    after = {"a": 95.0, "b": 120.0, "d": 10.0}  # b is 40 % shorter; c and d are not in both
    change = judges.length_change(before, after)
    assert (change.shorter, change.compared) == (1, 2)
    assert change.total_ratio == (95 + 120) / (100 + 200)
    assert judges.length_change(before, after, leave_out={"b"}) == judges.LengthChange(0, 1, 0.95)


def test_mean_lengths_per_prompt_skip_errors_and_can_take_one_sample() -> None:
    rows = [
        {"id": "a", "key": "a#0", "text": "x" * 10, "error": None},
        {"id": "a", "key": "a#1", "text": "x" * 30, "error": None},
        {"id": "b", "key": "b#0", "text": "", "error": "timeout"},
    ]
    assert judges.mean_lengths(rows) == {"a": 20.0}
    assert judges.mean_lengths(rows, sample=1) == {"a": 30.0}


def test_length_ratio_per_kind_totals_each_kind_apart() -> None:
    before = {"code-1": 100.0, "code-2": 300.0, "poem-1": 50.0, "poem-2": 80.0}
    after = {"code-1": 200.0, "code-2": 300.0, "poem-1": 25.0, "poem-2": 10.0}
    kinds = {"code-1": "code", "code-2": "code", "poem-1": "poem", "poem-2": "poem"}
    assert judges.ratio_by_kind(before, after, kinds) == {"code": 500 / 400, "poem": 35 / 130}
    assert judges.ratio_by_kind(before, after, kinds, leave_out={"poem-2"}) == {"code": 500 / 400, "poem": 0.5}

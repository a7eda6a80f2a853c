"""The summary prompt: in the conversation's language, asking to keep names, numbers and facts,
the turns as a transcript in one user message, shortened to fit when a budget is given."""

from __future__ import annotations

from xiaoq.chat.budget import Turn
from xiaoq.chat.summary import clean_summary, conversation_language, summary_messages

from tests.chat.facts import FACT, NAME, PET


def count(msgs) -> int:
    return sum(len(m["content"]) + 4 for m in msgs) + 3


def test_language_detection():
    assert conversation_language([FACT, "它三岁了"]) == "zh"
    assert conversation_language(["How do I sort a list?", "thanks"]) == "en"
    assert conversation_language(["用 Python 的 sorted 函数怎么排序 list？"]) == "zh"
    assert conversation_language([]) == "en"


def test_chinese_prompt_keeps_facts():
    turns = [Turn(FACT, f"你好{NAME}！{PET}真是个可爱的名字。"), Turn("它三岁了", "三岁的乌龟正是活泼的时候。")]
    msgs = summary_messages("用户在学 Python。", turns, max_tokens=200)
    assert [m["role"] for m in msgs] == ["system", "user"]
    body = msgs[1]["content"]
    assert "用中文" in body and "人名" in body and "数字" in body and "宠物名" in body
    assert f"用户：{FACT}" in body and "小Q：三岁的乌龟正是活泼的时候。" in body
    assert '<data label="之前的摘要"' in body and "用户在学 Python。" in body
    assert '<data label="对话"' in body
    assert body.rstrip().endswith("摘要：")
    assert body.index("用户在学") < body.index(FACT)  # old summary first, then the turns in order


def test_english_prompt():
    msgs = summary_messages(None, [Turn("My name is Ann and I have 2 dogs.", "Nice to meet you, Ann!")], max_tokens=100)
    body = msgs[1]["content"]
    assert "Write in English" in body and "User: My name is Ann and I have 2 dogs." in body
    assert "earlier summary" not in body


def test_long_turns_are_shortened_to_fit_budget():
    turns = [Turn(FACT + "。" + "细节" * 800, "好的" * 800 + "结尾"), Turn("第二个问题", "第二个回答")]
    full = summary_messages(None, turns)
    msgs = summary_messages(None, turns, count=count, budget=900)
    assert count(full) > 900 >= count(msgs)
    body = msgs[1]["content"]
    assert FACT in body  # heads survive (facts come first)
    assert "结尾" in body  # and tails
    assert "第二个问题" in body and " … " in body


def test_clean_summary():
    assert clean_summary(f"  摘要：用户叫{NAME}。 ") == f"用户叫{NAME}。"
    assert clean_summary("Summary: Ann has 2 dogs.") == "Ann has 2 dogs."
    assert clean_summary(f"用户叫{NAME}，养了乌龟。") == f"用户叫{NAME}，养了乌龟。"

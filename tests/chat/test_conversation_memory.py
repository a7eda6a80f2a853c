"""chat/memory.py: the user's self-statements kept verbatim in summaries, and loop trimming."""

from __future__ import annotations

from xiaoq.chat.memory import MAX_NOTE_CHARS, model_part, notes_block, self_statements

from tests.chat.facts import FACT, NAME


def test_chinese_self_statements_are_kept_questions_and_requests_are_not() -> None:
    texts = [
        f"{FACT}。请记住。",
        "请详细介绍一下长城：它的历史、特点。",
        "我叫什么名字？",
        "帮我写一个冒泡排序。",
        "我喜欢喝茶，也喜欢看书",
        f"{FACT}。",  # said again: kept once
    ]
    assert self_statements(texts, "zh") == [FACT, "我喜欢喝茶，也喜欢看书"]


def test_english_sentences_split_on_periods() -> None:
    texts = ["My name is Bob. I live in Paris. Can you explain monads? What is my name?", "Explain the history of Rome."]
    assert self_statements(texts, "en") == ["My name is Bob", "I live in Paris"]
    # Quoted and attributed: the user's words, never an instruction in XiaoQ's voice.
    assert notes_block(self_statements(texts, "en"), "en") == 'What the user said about themselves (quoted verbatim): "My name is Bob"; "I live in Paris".\n'


def test_the_block_is_bounded_and_keeps_the_most_recent() -> None:
    texts = [f"我有{i}号习惯，每天都坚持做这件事情很久了" for i in range(20)]
    kept = self_statements(texts, "zh")
    assert sum(len(s) for s in kept) <= MAX_NOTE_CHARS and kept[-1] == texts[-1]
    assert self_statements(["今天天气不错"], "zh") == [] and notes_block([], "zh") == ""


def test_model_part_strips_the_block_for_resummarizing() -> None:
    stored = notes_block([f"我叫{NAME}"], "zh") + "用户问了长城的历史。"
    assert stored.startswith(f"用户说过的关于自己的话（原话引用）：“我叫{NAME}”。\n")
    assert model_part(stored) == "用户问了长城的历史。" and model_part("没有块") == "没有块"

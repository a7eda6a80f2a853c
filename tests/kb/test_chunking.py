"""Passages respect sections and Chinese sentence ends, and overlap where a paragraph is cut."""

from __future__ import annotations

from xiaoq.kb.chunking import ChunkSettings, chunk_blocks, estimate_tokens, sentences
from xiaoq.kb.types import Block


def test_chinese_and_english_sentence_ends() -> None:
    text = "报销须附发票。超过期限怎么办？可申请延期；须主管签字！Then file it. Done"
    assert sentences(text) == ["报销须附发票。", "超过期限怎么办？", "可申请延期；", "须主管签字！", "Then file it. ", "Done"]


def test_token_estimate_counts_cjk_characters_and_words() -> None:
    assert estimate_tokens("年假十五天") == 5
    assert estimate_tokens("ten words " * 5) == 13


def test_never_crosses_a_heading_and_keeps_positions() -> None:
    blocks = [Block("甲节内容。", ("甲",), "a"), Block("乙节内容。", ("乙",), "b"), Block("乙节第二段。", ("乙",), "b")]
    chunks = chunk_blocks(blocks)
    assert [(c.heading, c.anchor, c.text) for c in chunks] == [(("甲",), "a", "甲节内容。"), (("乙",), "b", "乙节内容。\n\n乙节第二段。")]
    assert [c.position for c in chunks] == [0, 1]


def test_long_paragraph_cut_at_sentence_ends_with_overlap() -> None:
    sentence = [f"第{i}号规定要求所有员工按时提交本月的工作总结报告。" for i in range(40)]
    settings = ChunkSettings(target_tokens=100, max_tokens=150, overlap_tokens=30)
    chunks = chunk_blocks([Block("".join(sentence), ("规定",))], settings)
    assert len(chunks) > 5
    for prev, nxt in zip(chunks, chunks[1:]):
        assert prev.text.endswith("。") and nxt.text.startswith("第")  # whole sentences only
        last = prev.text.split("。")[-2] + "。"
        assert nxt.text.startswith(last)  # the last sentence is repeated: overlap
    assert all(c.tokens <= 150 for c in chunks)
    assert "".join(sentence).endswith(chunks[-1].text[-20:])


def test_whole_paragraphs_are_not_overlapped() -> None:
    paras = [Block("段落" + "字" * 60 + f"{i}。", ("节",)) for i in range(4)]
    chunks = chunk_blocks(paras, ChunkSettings(target_tokens=100, max_tokens=150, overlap_tokens=30))
    texts = "\n\n".join(c.text for c in chunks)
    assert texts.count("段落") == 4


def test_text_without_any_stop_is_still_cut() -> None:
    chunks = chunk_blocks([Block("x" * 10 + " word" * 600, ())], ChunkSettings(target_tokens=100, max_tokens=150, overlap_tokens=0))
    assert len(chunks) >= 5 and all(c.tokens <= 150 for c in chunks)

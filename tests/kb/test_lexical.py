"""Chinese words are searchable: jieba words in a unicode61 FTS5 column, bigrams beside them."""

from __future__ import annotations

import sqlite3

from xiaoq.kb import lexical


def _fts(rows: list[str]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5 (words, grams, tokenize='unicode61 remove_diacritics 2')")
    for i, text in enumerate(rows, 1):
        conn.execute("INSERT INTO t (rowid, words, grams) VALUES (?, ?, ?)", (i, *lexical.index_columns(text)))
    return conn


def test_trigram_misses_two_character_words_this_finds_them() -> None:
    """The reason for the design: the stdlib's trigram tokenizer never matches 发票."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE tri USING fts5 (body, tokenize='trigram')")
    conn.execute("INSERT INTO tri (body) VALUES ('报销时须提供发票原件')")
    assert conn.execute("SELECT count(*) FROM tri WHERE tri MATCH '发票'").fetchone()[0] == 0
    ours = _fts(["报销时须提供发票原件", "会议室在三楼"])
    q = f"words : ({lexical.word_query('发票怎么交')}) OR grams : ({lexical.bigram_query('发票怎么交')})"
    assert [r[0] for r in ours.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t)", (q,))] == [1]


def test_bm25_ranks_the_passage_with_more_query_words_first() -> None:
    conn = _fts(["停车场周末开放。", "停车场工作日开放，访客停车须登记。", "食堂周末关闭。"])
    q = f"words : ({lexical.word_query('访客停车登记')})"
    ranked = [r[0] for r in conn.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t)", (q,))]
    assert ranked[0] == 2 and 3 not in ranked


def test_query_words_drop_stopwords_and_quote_fts_syntax() -> None:
    assert lexical.word_query("What is the VPN port?") == '"vpn" OR "port"'
    assert lexical.word_query('NEAR(vpn) "port" *') == '"near" OR "vpn" OR "port"'
    assert lexical.word_query("什么是？") == '"什么" OR "是"'  # only stopwords: keep them rather than search nothing
    assert lexical.bigram_query("English only") == ""

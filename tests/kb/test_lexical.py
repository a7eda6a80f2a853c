"""Chinese words are searchable: jieba words and CJK bigrams, indexed by each store as they are
(SQLite: FTS5 ``unicode61`` columns ranked by bm25; PostgreSQL: a weighted tsvector ranked by
idf-weighted ts_rank), queried through the store's one search method on both backends."""

from __future__ import annotations

import sqlite3

from xiaoq.kb import lexical
from xiaoq.kb.retrieve import Retriever
from xiaoq.store.kb import KnowledgeStore, fts_match
from xiaoq.store.pg_kb import query_terms, tsvector_literal


def _passages(kstore: KnowledgeStore, texts: list[str]) -> tuple[list[int], list[int]]:
    """The scope and the chunk ids of ``texts``, one ready document each."""
    kb = kstore.ensure_kb("lex")
    ids = []
    for i, text in enumerate(texts):
        doc = kstore.begin_document(kb["id"], f"d{i}.txt", content_hash=str(i), size=len(text))
        kstore.add_chunks(doc, kb["id"], [(0, "", None, None, text, len(text), None, *lexical.index_columns(text))])
        kstore.finish_document(doc, status="ready")
        ids.append(kstore.document_chunks(doc)[0]["id"])
    return [kb["id"]], ids


def _ranked(kstore: KnowledgeStore, scope: list[int], query: str) -> list[int]:
    return [cid for cid, _ in Retriever(kstore).lexical(scope, query)]


def test_trigram_misses_two_character_words_both_stores_find_them(kstore: KnowledgeStore) -> None:
    """The reason for the design: the stdlib's trigram tokenizer never matches 发票."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE tri USING fts5 (body, tokenize='trigram')")
    conn.execute("INSERT INTO tri (body) VALUES ('报销时须提供发票原件')")
    assert conn.execute("SELECT count(*) FROM tri WHERE tri MATCH '发票'").fetchone()[0] == 0
    scope, ids = _passages(kstore, ["报销时须提供发票原件", "会议室在三楼"])
    assert _ranked(kstore, scope, "发票怎么交") == [ids[0]]
    assert _ranked(kstore, scope, "发票") == [ids[0]]  # a two-character word alone


def test_ranks_the_passage_with_more_query_words_first(kstore: KnowledgeStore) -> None:
    scope, ids = _passages(kstore, ["停车场周末开放。", "停车场工作日开放，访客停车须登记。", "食堂周末关闭。"])
    ranked = _ranked(kstore, scope, "访客停车登记")
    assert ranked[0] == ids[1] and ids[2] not in ranked


def test_a_rare_word_outranks_a_common_one(kstore: KnowledgeStore) -> None:
    """bm25's inverse document frequency on both stores: the passage with the word only it holds
    comes first, though another holds the word every passage has three times (as a word and as
    a bigram: two matched terms against one)."""
    common = ["员工手册第一章总则。", "员工手册第二章考勤。", "员工手册第三章福利。"]
    scope, ids = _passages(kstore, [*common, "员工员工员工须知", "vpn 须知"])
    assert _ranked(kstore, scope, "员工 VPN")[:2] == [ids[4], ids[3]]


def test_query_syntax_is_never_interpreted(kstore: KnowledgeStore) -> None:
    scope, ids = _passages(kstore, ["VPN port 4433 (NEAR the gateway) it's 'quoted' \\ back"])
    for query in ['NEAR(vpn) "port" *', "it's", "'quoted' & | ! :*", "\\ back", "a:b:A"]:
        assert _ranked(kstore, scope, query) in ([ids[0]], []), query
    assert _ranked(kstore, scope, 'NEAR(vpn) "port" *') == [ids[0]]
    assert _ranked(kstore, scope, "it's") == [ids[0]]


def test_query_words_drop_stopwords() -> None:
    assert lexical.query_words("What is the VPN port?") == ["vpn", "port"]
    assert lexical.query_words("什么是？") == ["什么", "是"]  # only stopwords: keep them rather than search nothing
    assert lexical.query_bigrams("English only") == []
    assert fts_match(["near", 'a"b'], []) == 'words : ("near" OR "a""b")'
    assert fts_match([], []) == ""


def test_postgresql_literals_keep_terms_exact() -> None:
    assert tsvector_literal(["年假", "it's"], ["年假"]) == "'年假':1A,3B 'it''s':2A"
    assert query_terms(["a\\b"], ["年假"]) == ["'a\\\\b':A", "'年假':B"]

"""The conversations repository on real SQLite files: CRUD, shapes of docs/api.md, cascade,
search (Chinese, trigram and LIKE fallback), suggestions, export, summaries."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time

import pytest

from xiaoq.errors import InvalidRequest, NotFound
from xiaoq.store import Database, Store, iter_turns, open_store

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CONV_KEYS = {"id", "title", "system_prompt", "settings", "kb", "created_at", "updated_at", "message_count"}
MSG_KEYS = {
    "id", "conversation_id", "role", "content", "status", "prompt_tokens", "completion_tokens", "cached_tokens",
    "timings", "budget", "error", "finish_reason", "citations", "retrieval", "created_at", "updated_at",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """The same tests on both backends: a SQLite file, and a fresh database on a real PostgreSQL."""
    where = tmp_path / "deep" / "dir" / "xiaoq.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = open_store(where)
    yield s
    s.close()


def test_creates_parent_dirs_and_pragmas(tmp_path):
    path = tmp_path / "a" / "b" / "x.db"
    s = Store(path)
    try:
        assert path.is_file()
        conn = s.db.reader()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    finally:
        s.close()


def test_conversation_crud_and_shapes(store):
    c = store.create_conversation(title="冒泡排序", system_prompt="be brief", settings={"temperature": 0.2})
    assert set(c) == CONV_KEYS
    assert re.fullmatch(r"[0-9a-f]{32}", c["id"])
    assert c["title"] == "冒泡排序" and c["system_prompt"] == "be brief"
    assert c["settings"] == {"temperature": 0.2} and c["message_count"] == 0
    assert TS.match(c["created_at"]) and TS.match(c["updated_at"])
    json.dumps(c)  # JSON-ready

    u = store.update_conversation(c["id"], title="新标题")
    assert u["title"] == "新标题" and u["system_prompt"] == "be brief" and u["settings"] == {"temperature": 0.2}
    assert u["updated_at"] >= c["updated_at"]
    u = store.update_conversation(c["id"], system_prompt=None, settings={})
    assert u["system_prompt"] is None and u["settings"] == {} and u["title"] == "新标题"

    assert store.get_conversation(c["id"]) == u
    store.delete_conversation(c["id"])
    with pytest.raises(NotFound):
        store.get_conversation(c["id"])
    with pytest.raises(NotFound):
        store.delete_conversation(c["id"])
    with pytest.raises(NotFound):
        store.update_conversation(c["id"], title="x")


def test_conversation_kb_and_reply_retrieval_round_trip(store):
    """The knowledge base a conversation answers from is a column of its own; a reply keeps
    what was retrieved beside its citations (on both backends)."""
    c = store.create_conversation(title="t", kb="handbook")
    assert c["kb"] == "handbook" and store.get_conversation(c["id"])["kb"] == "handbook"
    assert store.update_conversation(c["id"], title="u")["kb"] == "handbook"
    assert store.update_conversation(c["id"], kb="")["kb"] is None
    assert store.update_conversation(c["id"], kb="other")["kb"] == "other"
    assert store.update_conversation(c["id"], kb=None)["kb"] is None
    assert store.create_conversation()["kb"] is None
    reply = store.add_message(c["id"], "assistant", "", "incomplete")
    retrieval = {"query": "年假", "hits": [{"chunk_id": 3, "lexical": 1.5, "dense": None, "score": 0.03}]}
    row = store.update_message(reply["id"], status="complete", citations=[{"n": 1, "chunk_id": 3}], retrieval=retrieval)
    assert row["retrieval"] == retrieval and row["citations"] == [{"n": 1, "chunk_id": 3}]
    assert store.get_conversation(c["id"], messages=True)["messages"][0]["retrieval"] == retrieval


def test_list_newest_updated_first_with_paging(store):
    ids = [store.create_conversation(title=f"c{i}")["id"] for i in range(5)]
    time.sleep(0.005)  # timestamps have millisecond resolution: make the bump a later one
    store.add_message(ids[1], "user", "bump")  # now the most recently updated
    listed = [c["id"] for c in store.list_conversations()]
    assert listed[0] == ids[1]
    assert set(listed) == set(ids)
    assert [c["id"] for c in store.list_conversations(limit=2, offset=0)] == listed[:2]
    assert [c["id"] for c in store.list_conversations(limit=2, offset=2)] == listed[2:4]
    assert store.list_conversations(limit=10, offset=5) == []
    assert store.list_conversations()[0]["message_count"] == 1


def test_messages_add_update_get(store):
    cid = store.create_conversation()["id"]
    u = store.add_message(cid, "user", "你好")
    a = store.add_message(cid, "assistant", "", status="incomplete")
    assert set(u) == MSG_KEYS and u["status"] == "complete" and u["timings"] is None and u["budget"] is None
    assert a["status"] == "incomplete" and a["id"] > u["id"]
    budget = {"turns_total": 12, "turns_kept": 7, "turns_summarized": 5, "summary_tokens": 80, "prompt_tokens": 1900, "trimmed": True}
    done = store.update_message(
        a["id"], content="你好！", status="complete", prompt_tokens=120, completion_tokens=88, cached_tokens=100,
        timings={"ttft_ms": 210.5, "tokens_per_second": 31.2}, budget=budget,
    )
    assert done["content"] == "你好！" and done["status"] == "complete"
    assert (done["prompt_tokens"], done["completion_tokens"], done["cached_tokens"]) == (120, 88, 100)
    assert done["timings"] == {"ttft_ms": 210.5, "tokens_per_second": 31.2} and done["budget"] == budget
    err = store.update_message(a["id"], status="error", error="boom")
    assert err["status"] == "error" and err["error"] == "boom" and err["content"] == "你好！"

    conv = store.get_conversation(cid, messages=True)
    assert conv["message_count"] == 2 and [m["id"] for m in conv["messages"]] == [u["id"], a["id"]]
    assert iter_turns(conv["messages"])[0][0]["id"] == u["id"]

    with pytest.raises(InvalidRequest):
        store.update_message(a["id"], status="weird")
    with pytest.raises(InvalidRequest):
        store.add_message(cid, "robot", "x")
    with pytest.raises(NotFound):
        store.add_message("0" * 32, "user", "x")
    with pytest.raises(NotFound):
        store.update_message(999999, content="x")


def test_cascade_delete_removes_messages_and_index(store):
    cid = store.create_conversation()["id"]
    other = store.create_conversation()["id"]
    store.add_message(cid, "user", "一只叫豆豆的猫")
    store.add_message(other, "user", "别的对话")
    store.delete_conversation(cid)
    conn = store.db.reader()
    assert conn.execute("SELECT count(*) FROM messages WHERE conversation_id = ?", (cid,)).fetchone()[0] == 0
    assert store.search("叫豆豆") == [] and store.search("豆豆") == []
    assert store.get_messages(other)[0]["content"] == "别的对话"
    if isinstance(store.db, Database):  # the FTS5 index agrees with the table
        with store.db.write() as w:
            w.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")


def test_foreign_key_enforced(store):
    import psycopg

    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        with store.db.write() as w:
            w.execute(
                "INSERT INTO messages (conversation_id, role, content, created_at, updated_at) VALUES (?, 'user', 'x', 'a', 'a')",
                ("f" * 32,),
            )


def test_deleting_messages_drops_the_stale_summary(store):
    cid = store.create_conversation()["id"]
    ids = [store.add_message(cid, r, t)["id"] for r, t in [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]]
    store.set_summary(cid, "用户问了q1", ids[1], 5)
    assert store.get_summary(cid) == {"summary": "用户问了q1", "upto_message_id": ids[1], "tokens": 5}
    store.delete_messages(cid, ids[3:])
    assert store.get_summary(cid) is not None  # covers only messages before the deleted one
    assert [m["content"] for m in store.get_messages(cid)] == ["q1", "a1", "q2"]
    store.delete_messages(cid, ids[1:3])
    assert store.get_summary(cid) is None  # it summarized deleted text
    assert [m["content"] for m in store.get_messages(cid)] == ["q1"]
    store.delete_messages(cid, [])
    assert len(store.get_messages(cid)) == 1


def test_a_reply_replaces_others_in_the_same_write(store):
    cid = store.create_conversation()["id"]
    q = store.add_message(cid, "user", "q")
    old = store.add_message(cid, "assistant", "old")
    new = store.add_message(cid, "assistant", "", status="incomplete")
    row = store.update_message(new["id"], content="new", status="complete", finish_reason="length", citations=[{"doc": 1}], replaces=[old["id"]])
    assert (row["finish_reason"], row["citations"]) == ("length", [{"doc": 1}])
    assert [(m["id"], m["content"]) for m in store.get_messages(cid)] == [(q["id"], "q"), (new["id"], "new")]
    other = store.create_conversation()["id"]
    foreign = store.add_message(other, "user", "not this conversation's")
    store.update_message(new["id"], replaces=[foreign["id"]])  # never deletes another conversation's rows
    assert len(store.get_messages(other)) == 1


@pytest.fixture
def searchable(store):
    c1 = store.create_conversation(title="猫")
    c2 = store.create_conversation(title="code")
    store.add_message(c1["id"], "user", "我叫李雷，我养了一只叫豆豆的猫")
    store.add_message(c1["id"], "assistant", "你好李雷！豆豆是个可爱的名字。")
    store.add_message(c2["id"], "user", "How do I sort a list in Python?")
    store.add_message(c2["id"], "assistant", "Use sorted(xs) or xs.sort(); 100% safe_name")
    return store, c1, c2


def test_search_chinese_two_chars_falls_back_to_like(searchable):
    store, c1, _ = searchable
    hits = store.search("豆豆")
    assert {h["role"] for h in hits} == {"user", "assistant"}
    assert all(h["conversation_id"] == c1["id"] and h["conversation_title"] == "猫" and "豆豆" in h["snippet"] for h in hits)
    assert hits[0]["message_id"] > hits[1]["message_id"]  # newest first
    assert set(hits[0]) == {"conversation_id", "conversation_title", "message_id", "role", "snippet", "created_at"}
    assert [h["role"] for h in store.search("李")] == ["assistant", "user"]
    assert store.search("狗") == []


def test_search_three_plus_chars_uses_fts(searchable):
    store, c1, c2 = searchable
    hits = store.search("叫豆豆的猫")
    assert len(hits) == 1 and hits[0]["role"] == "user" and "叫豆豆的猫" in hits[0]["snippet"]
    assert [h["conversation_id"] for h in store.search("python")] == [c2["id"]]  # case-insensitive
    assert store.search("豆豆豆") == []
    # FTS syntax characters in a query are plain text, not operators
    assert store.search('"sorted(xs)') == []  # no such text (the quote is part of it), and no FTS syntax error
    assert store.search("sorted(xs)")[0]["conversation_id"] == c2["id"]
    assert store.search("NOT AND") == []
    # the FTS path really uses the index: it finds rows added after, and not rows deleted
    m = store.add_message(c2["id"], "user", "再问一次豆豆的猫粮")
    assert store.search("豆的猫")[0]["message_id"] == m["id"]
    store.update_message(m["id"], content="改掉了")
    assert [h["message_id"] for h in store.search("豆的猫")] == [hits[0]["message_id"]]


def test_search_like_escapes_wildcards(searchable):
    store, *_ = searchable
    assert [h["role"] for h in store.search("0%")] == ["assistant"]
    assert store.search("%") != [] and all("%" in h["snippet"] for h in store.search("%"))
    assert store.search("_") and all("_" in h["snippet"] for h in store.search("_"))
    assert store.search("  ") == []


def test_snippet_is_cut_around_match(store):
    cid = store.create_conversation()["id"]
    store.add_message(cid, "user", "开头" * 100 + "豆豆在这里" + "结尾" * 100)
    (hit,) = store.search("豆豆在这里")
    assert "豆豆在这里" in hit["snippet"] and hit["snippet"].startswith("…") and hit["snippet"].endswith("…")
    assert len(hit["snippet"]) < 120


def test_suggestions(store):
    cid = store.create_conversation()["id"]
    for text in ["怎么写冒泡排序", "Python 怎么写", "怎么写冒泡排序", "天气"]:
        store.add_message(cid, "user", text)
    store.add_message(cid, "assistant", "怎么写都行")  # replies are never suggested
    assert store.suggestions("怎么写") == ["怎么写冒泡排序", "Python 怎么写"]
    assert store.suggestions("天") == ["天气"]
    assert len(store.suggestions("")) == 3
    for i in range(12):
        store.add_message(cid, "user", f"问题{i}")
    assert len(store.suggestions("问题")) == 8 and store.suggestions("问题")[0] == "问题11"


def test_export_markdown_and_json(store):
    c = store.create_conversation(title="导出", system_prompt="简洁")
    store.add_message(c["id"], "user", "写个函数")
    store.add_message(c["id"], "assistant", "```python\ndef f():\n    pass\n```", status="incomplete")
    store.set_summary(c["id"], "摘要", None, 3)
    md = store.export_markdown(c["id"])
    assert md.startswith("# 导出\n")
    assert "## User\n\n写个函数" in md and "```python\ndef f():\n    pass\n```" in md
    assert "## XiaoQ _(incomplete)_" in md and "简洁" in md
    data = store.export_json(c["id"])
    assert json.loads(json.dumps(data, ensure_ascii=False))["messages"][1]["status"] == "incomplete"
    assert data["title"] == "导出" and len(data["messages"]) == 2 and data["summary"]["summary"] == "摘要"
    with pytest.raises(NotFound):
        store.export_markdown("0" * 32)


def test_concurrent_writers_and_readers(store):
    cid = store.create_conversation()["id"]
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                store.add_message(cid, "user", f"t{n}-{i}")
                store.get_messages(cid)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert store.get_conversation(cid)["message_count"] == 100
    assert store.db.integrity_check() == "ok"


def test_stored_token_counts_are_forgotten_when_the_content_changes(store):
    cid = store.create_conversation()["id"]
    a = store.add_message(cid, "user", "数一数")
    b = store.add_message(cid, "assistant", "好的")
    store.set_token_counts("tok-1", [(a["id"], "数一数", 3), (b["id"], "旧内容", 9)])  # b's content differs: ignored
    assert store.token_counts(cid, "tok-1") == {a["id"]: 3}
    assert store.token_counts(cid, "other") == {}
    store.update_message(a["id"], content="改了")
    assert store.token_counts(cid, "tok-1") == {}

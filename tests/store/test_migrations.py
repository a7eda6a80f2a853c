"""Migrations from an empty file and from the previous schema (m001) holding data."""

from __future__ import annotations

import sqlite3

from xiaoq.store import Store
from xiaoq.store.db import connect
from xiaoq.store.migrations import MIGRATIONS, applied, migrate

NAMES = [fn.__name__ for fn in MIGRATIONS]


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")}


def test_at_least_two_ordered_migrations():
    assert len(NAMES) >= 2 and NAMES[0] == "m001_initial" and NAMES == sorted(NAMES)


def test_empty_file_to_latest(tmp_path):
    path = tmp_path / "new.db"
    conn = connect(path)
    assert migrate(conn) == NAMES
    assert applied(conn) == NAMES
    assert migrate(conn) == []  # idempotent
    assert {"conversations", "messages", "messages_fts", "messages_fts_insert", "_migrations"} <= _tables(conn)
    conn.close()
    s = Store(path)  # opening an up-to-date file changes nothing
    assert applied(s.db.reader()) == NAMES
    s.close()


def test_previous_schema_with_data_to_latest(tmp_path):
    path = tmp_path / "old.db"
    conn = connect(path)
    assert migrate(conn, upto="m001_initial") == ["m001_initial"]
    assert "messages_fts" not in _tables(conn)
    cols = {r[1] for r in conn.execute("PRAGMA table_info(messages)")}
    assert "budget" not in cols
    cid = "a" * 32
    conn.execute(
        "INSERT INTO conversations (id, title, settings, created_at, updated_at) VALUES (?, '旧对话', '{}', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
        (cid,),
    )
    conn.execute(
        "INSERT INTO messages (conversation_id, role, content, status, created_at, updated_at) VALUES (?, 'user', '我养了一只叫豆豆的猫', 'complete', 'x', 'x')",
        (cid,),
    )
    conn.execute(
        "INSERT INTO messages (conversation_id, role, content, status, completion_tokens, created_at, updated_at) VALUES (?, 'assistant', '半句', 'incomplete', 3, 'x', 'x')",
        (cid,),
    )
    conn.close()

    s = Store(path)  # migrates to the latest on open
    try:
        assert applied(s.db.reader()) == NAMES
        conv = s.get_conversation(cid, messages=True)
        assert conv["title"] == "旧对话" and conv["message_count"] == 2
        assert [m["content"] for m in conv["messages"]] == ["我养了一只叫豆豆的猫", "半句"]
        assert conv["messages"][1]["status"] == "incomplete" and conv["messages"][1]["budget"] is None
        # Replies stored before m003 do not know why they ended; new ones record it.
        assert conv["messages"][1]["finish_reason"] is None and conv["messages"][1]["citations"] is None
        row = s.update_message(conv["messages"][1]["id"], status="complete", finish_reason="length", citations=[])
        assert (row["finish_reason"], row["citations"]) == ("length", [])
        assert s.get_summary(cid) is None
        # old rows were indexed by the migration; new rows by the triggers
        assert s.search("叫豆豆")[0]["conversation_id"] == cid
        s.add_message(cid, "user", "新的消息内容")
        assert len(s.search("新的消息")) == 1
        assert s.db.integrity_check() == "ok"
    finally:
        s.close()


def test_failed_migration_rolls_back(tmp_path, monkeypatch):
    import xiaoq.store.migrations as mig

    def m999_broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("boom")

    monkeypatch.setattr(mig, "MIGRATIONS", [*MIGRATIONS, m999_broken])
    conn = connect(tmp_path / "x.db")
    try:
        mig.migrate(conn)
    except RuntimeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("migration error swallowed")
    assert applied(conn) == NAMES
    assert "half_done" not in _tables(conn)
    conn.close()


def test_m009_keeps_presets_and_allows_group_sharing(tmp_path):
    conn = connect(tmp_path / "p.db")
    migrate(conn, upto="m008_accounts")
    conn.execute(
        "INSERT INTO presets (id, builtin, owner_id, visibility, name, created_at, updated_at) VALUES ('p1', NULL, 7, 'private', '周报', 't', 't')"
    )
    conn.commit()
    assert migrate(conn) == ["m009_preset_groups"]
    row = conn.execute("SELECT owner_id, visibility, group_name, name FROM presets WHERE id = 'p1'").fetchone()
    assert tuple(row) == (7, "private", None, "周报")
    conn.execute("UPDATE presets SET visibility = 'group', group_name = 'hr' WHERE id = 'p1'")
    try:
        conn.execute("UPDATE presets SET visibility = 'team' WHERE id = 'p1'")
        raise AssertionError("the CHECK constraint let 'team' in")
    except sqlite3.IntegrityError:
        pass
    conn.close()

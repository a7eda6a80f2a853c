"""Backup and restore of the SQLite store (the file-level part; the CLI under a writing server is
tests/cli/test_backup_command.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from xiaoq.errors import XiaoQError
from xiaoq.store import Store
from xiaoq.store.backup import backup, restore


def _fill(path: Path, n: int) -> tuple[Store, str]:
    store = Store(path)
    cid = store.create_conversation(title="备份")["id"]
    for i in range(n):
        store.add_message(cid, "user" if i % 2 == 0 else "assistant", f"消息{i}")
    return store, cid


def test_backup_is_one_sound_file_with_everything_committed(tmp_path: Path) -> None:
    store, cid = _fill(tmp_path / "live.db", 6)
    try:  # the store stays open, its WAL not checkpointed: the copy must still hold every row
        info = backup(tmp_path / "live.db", tmp_path / "b" / "copy.db")
    finally:
        store.close()
    assert (info.conversations, info.messages) == (1, 6)
    assert not (tmp_path / "b" / "copy.db-wal").exists()
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["copy.db"]
    conn = sqlite3.connect(tmp_path / "b" / "copy.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [r[0] for r in conn.execute("SELECT content FROM messages ORDER BY id")] == [f"消息{i}" for i in range(6)]
    conn.close()


def test_backup_never_overwrites(tmp_path: Path) -> None:
    _fill(tmp_path / "live.db", 1)[0].close()
    (tmp_path / "taken.db").write_text("keep me")
    with pytest.raises(XiaoQError, match="already exists"):
        backup(tmp_path / "live.db", tmp_path / "taken.db")
    assert (tmp_path / "taken.db").read_text() == "keep me"


def test_restore_replaces_and_keeps_the_previous_database(tmp_path: Path) -> None:
    _fill(tmp_path / "live.db", 4)[0].close()
    backup(tmp_path / "live.db", tmp_path / "copy.db")
    store, _ = _fill(tmp_path / "live.db", 3)  # more rows after the backup
    store.close()
    info, saved = restore(tmp_path / "copy.db", tmp_path / "live.db")
    assert (info.conversations, info.messages) == (1, 4)
    assert saved is not None and Store(saved).db.query_one("SELECT count(*) FROM messages")[0] == 7
    reopened = Store(tmp_path / "live.db")  # the server opens it as usual (WAL, migrations)
    assert reopened.db.integrity_check() == "ok"
    assert len(reopened.list_conversations()) == 1
    reopened.close()


def test_restore_refuses_what_is_not_a_database(tmp_path: Path) -> None:
    _fill(tmp_path / "live.db", 2)[0].close()
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(XiaoQError, match="not a XiaoQ database"):
        restore(tmp_path / "junk.db", tmp_path / "live.db")
    assert Store(tmp_path / "live.db").db.query_one("SELECT count(*) FROM messages")[0] == 2

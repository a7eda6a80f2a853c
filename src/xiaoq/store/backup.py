"""Backups of the SQLite database while the server runs, and restoring one.

SQLite's online backup API (``sqlite3.Connection.backup``) copies the database page by page inside
one read transaction: in WAL mode that transaction sees one committed state and never blocks the
server's writer, so the copy is consistent (every transaction committed before it started, none
half) without stopping anything. Copying the file with ``cp`` instead can catch a page mid-write
and misses whatever still sits in ``-wal``.

A backup is written to a temporary file beside its destination, checked (``integrity_check``),
turned into a self-contained single file (rollback journal, no ``-wal``) and only then renamed into
place, so a failed or interrupted backup never leaves a file that looks like a good one.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from xiaoq.errors import XiaoQError
from xiaoq.store.db import connect


@dataclass
class BackupInfo:
    """What a backup (or a restore) holds."""

    path: Path
    bytes: int
    conversations: int
    messages: int


def backup(source: Path, dest: Path) -> BackupInfo:
    """Copy the live database ``source`` to ``dest`` (which must not exist yet)."""
    if not source.is_file():
        raise XiaoQError(f"no database at {source}")
    if dest.exists():
        raise XiaoQError(f"{dest} already exists: choose a new file name")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    try:
        _copy(source, partial)
        _seal(partial)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return describe(dest)


def restore(backup_file: Path, target: Path) -> tuple[BackupInfo, Path | None]:
    """Replace the database ``target`` by the content of ``backup_file``.

    The backup is checked first; the current database (if any) is first saved beside it as
    ``<name>.before-restore-<time>``, whose path is returned. The copy goes through SQLite into
    the target, so a leftover ``-wal`` of the target can never be replayed over the restored data.
    """
    if not backup_file.is_file():
        raise XiaoQError(f"no backup at {backup_file}")
    _check(backup_file)
    saved = None
    if target.exists():
        saved = target.with_name(f"{target.name}.before-restore-{time.strftime('%Y%m%dT%H%M%S')}")
        backup(target, saved)
    target.parent.mkdir(parents=True, exist_ok=True)
    _copy(backup_file, target, wal=True)
    return describe(target), saved


def describe(path: Path) -> BackupInfo:
    """Size and row counts of a database file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conversations = conn.execute("SELECT count(*) FROM conversations").fetchone()[0]
        messages = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        conn.close()
    return BackupInfo(path, path.stat().st_size, conversations, messages)


def _copy(source: Path, dest: Path, *, wal: bool = False) -> None:
    """One backup-API pass from ``source`` into ``dest`` (a new file, or a WAL database to overwrite)."""
    src = sqlite3.connect(str(source), timeout=30)
    dst = connect(dest) if wal else sqlite3.connect(str(dest))
    try:
        src.backup(dst)
    except sqlite3.Error as e:
        raise XiaoQError(f"copying {source} to {dest} failed: {e}") from None
    finally:
        dst.close()
        src.close()


def _seal(path: Path) -> None:
    """Check the copy and make it one self-contained file (no -wal beside it)."""
    _check(path)
    conn = sqlite3.connect(str(path))
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()


def _check(path: Path) -> None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        conn.execute("SELECT 1 FROM conversations LIMIT 1").fetchall()
    except sqlite3.DatabaseError as e:
        raise XiaoQError(f"{path} is not a XiaoQ database: {e}") from None
    finally:
        conn.close()
    if result != "ok":
        raise XiaoQError(f"{path} failed its integrity check: {result}")

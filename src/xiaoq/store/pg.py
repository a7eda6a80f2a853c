"""The PostgreSQL connection layer: the same small interface as :class:`xiaoq.store.db.Database`, so
the :class:`~xiaoq.store.conversations.Store` runs its SQL unchanged on either.

Why the same shape: the store's statements are plain SQL with ``?`` placeholders and rows read by
column name or position. Here a statement's ``?`` become psycopg's ``%s`` (a literal ``%`` is
doubled first) and rows are :class:`Row`, indexable both ways like ``sqlite3.Row``. What differs
between the two databases (full-text search, case-insensitive LIKE, an insertion order without
``rowid``) lives in :class:`~xiaoq.store.conversations.PgStore`, not in string rewriting here.

Connections: one writer connection behind a lock (write transactions are tiny, as with SQLite)
and one autocommit reader connection per thread. Several XiaoQ replicas each have their own; the
server serializes what must be serialized, and migrations take an advisory lock so replicas that
start together do not migrate twice.
"""

from __future__ import annotations

import functools
import re
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence

from xiaoq.errors import XiaoQError
from xiaoq.store.db import ConnectionSet


class Row(tuple):
    """A result row readable by position and by column name, like ``sqlite3.Row``."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> "Row":
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        return super().__getitem__(self._index[key] if isinstance(key, str) else key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Any:
    index = {col.name: i for i, col in enumerate(cursor.description or [])}
    return lambda values: Row(values, index)


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (literal ``%`` doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


def redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


class _Conn:
    """A psycopg connection that speaks the store's ``?`` dialect."""

    def __init__(self, raw: Any):
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(translate(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        cur = self.raw.cursor()
        cur.executemany(translate(sql), [tuple(r) for r in rows])
        return cur


class PgDatabase(ConnectionSet):
    """A PostgreSQL database given by URL; created tables and migrations on first use."""

    kind = "postgresql"

    def __init__(self, url: str, *, migrate: bool = True):
        try:
            import psycopg
        except ImportError:
            raise XiaoQError("PostgreSQL needs psycopg: pip install 'xiaoq[postgres]'") from None
        self._psycopg = psycopg
        self.url = url
        self.path = redact(url)  # what `xiaoq serve` prints as where conversations live
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[Any] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._writer = self._connect()
        if migrate:
            from xiaoq.store.pg_migrations import migrate as run_migrations

            with self._write_lock:
                run_migrations(self._writer)

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self.url, autocommit=True, row_factory=_row_factory, connect_timeout=10)
        except self._psycopg.Error as e:
            raise XiaoQError(f"cannot connect to PostgreSQL at {self.path}: {' '.join(str(e).split())}") from None

    # ---- writing -----------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[_Conn]:
        """One transaction on the writer connection; re-entrant within a thread; rolls back on error."""
        self._check_open()
        if getattr(self._local, "writing", False):
            yield _Conn(self._writer)
            return
        with self._write_lock:
            self._local.writing = True
            try:
                with self._writer.transaction():
                    yield _Conn(self._writer)
            finally:
                self._local.writing = False

    # ---- reading -----------------------------------------------------------------------------
    def reader(self) -> _Conn:
        """This thread's reader (the writer inside a write, to see its own changes)."""
        self._check_open()
        if getattr(self._local, "writing", False):
            return _Conn(self._writer)
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return _Conn(conn)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.reader().execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> Optional[Row]:
        return self.reader().execute(sql, params).fetchone()

    # ---- lifecycle ---------------------------------------------------------------------------
    def integrity_check(self) -> str:
        """PostgreSQL checks its own pages; "ok" when the database answers."""
        return "ok" if self.query_one("SELECT 1")[0] == 1 else "unreachable"


"""The SQLite connection layer: one lock-guarded writer connection plus per-thread readers.

Why this shape
--------------
SQLite allows one writer at a time; in WAL mode any number of readers run alongside it. So every
write goes through ONE connection guarded by a :class:`threading.Lock` (no ``database is locked``
fights between our own connections), and reads use a connection per thread (WAL lets them run in
parallel with the writer and with each other). This is datasette's idea without its queue thread:
a lock is enough because our writes are tiny (one row per second per streaming reply).

Sync API, the caller picks the thread
-------------------------------------
Every method here and in :mod:`xiaoq.store.conversations` is a plain blocking function that is safe
to call from any thread. Async code (the FastAPI server) calls them with
``await asyncio.to_thread(store.method, ...)``; :class:`~xiaoq.store.conversations.ReplyWriter`
has ``async`` helpers that do exactly that. Keeping the store synchronous keeps it testable without
an event loop and usable by the CLI and by test subprocesses as-is.

Durability: ``synchronous=FULL``
--------------------------------
In WAL mode a COMMIT appends to the ``-wal`` file. With ``synchronous=NORMAL`` the WAL is fsynced only
at checkpoints: a commit is in the OS page cache when ``COMMIT`` returns, so it survives the *process*
being SIGKILLed (the kernel still writes the page cache out) but NOT a power loss or kernel crash,
which can roll back the last transactions. With ``synchronous=FULL`` every commit fsyncs the WAL
before returning, so it also survives power loss. We choose FULL: the issue promises that nothing
committed is lost, our write rate is a few rows per second, and an fsync of a WAL page costs far
less than one decoded token.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, TypeVar, Union

from xiaoq.errors import StorageFull, StorageReadOnly

#: How long a connection waits for a lock held by another process before raising (ms).
BUSY_TIMEOUT_MS = 5000


def connect(path: Union[str, Path]) -> sqlite3.Connection:
    """Open one connection with XiaoQ's pragmas (WAL, foreign keys, busy timeout, synchronous=FULL).

    ``isolation_level=None`` puts the sqlite3 module in autocommit mode: transactions are exactly
    the explicit ``BEGIN``/``COMMIT`` of :meth:`Database.write`, never an implicit one left open.
    """
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


@contextmanager
def storage_errors() -> Iterator[None]:
    """A full disk or a read-only database as the domain errors the API maps to a clear 507 / 503
    (SQLite rolled the transaction back: nothing half-written); any other failure unchanged."""
    try:
        yield
    except sqlite3.OperationalError as e:
        name = getattr(e, "sqlite_errorname", "")
        text = str(e).lower()
        if name.startswith("SQLITE_FULL") or "database or disk is full" in text:
            raise StorageFull("The conversations database is full (no space left, or its size limit reached); nothing was saved.") from e
        if name.startswith("SQLITE_READONLY") or "readonly database" in text:
            raise StorageReadOnly("The conversations database is read-only right now; nothing was saved.") from e
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back, tolerating SQLite's own rollback after SQLITE_FULL ("no transaction is active")."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


_S = TypeVar("_S", bound="ConnectionSet")


class ConnectionSet:
    """The lifecycle both stores share: one writer connection, per-thread readers, closed once
    (SQLite's WAL is checkpointed by the last close; PostgreSQL just drops the sessions)."""

    _closed: bool
    _readers: list[Any]
    _readers_lock: threading.Lock
    _write_lock: threading.Lock
    _writer: Any

    def close(self) -> None:
        """Close every connection."""
        if self._closed:
            return
        self._closed = True
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("database is closed")

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Database(ConnectionSet):
    """A database file: a writer connection behind a lock, and one reader connection per thread.

    ``kind`` tells the SQLite store from the PostgreSQL one (:class:`xiaoq.store.pg.PgDatabase`).

    Creating it creates the parent directories and the file, and applies pending migrations
    (:func:`xiaoq.store.migrations.migrate`), so a fresh install needs no separate step.
    """

    kind = "sqlite"

    def __init__(self, path: Union[str, Path], *, migrate: bool = True):
        self.path = Path(path)
        #: ":memory:" (tests only): every connection would see its own empty database, so reads
        #: share the writer connection.
        self._memory = str(path) == ":memory:"
        if not self._memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._writer = connect(self.path)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        if migrate:
            from xiaoq.store.migrations import migrate as run_migrations

            with self._write_lock:
                run_migrations(self._writer)

    # ---- writing -----------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the writer connection: ``BEGIN IMMEDIATE`` … ``COMMIT``.

        ``IMMEDIATE`` takes the write lock up front, so a second process gets a busy-timeout wait
        instead of a deadlock-style ``SQLITE_BUSY`` halfway through. Any exception rolls back.
        Re-entrant within one thread: a nested ``write()`` joins the outer transaction.
        """
        self._check_open()
        if getattr(self._local, "writing", False):  # nested: join the outer transaction
            yield self._writer
            return
        with self._write_lock, storage_errors():
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            self._local.writing = True
            try:
                yield conn
            except BaseException:
                _rollback(conn)
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
            finally:
                self._local.writing = False

    # ---- reading -----------------------------------------------------------------------------
    def reader(self) -> sqlite3.Connection:
        """This thread's reader connection (WAL readers never block the writer or each other).

        A thread that holds the write lock reads through the writer instead, so it sees its own
        uncommitted changes.
        """
        self._check_open()
        if getattr(self._local, "writing", False) or self._memory:
            return self._writer
        conn: Optional[sqlite3.Connection] = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        """All rows of one read-only statement."""
        return self.reader().execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Any = ()) -> Optional[sqlite3.Row]:
        return self.reader().execute(sql, params).fetchone()

    # ---- lifecycle ---------------------------------------------------------------------------
    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` result: ``"ok"`` when the file is sound."""
        return str(self.query_one("PRAGMA integrity_check")[0])


"""Conversations and messages: the :class:`Store` repository and the streaming :class:`ReplyWriter`.

Every method returns plain dicts in the exact JSON shapes of ``docs/api.md`` (ISO-8601 UTC
timestamps with milliseconds and ``Z``), so the API returns them unchanged. The methods block:
async callers use ``await asyncio.to_thread(store.method, ...)`` (see :mod:`xiaoq.store.db`).
Unknown ids raise :class:`~xiaoq.errors.NotFound`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from xiaoq.errors import InvalidRequest, NotFound
from xiaoq.store.db import Database

STATUSES = ("complete", "incomplete", "error")
ROLES = ("system", "user", "assistant")
_UNSET: Any = object()

_CONV_COLUMNS = (
    "c.id, c.title, c.system_prompt, c.settings, c.kb, c.created_at, c.updated_at, "
    "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count"
)
_MSG_COLUMNS = (
    "id, conversation_id, role, content, status, prompt_tokens, completion_tokens, cached_tokens, "
    "timings, budget, error, finish_reason, citations, retrieval, created_at, updated_at"
)


def utc_now() -> str:
    """Now as ISO-8601 UTC with milliseconds and ``Z``: ``2026-11-29T01:02:03.123Z``."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def new_id() -> str:
    """A conversation id: 32 lowercase hex characters."""
    return uuid.uuid4().hex


def _json_or_none(text: Optional[str]) -> Any:
    return json.loads(text) if text else None


def _dump(value: Any) -> Optional[str]:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def conversation_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "system_prompt": row["system_prompt"],
        "settings": _json_or_none(row["settings"]) or {},
        "kb": row["kb"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "message_count": row["message_count"],
    }


def message_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "conversation_id": row["conversation_id"],
        "role": row["role"],
        "content": row["content"],
        "status": row["status"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "cached_tokens": row["cached_tokens"],
        "timings": _json_or_none(row["timings"]),
        "budget": _json_or_none(row["budget"]),
        "error": row["error"],
        "finish_reason": row["finish_reason"],
        "citations": _json_or_none(row["citations"]),
        "retrieval": _json_or_none(row["retrieval"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _like_escape(q: str) -> str:
    return q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def make_snippet(content: str, q: str, before: int = 30, after: int = 60) -> str:
    """Plain text around the first (case-insensitive) occurrence of ``q``, with ``…`` where cut.

    No markup: the UI renders model output as untrusted text and highlights ``q`` itself.
    """
    text = " ".join(content.split())  # newlines and runs of spaces read badly in a one-line result
    low, ql = text.lower(), q.lower()
    pos = low.find(ql) if len(low) == len(text) else text.find(q)
    if pos < 0:
        pos = 0
    start = max(0, pos - before)
    end = min(len(text), pos + len(q) + after)
    return ("…" if start > 0 else "") + text[start:end] + ("…" if end < len(text) else "")


class Store:
    """The conversations repository over a :class:`~xiaoq.store.db.Database` (SQLite).

    The SQL is plain and shared with :class:`PgStore`; the class attributes hold the few phrases
    the two databases spell differently.

    Owners: :meth:`for_owner` gives a view of the same database that sees, changes and creates
    only that user's conversations; every statement carries the condition, so a route cannot
    forget it, and another user's id is :class:`NotFound` like a made-up one. The store itself
    (``owner`` None) sees everything: the single-user modes and the command line. With
    ``tenanted`` set (accounts), the store itself refuses conversation calls: only views work.
    """

    #: The user whose conversations this view holds; None: every conversation.
    owner: Optional[int] = None
    #: Accounts are on: a call without an owner is a bug to refuse, not a reason to show all.
    tenanted: bool = False

    #: Newest first; ties (same millisecond) in insertion order.
    _LIST_ORDER = "c.updated_at DESC, c.rowid DESC"
    #: Case-insensitive pattern match (SQLite's LIKE already is, for ASCII).
    _LIKE = "LIKE"

    def __init__(self, db: Union[Database, str, Path, Any]):
        self.db = db if hasattr(db, "write") else Database(db)

    def close(self) -> None:
        self.db.close()

    def for_owner(self, user_id: int) -> "Store":
        """A view of this store holding only ``user_id``'s conversations (shares the database)."""
        view = copy.copy(self)
        view.owner = int(user_id)
        return view

    def _scope(self, column: str = "c.owner_id") -> tuple[str, tuple[Any, ...]]:
        """`` AND <column> = ?`` and its parameter for a view; nothing for the whole store."""
        if self.owner is None:
            if self.tenanted:
                raise PermissionError("conversations are per user here: use store.for_owner(user_id)")
            return "", ()
        return f" AND {column} = ?", (self.owner,)

    def _owned_messages(self, column: str = "conversation_id") -> tuple[str, tuple[Any, ...]]:
        """The condition that a message row belongs to one of this view's conversations."""
        cond, params = self._scope()
        if not cond:
            return "", ()
        return f" AND {column} IN (SELECT c.id FROM conversations c WHERE 1 = 1{cond})", params

    # ---- conversations -----------------------------------------------------------------------
    def create_conversation(
        self, title: str = "", system_prompt: Optional[str] = None, settings: Optional[dict[str, Any]] = None, kb: Optional[str] = None
    ) -> dict[str, Any]:
        """Create a conversation and return it (``message_count`` 0); ``kb`` is the knowledge base
        it answers from (None: none)."""
        cid, now = new_id(), utc_now()
        self._scope()
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO conversations (id, title, system_prompt, settings, kb, created_at, updated_at, owner_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (cid, title or "", system_prompt, _dump(settings or {}), kb, now, now, self.owner),
            )
        return self.get_conversation(cid)

    def get_conversation(self, conversation_id: str, *, messages: bool = False) -> dict[str, Any]:
        """The conversation object; with ``messages=True`` also ``"messages": [message…]`` in order."""
        cond, own = self._scope()
        row = self.db.query_one(f"SELECT {_CONV_COLUMNS} FROM conversations c WHERE c.id = ?{cond}", (conversation_id, *own))
        if row is None:
            raise NotFound(f"No conversation with id {conversation_id!r}")
        conv = conversation_dict(row)
        if messages:
            conv["messages"] = self.get_messages(conversation_id)
        return conv

    def list_conversations(self, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Conversations, most recently updated first."""
        cond, own = self._scope()
        rows = self.db.query(
            f"SELECT {_CONV_COLUMNS} FROM conversations c WHERE 1 = 1{cond} ORDER BY {self._LIST_ORDER} LIMIT ? OFFSET ?",
            (*own, max(0, int(limit)), max(0, int(offset))),
        )
        return [conversation_dict(r) for r in rows]

    def update_conversation(
        self,
        conversation_id: str,
        *,
        title: Optional[str] = _UNSET,
        system_prompt: Optional[str] = _UNSET,
        settings: Optional[dict[str, Any]] = _UNSET,
        kb: Optional[str] = _UNSET,
    ) -> dict[str, Any]:
        """Change the fields given (``None`` clears ``system_prompt`` and ``kb``); bumps ``updated_at``."""
        sets: list[str] = []
        params: list[Any] = []
        if title is not _UNSET:
            sets.append("title = ?")
            params.append(title or "")
        if system_prompt is not _UNSET:
            sets.append("system_prompt = ?")
            params.append(system_prompt)
        if settings is not _UNSET:
            sets.append("settings = ?")
            params.append(_dump(settings or {}))
        if kb is not _UNSET:
            sets.append("kb = ?")
            params.append(kb or None)
        sets.append("updated_at = ?")
        params.append(utc_now())
        cond, own = self._scope("owner_id")
        with self.db.write() as conn:
            cur = conn.execute(f"UPDATE conversations SET {', '.join(sets)} WHERE id = ?{cond}", (*params, conversation_id, *own))
            if cur.rowcount == 0:
                raise NotFound(f"No conversation with id {conversation_id!r}")
        return self.get_conversation(conversation_id)

    def delete_conversation(self, conversation_id: str) -> None:
        """Delete it and (ON DELETE CASCADE) all its messages."""
        cond, own = self._scope("owner_id")
        with self.db.write() as conn:
            if conn.execute(f"DELETE FROM conversations WHERE id = ?{cond}", (conversation_id, *own)).rowcount == 0:
                raise NotFound(f"No conversation with id {conversation_id!r}")

    # ---- messages ----------------------------------------------------------------------------
    def add_message(
        self,
        conversation_id: str,
        role: str,
        content: str = "",
        status: str = "complete",
        **fields: Any,
    ) -> dict[str, Any]:
        """Append a message (committed when this returns) and bump the conversation's ``updated_at``.

        ``fields`` may set ``prompt_tokens``, ``completion_tokens``, ``cached_tokens``, ``timings``,
        ``budget`` and ``error``. A reply about to stream is added with ``status="incomplete"``.
        """
        if role not in ROLES:
            raise InvalidRequest(f"role must be one of {ROLES}, not {role!r}")
        _check_status(status)
        cols, vals = _message_fields(fields)
        now = utc_now()
        cond, own = self._scope("owner_id")
        with self.db.write() as conn:
            if conn.execute(f"SELECT 1 FROM conversations WHERE id = ?{cond}", (conversation_id, *own)).fetchone() is None:
                raise NotFound(f"No conversation with id {conversation_id!r}")
            names = ["conversation_id", "role", "content", "status", "created_at", "updated_at", *cols]
            cur = conn.execute(
                f"INSERT INTO messages ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) RETURNING id",
                (conversation_id, role, content, status, now, now, *vals),
            )
            mid = int(cur.fetchone()[0])
            conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
        return self.get_message(mid)

    def get_message(self, message_id: int) -> dict[str, Any]:
        cond, own = self._owned_messages()
        row = self.db.query_one(f"SELECT {_MSG_COLUMNS} FROM messages WHERE id = ?{cond}", (message_id, *own))
        if row is None:
            raise NotFound(f"No message with id {message_id}")
        return message_dict(row)

    def update_message(
        self,
        message_id: int,
        *,
        content: Optional[str] = None,
        status: Optional[str] = None,
        touch: bool = True,
        replaces: Sequence[int] = (),
        **fields: Any,
    ) -> dict[str, Any]:
        """Change a message's content, status, token counts, timings, budget, error, finish reason
        or citations.

        ``touch`` also bumps the conversation's ``updated_at`` (a reply's periodic saves do not).
        ``replaces`` names messages this one supersedes (a regenerated reply, an edited question):
        they are deleted in the same transaction, so the conversation never shows neither.
        """
        sets: list[str] = []
        params: list[Any] = []
        if content is not None:
            sets.append("content = ?")
            params.append(content)
        if status is not None:
            _check_status(status)
            sets.append("status = ?")
            params.append(status)
        cols, vals = _message_fields(fields)
        sets += [f"{c} = ?" for c in cols]
        params += vals
        now = utc_now()
        sets.append("updated_at = ?")
        params.append(now)
        cond, own = self._owned_messages()
        with self.db.write() as conn:
            row = conn.execute(f"SELECT conversation_id FROM messages WHERE id = ?{cond}", (message_id, *own)).fetchone()
            if row is None:
                raise NotFound(f"No message with id {message_id}")
            conn.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id = ?", (*params, message_id))
            self._delete(conn, row[0], replaces)
            if touch:
                conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, row[0]))
        return self.get_message(message_id)

    def restore_message(self, message: dict[str, Any]) -> None:
        """Write ``message`` (a dict from :meth:`get_message`) back over its row, ``updated_at``
        included: a continued reply that did not complete leaves no trace of the attempt."""
        fields = {k: message[k] for k in _MESSAGE_FIELDS}
        cols, vals = _message_fields(fields)
        sets = ["content = ?", "status = ?", "updated_at = ?", *(f"{c} = ?" for c in cols)]
        params = [message["content"], message["status"], message["updated_at"], *vals]
        cond, own = self._owned_messages()
        with self.db.write() as conn:
            conn.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id = ?{cond}", (*params, message["id"], *own))

    def get_messages(self, conversation_id: str) -> list[dict[str, Any]]:
        """All messages of a conversation in order (no NotFound: an unknown id gives [])."""
        cond, own = self._owned_messages()
        rows = self.db.query(f"SELECT {_MSG_COLUMNS} FROM messages WHERE conversation_id = ?{cond} ORDER BY id", (conversation_id, *own))
        return [message_dict(r) for r in rows]

    def delete_messages(self, conversation_id: str, message_ids: Sequence[int]) -> None:
        """Delete these messages of the conversation (a reply that did not complete, the question
        it answered when that was new). A stored summary covering any of them is dropped too: it
        summarizes text that no longer exists (the budget makes a new one when needed)."""
        cond, own = self._scope("owner_id")
        with self.db.write() as conn:
            if conn.execute(f"SELECT 1 FROM conversations WHERE id = ?{cond}", (conversation_id, *own)).fetchone() is None:
                return
            self._delete(conn, conversation_id, message_ids)

    @classmethod
    def _delete(cls, conn: sqlite3.Connection, conversation_id: str, message_ids: Sequence[int]) -> None:
        if not message_ids:
            return
        marks = ", ".join("?" * len(message_ids))
        conn.execute(f"DELETE FROM messages WHERE conversation_id = ? AND id IN ({marks})", (conversation_id, *message_ids))
        cls._forget_summary_from(conn, conversation_id, min(message_ids))

    # ---- token counts of contents (the context budget's cache) -------------------------------
    def token_counts(self, conversation_id: str, key: str) -> dict[int, int]:
        """``{message id: token count of its content}`` for the messages counted under ``key``."""
        cond, own = self._owned_messages()
        rows = self.db.query(
            f"SELECT id, content_tokens FROM messages WHERE conversation_id = ? AND content_tokens_key = ? AND content_tokens IS NOT NULL{cond}",
            (conversation_id, key, *own),
        )
        return {int(r[0]): int(r[1]) for r in rows}

    def set_token_counts(self, key: str, counts: Iterable[tuple[int, str, int]]) -> None:
        """Record ``(message id, the content counted, its token count)`` made with tokenizer
        ``key``. A message whose content changed since (or that is gone) is left alone."""
        cond, own = self._owned_messages()
        rows = [(n, key, mid, content, *own) for mid, content, n in counts]
        if not rows:
            return
        with self.db.write() as conn:
            conn.executemany(f"UPDATE messages SET content_tokens = ?, content_tokens_key = ? WHERE id = ? AND content = ?{cond}", rows)

    # ---- summary of earlier turns ------------------------------------------------------------
    def set_summary(self, conversation_id: str, summary: Optional[str], upto_message_id: Optional[int], tokens: Optional[int]) -> None:
        """Store the summary of the conversation up to and including ``upto_message_id``
        (``None`` everywhere clears it). Does not bump ``updated_at``: it is bookkeeping."""
        cond, own = self._scope("owner_id")
        with self.db.write() as conn:
            cur = conn.execute(
                f"UPDATE conversations SET summary = ?, summary_upto_message_id = ?, summary_tokens = ? WHERE id = ?{cond}",
                (summary, upto_message_id, tokens, conversation_id, *own),
            )
            if cur.rowcount == 0:
                raise NotFound(f"No conversation with id {conversation_id!r}")

    def get_summary(self, conversation_id: str) -> Optional[dict[str, Any]]:
        """``{"summary", "upto_message_id", "tokens"}`` or None when there is none."""
        cond, own = self._scope("owner_id")
        row = self.db.query_one(f"SELECT summary, summary_upto_message_id, summary_tokens FROM conversations WHERE id = ?{cond}", (conversation_id, *own))
        if row is None:
            raise NotFound(f"No conversation with id {conversation_id!r}")
        if row["summary"] is None:
            return None
        return {"summary": row["summary"], "upto_message_id": row["summary_upto_message_id"], "tokens": row["summary_tokens"]}

    @staticmethod
    def _forget_summary_from(conn: sqlite3.Connection, conversation_id: str, message_id: int) -> None:
        conn.execute(
            "UPDATE conversations SET summary = NULL, summary_upto_message_id = NULL, summary_tokens = NULL "
            "WHERE id = ? AND summary_upto_message_id >= ?",
            (conversation_id, message_id),
        )

    # ---- search ------------------------------------------------------------------------------
    def search(self, q: str, limit: int = 20) -> list[dict[str, Any]]:
        """Messages containing ``q``, newest first: ``{"conversation_id", "conversation_title",
        "message_id", "role", "snippet", "created_at"}``.

        Three characters or more use the FTS5 trigram index (any language, case-insensitive);
        shorter queries such as a two-character Chinese name cannot form a trigram, so they fall
        back to a LIKE scan.
        """
        q = q.strip()
        if not q:
            return []
        limit = max(1, min(int(limit), 200))
        base = (
            "SELECT m.id, m.conversation_id, m.role, m.content, m.created_at, c.title "
            "FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        )
        rows = self._search_rows(base, q, limit, self._scope())
        return [
            {
                "conversation_id": r["conversation_id"],
                "conversation_title": r["title"],
                "message_id": r["id"],
                "role": r["role"],
                "snippet": make_snippet(r["content"], q),
                "created_at": r["created_at"],
            }
            for r in rows
        ]

    def _search_rows(self, base: str, q: str, limit: int, scope: tuple[str, tuple[Any, ...]]) -> list[Any]:
        cond, own = scope
        if len(q) >= 3:
            phrase = '"' + q.replace('"', '""') + '"'
            return self.db.query(
                base + f"WHERE m.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?){cond} ORDER BY m.id DESC LIMIT ?",
                (phrase, *own, limit),
            )
        return self.db.query(base + f"WHERE m.content LIKE ? ESCAPE '\\'{cond} ORDER BY m.id DESC LIMIT ?", (f"%{_like_escape(q)}%", *own, limit))

    def suggestions(self, q: str, limit: int = 8) -> list[str]:
        """Past user questions that start with ``q`` (first) or contain it, most recent first,
        without repeats."""
        q = q.strip()
        pattern = f"%{_like_escape(q)}%"
        prefix = f"{_like_escape(q)}%"
        like = self._LIKE
        cond, own = self._owned_messages()
        rows = self.db.query(
            f"SELECT content, max(id) AS last_id FROM messages WHERE role = 'user' AND content {like} ? ESCAPE '\\'{cond} "
            f"GROUP BY content ORDER BY (content {like} ? ESCAPE '\\') DESC, last_id DESC LIMIT ?",
            (pattern, *own, prefix, max(1, min(int(limit), 50))),
        )
        return [r["content"] for r in rows]

    # ---- export ------------------------------------------------------------------------------
    def export_json(self, conversation_id: str) -> dict[str, Any]:
        """The conversation with its messages and stored summary (a JSON-ready dict)."""
        conv = self.get_conversation(conversation_id, messages=True)
        conv["summary"] = self.get_summary(conversation_id)
        return conv

    def export_markdown(self, conversation_id: str) -> str:
        """A readable Markdown transcript (code fences in replies are kept as they are)."""
        conv = self.get_conversation(conversation_id, messages=True)
        out = [f"# {conv['title'] or 'Untitled conversation'}", "", f"_Created {conv['created_at']} · updated {conv['updated_at']}_", ""]
        if conv["system_prompt"]:
            out += ["> **System:** " + conv["system_prompt"].replace("\n", "\n> "), ""]
        names = {"user": "User", "assistant": "XiaoQ", "system": "System"}
        for m in conv["messages"]:
            note = "" if m["status"] == "complete" else f" _({m['status']})_"
            out += [f"## {names.get(m['role'], m['role'])}{note}", "", m["content"], ""]
            if m["error"]:
                out += [f"> Error: {m['error']}", ""]
        return "\n".join(out).rstrip() + "\n"


class PgStore(Store):
    """The same repository over PostgreSQL (:class:`~xiaoq.store.pg.PgDatabase`)."""

    _LIST_ORDER = "c.updated_at DESC, c.created_at DESC, c.id DESC"
    _LIKE = "ILIKE"

    def _search_rows(self, base: str, q: str, limit: int, scope: tuple[str, tuple[Any, ...]]) -> list[Any]:
        """ILIKE over the pg_trgm index: from three characters on the index finds the rows;
        shorter queries (two-character Chinese words) scan, as SQLite's LIKE fallback does."""
        cond, own = scope
        return self.db.query(base + f"WHERE m.content ILIKE ? ESCAPE '\\'{cond} ORDER BY m.id DESC LIMIT ?", (f"%{_like_escape(q)}%", *own, limit))


def open_store(where: Union[str, Path]) -> Store:
    """A store on a SQLite file path or a ``postgresql://`` URL."""
    text = str(where)
    if text.startswith(("postgresql://", "postgres://")):
        from xiaoq.store.pg import PgDatabase

        return PgStore(PgDatabase(text))
    return Store(Path(text))


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise InvalidRequest(f"status must be one of {STATUSES}, not {status!r}")


_MESSAGE_FIELDS = {"prompt_tokens", "completion_tokens", "cached_tokens", "timings", "budget", "error", "finish_reason", "citations", "retrieval"}
_JSON_FIELDS = {"timings", "budget", "citations", "retrieval"}


def _message_fields(fields: dict[str, Any]) -> tuple[list[str], list[Any]]:
    unknown = set(fields) - _MESSAGE_FIELDS
    if unknown:
        raise TypeError(f"unknown message fields: {sorted(unknown)}")
    cols, vals = [], []
    for name, value in fields.items():
        cols.append(name)
        vals.append(_dump(value) if name in _JSON_FIELDS else value)
    return cols, vals


class ReplyWriter:
    """Saves a streaming reply: text kept in memory, the ``incomplete`` row rewritten at most once
    per ``interval`` seconds, the final row written by :meth:`finish`.

    Time-based rather than per-token so the write rate stays ~1/s whatever the decode speed, and
    a crash loses at most the text of the last ``interval``. The save happens when a piece arrives
    and the interval has passed; if generation may stall (a long prefill of another slot, say), a
    ticker calling :meth:`save_if_due` every ``interval`` also saves the text streamed just before
    the stall. ``clock`` is injectable for tests.

    Usage from the conversation service (async)::

        reply = await asyncio.to_thread(store.add_message, cid, "assistant", "", "incomplete")
        w = ReplyWriter(store, reply["id"])
        async for piece in generation:
            await w.aappend(piece)
        await w.afinish("complete", completion_tokens=..., timings=..., budget=...)

    and on stop / disconnect / shutdown ``await w.afinish("incomplete")`` (the partial text stays).
    """

    def __init__(self, store: Store, message_id: int, *, interval: float = 1.0, clock: Callable[[], float] = time.monotonic, text: str = ""):
        self.store = store
        self.message_id = message_id
        self.interval = interval
        self.clock = clock
        self._parts: list[str] = [text] if text else []
        self._saved_len = len(text)
        self._len = len(text)
        self._last_save = clock()
        self._lock = threading.Lock()
        self.saves = 0
        self.finished = False

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def append(self, piece: str) -> bool:
        """Add streamed text; save the row when due. Returns True when it saved (blocking call)."""
        if self._add(piece):
            self.save()
            return True
        return False

    async def aappend(self, piece: str) -> bool:
        """:meth:`append` for the event loop: the save (when due) runs in a worker thread."""
        if self._add(piece):
            await asyncio.to_thread(self.save)
            return True
        return False

    def cut(self, length: int) -> None:
        """Keep only the first ``length`` characters (the loop guard dropped a repeated tail that
        had already been streamed); the final write stores the shorter text."""
        text = self.text[:length]
        self._parts = [text]
        self._len = len(text)

    def _add(self, piece: str) -> bool:
        if self.finished:
            raise RuntimeError("reply already finished")
        if piece:
            self._parts.append(piece)
            self._len += len(piece)
        return self.due

    @property
    def due(self) -> bool:
        """Unsaved text exists and the last save is at least ``interval`` old."""
        return not self.finished and self._len != self._saved_len and self.clock() - self._last_save >= self.interval

    def save_if_due(self) -> bool:
        """For a periodic ticker: saves when :attr:`due`, so text streamed just before a stall is
        not left unsaved for longer than the interval. Returns True when it saved."""
        if self.due:
            self.save()
            return True
        return False

    async def asave_if_due(self) -> bool:
        return await asyncio.to_thread(self.save_if_due) if self.due else False

    def save(self) -> None:
        """Write the text so far with status ``incomplete`` now (nothing once finished: a late
        periodic save from another thread never overwrites the final row)."""
        with self._lock:
            if self.finished:
                return
            text = self.text
            self._parts = [text]
            self.store.update_message(self.message_id, content=text, status="incomplete", touch=False)
            self._saved_len = len(text)
            self._last_save = self.clock()
            self.saves += 1

    def finish(self, status: str = "complete", replaces: Sequence[int] = (), **fields: Any) -> dict[str, Any]:
        """Write the final row: all text, ``status`` and ``fields`` (tokens, timings, budget, error,
        finish reason), deleting the messages it ``replaces`` in the same transaction."""
        _check_status(status)
        with self._lock:
            self.finished = True
            row = self.store.update_message(self.message_id, content=self.text, status=status, replaces=replaces, **fields)
            self._saved_len = self._len
            return row

    def discard(self, conversation_id: str, also: Sequence[int] = ()) -> None:
        """Delete the reply (and the messages ``also`` named) instead of finishing it: a replacement
        that did not complete leaves the conversation as it was."""
        with self._lock:
            self.finished = True
            self.store.delete_messages(conversation_id, [self.message_id, *also])

    def revert(self, original: dict[str, Any]) -> None:
        """Put the row back as ``original`` instead of finishing it: a continue that did not
        complete leaves the reply as it was before the attempt (periodic saves included)."""
        with self._lock:
            self.finished = True
            self.store.restore_message(original)

    async def afinish(self, status: str = "complete", **fields: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.finish, status, **fields)


def iter_turns(messages: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], Optional[dict[str, Any]]]]:
    """Group stored messages into (user, assistant-or-None) turns, in order (system rows skipped)."""
    turns: list[tuple[dict[str, Any], Optional[dict[str, Any]]]] = []
    for m in messages:
        if m["role"] == "user":
            turns.append((m, None))
        elif m["role"] == "assistant" and turns and turns[-1][1] is None:
            turns[-1] = (turns[-1][0], m)
    return turns

"""Knowledge bases, documents and chunks: the :class:`KnowledgeStore` repository.

Search lives here too, behind plain methods (``lexical_search``, ``chunk_vectors``), so every
query goes through one place and the PostgreSQL store (:mod:`xiaoq.store.pg_kb`) implements the
two that differ its own way; callers pass already segmented terms (:mod:`xiaoq.kb.lexical`).
Every method blocks; async callers use ``asyncio.to_thread``; :func:`knowledge_store` picks the
class for a database.
"""

from __future__ import annotations

import copy
import sqlite3
from typing import Any, Iterable, Optional, Sequence

from xiaoq.auth.types import User
from xiaoq.errors import Conflict, Forbidden, InvalidRequest, NotFound
from xiaoq.store.conversations import utc_now
from xiaoq.store.db import Database

_KB_COLUMNS = (
    "k.id, k.name, k.conversation_id, k.description, k.created_at, k.updated_at, k.owner_id, k.visibility, k.group_name, "
    "(SELECT u.username FROM users u WHERE u.id = k.owner_id) AS owner, "
    "(SELECT count(*) FROM kb_documents d WHERE d.kb_id = k.id) AS document_count, "
    "(SELECT count(*) FROM kb_chunks c WHERE c.kb_id = k.id) AS chunk_count"
)
_DOC_COLUMNS = "id, kb_id, source, title, content_hash, bytes, pages, status, error, chunk_count, embedder, created_at, updated_at"
_CHUNK_COLUMNS = (
    "c.id, c.document_id, c.kb_id, c.position, c.heading, c.anchor, c.page, c.text, c.tokens, "
    "d.source, d.title, k.name AS kb"
)
_CHUNK_JOIN = "kb_chunks c JOIN kb_documents d ON d.id = c.document_id JOIN knowledge_bases k ON k.id = c.kb_id"

#: One chunk row to insert: position, heading, anchor, page, text, tokens, vector, words, grams.
ChunkRow = tuple[int, str, Optional[str], Optional[int], str, int, Optional[bytes], str, str]


def _kb_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {k: row[k] for k in row.keys()}


def _doc_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {k: row[k] for k in row.keys()}


def chunk_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {k: row[k] for k in row.keys()}


def _fts_any(terms: Iterable[str]) -> str:
    """Terms OR-ed, each a quoted FTS5 string (so no term is read as FTS5 syntax)."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in dict.fromkeys(t for t in terms if t))


def fts_match(words: Sequence[str], grams: Sequence[str]) -> str:
    """The FTS5 MATCH expression for passages holding any of ``words`` (the words column) or
    ``grams`` (the bigrams column); '' when there is nothing to search for."""
    parts = [f"{column} : ({q})" for column, q in (("words", _fts_any(words)), ("grams", _fts_any(grams))) if q]
    return " OR ".join(parts)


def knowledge_store(db: Any) -> "KnowledgeStore":
    """The knowledge-base repository for a database: SQLite's, or PostgreSQL's for a
    :class:`~xiaoq.store.pg.PgDatabase`."""
    if getattr(db, "kind", "sqlite") == "postgresql":
        from xiaoq.store.pg_kb import PgKnowledgeStore

        return PgKnowledgeStore(db)
    return KnowledgeStore(db)


def _marks(ids: Sequence[Any]) -> str:
    return ",".join("?" * len(ids))


VISIBILITIES = ("everyone", "group", "private")


class KnowledgeStore:
    """Knowledge bases over a :class:`~xiaoq.store.db.Database` (the conversations' file).

    Who may see what: :meth:`for_viewer` gives a view for one user that finds, lists, searches
    and cites only the knowledge bases that user may use: their own, those shared with everyone,
    those shared with one of their groups (an admin: with any group; a private one stays its
    owner's, whoever asks). A conversation's own
    knowledge base (its attached files) is the conversation owner's alone. Changing one (documents, sharing,
    deleting) is for its owner or an admin. The store itself (no viewer) sees everything: the
    single-user modes and ``xiaoq kb``; with ``tenanted`` set it refuses to look without a viewer.
    """

    viewer: Optional[User] = None
    tenanted: bool = False

    def __init__(self, db: Database):
        self.db = db

    def for_viewer(self, user: User) -> "KnowledgeStore":
        view = copy.copy(self)
        view.viewer = user
        return view

    def _visible(self, alias: str = "k") -> tuple[str, tuple[Any, ...]]:
        """`` AND <the viewer may use knowledge base alias>`` with its parameters."""
        if self.viewer is None:
            if self.tenanted:
                raise PermissionError("knowledge bases are per user here: use store.for_viewer(user)")
            return "", ()
        u = self.viewer
        return (
            f" AND (({alias}.conversation_id IS NULL AND ({alias}.owner_id = ? OR {alias}.visibility = 'everyone'"
            f" OR ({alias}.visibility = 'group' AND (? = 1 OR {alias}.group_name IN (SELECT g.group_name FROM user_groups g WHERE g.user_id = ?)))))"
            f" OR {alias}.conversation_id IN (SELECT cv.id FROM conversations cv WHERE cv.owner_id = ?))",
            (u.id, int(u.is_admin), u.id, u.id),
        )

    def _in_visible(self, column: str) -> tuple[str, tuple[Any, ...]]:
        cond, params = self._visible()
        return (f" AND {column} IN (SELECT k.id FROM knowledge_bases k WHERE 1 = 1{cond})", params) if cond else ("", ())

    def visible_ids(self, kb_ids: Sequence[int]) -> list[int]:
        """Those of ``kb_ids`` the viewer may use (all for the store itself), in the given order."""
        cond, params = self._visible()
        if not cond or not kb_ids:
            return list(kb_ids)
        rows = self.db.query(f"SELECT k.id FROM knowledge_bases k WHERE k.id IN ({_marks(kb_ids)}){cond}", [*kb_ids, *params])
        seen = {int(r[0]) for r in rows}
        return [i for i in kb_ids if i in seen]

    def writable(self, name: str) -> dict[str, Any]:
        """The knowledge base ``name`` when the viewer may change it: NotFound when they cannot
        see it, Forbidden when they may only use it."""
        kb = self.get_kb(name)
        u = self.viewer
        if u is None or u.is_admin or kb["owner_id"] == u.id or kb["conversation_id"] is not None:  # files: seen by their conversation's owner only
            return kb
        raise Forbidden(f"The knowledge base {name!r} is shared with you to use, not to change.", code="kb_read_only")

    def set_owner(self, name: str, user_id: int) -> dict[str, Any]:
        """Give the knowledge base to another user (owner or admin only)."""
        kb = self.writable(name)
        with self.db.write() as conn:
            conn.execute("UPDATE knowledge_bases SET owner_id = ?, updated_at = ? WHERE id = ?", (user_id, utc_now(), kb["id"]))
        return self.get_kb(name)

    def share(self, name: str, visibility: str, group: Optional[str] = None) -> dict[str, Any]:
        """Who else may use it: ``everyone``, one ``group``, or nobody (``private``)."""
        if visibility not in VISIBILITIES or (visibility == "group") != bool(group):
            raise InvalidRequest("visibility is everyone, private, or group with a group name", code="invalid_visibility")
        kb = self.writable(name)
        with self.db.write() as conn:
            conn.execute("UPDATE knowledge_bases SET visibility = ?, group_name = ?, updated_at = ? WHERE id = ?", (visibility, group, utc_now(), kb["id"]))
        return self.get_kb(name)

    # ---- knowledge bases --------------------------------------------------------------------
    def get_kb(self, name: str) -> dict[str, Any]:
        cond, params = self._visible()
        row = self.db.query_one(f"SELECT {_KB_COLUMNS} FROM knowledge_bases k WHERE k.name = ?{cond}", (name, *params))
        if row is None:
            raise NotFound(f"No knowledge base named {name!r}", code="kb_not_found")
        return _kb_dict(row)

    def find_kb(self, name: str) -> Optional[dict[str, Any]]:
        cond, params = self._visible()
        row = self.db.query_one(f"SELECT {_KB_COLUMNS} FROM knowledge_bases k WHERE k.name = ?{cond}", (name, *params))
        return _kb_dict(row) if row else None

    def ensure_kb(self, name: str, conversation_id: Optional[str] = None, description: str = "") -> dict[str, Any]:
        """The knowledge base ``name``, created when missing."""
        now = utc_now()
        owner, visibility = (self.viewer.id, "private") if self.viewer is not None else (None, "everyone")
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO knowledge_bases (name, conversation_id, description, created_at, updated_at, owner_id, visibility) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (name, conversation_id, description, now, now, owner, visibility),
            )
        try:
            return self.get_kb(name)
        except NotFound:  # someone else's private one: the name is taken, not free
            raise Conflict(f"The name {name!r} is taken by a knowledge base you cannot use; choose another.", code="kb_exists") from None

    def list_kbs(self) -> list[dict[str, Any]]:
        """Named knowledge bases (conversation scopes are not listed), by name."""
        cond, params = self._visible()
        rows = self.db.query(f"SELECT {_KB_COLUMNS} FROM knowledge_bases k WHERE k.conversation_id IS NULL{cond} ORDER BY k.name", params)
        return [_kb_dict(r) for r in rows]

    def delete_kb(self, name: str) -> None:
        """Delete it with its documents and chunks (cascade; the FTS rows go by trigger)."""
        kb = self.writable(name)
        with self.db.write() as conn:
            if conn.execute("DELETE FROM knowledge_bases WHERE id = ?", (kb["id"],)).rowcount == 0:
                raise NotFound(f"No knowledge base named {name!r}", code="kb_not_found")

    # ---- documents ---------------------------------------------------------------------------
    def find_document(self, kb_id: int, source: str) -> Optional[dict[str, Any]]:
        row = self.db.query_one(f"SELECT {_DOC_COLUMNS} FROM kb_documents WHERE kb_id = ? AND source = ?", (kb_id, source))
        return _doc_dict(row) if row else None

    def get_document(self, document_id: int) -> dict[str, Any]:
        cond, params = self._in_visible("kb_id")
        row = self.db.query_one(f"SELECT {_DOC_COLUMNS} FROM kb_documents WHERE id = ?{cond}", (document_id, *params))
        if row is None:
            raise NotFound(f"No document with id {document_id}", code="document_not_found")
        return _doc_dict(row)

    def list_documents(self, kb_id: int) -> list[dict[str, Any]]:
        cond, params = self._in_visible("kb_id")
        rows = self.db.query(f"SELECT {_DOC_COLUMNS} FROM kb_documents WHERE kb_id = ?{cond} ORDER BY source", (kb_id, *params))
        return [_doc_dict(r) for r in rows]

    def begin_document(self, kb_id: int, source: str, *, content_hash: str, size: int, title: str = "", pages: Optional[int] = None) -> int:
        """Replace any document of this source with a new one in ``ingesting`` state; its id."""
        now = utc_now()
        with self.db.write() as conn:
            conn.execute("DELETE FROM kb_documents WHERE kb_id = ? AND source = ?", (kb_id, source))
            row = conn.execute(
                "INSERT INTO kb_documents (kb_id, source, title, content_hash, bytes, pages, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (kb_id, source, title, content_hash, size, pages, now, now),
            ).fetchone()
            conn.execute("UPDATE knowledge_bases SET updated_at = ? WHERE id = ?", (now, kb_id))
        return int(row[0])

    def add_chunks(self, document_id: int, kb_id: int, rows: Iterable[ChunkRow]) -> None:
        """Insert one batch of chunks and their index rows in one short transaction."""
        with self.db.write() as conn:
            for pos, heading, anchor, page, text, tokens, vector, words, grams in rows:
                cur = conn.execute(
                    "INSERT INTO kb_chunks (document_id, kb_id, position, heading, anchor, page, text, tokens, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (document_id, kb_id, pos, heading, anchor, page, text, tokens, vector),
                )
                conn.execute("INSERT INTO kb_chunks_fts (rowid, words, grams) VALUES (?, ?, ?)", (cur.lastrowid, words, grams))

    def finish_document(self, document_id: int, *, status: str, embedder: Optional[str] = None, error: Optional[str] = None) -> None:
        with self.db.write() as conn:
            conn.execute(
                "UPDATE kb_documents SET status = ?, error = ?, embedder = ?, updated_at = ?, "
                "chunk_count = (SELECT count(*) FROM kb_chunks WHERE document_id = ?) WHERE id = ?",
                (status, error, embedder, utc_now(), document_id, document_id),
            )

    def delete_document(self, document_id: int, kb_id: Optional[int] = None) -> None:
        sql, params = "DELETE FROM kb_documents WHERE id = ?", [document_id]
        if kb_id is not None:
            sql, params = sql + " AND kb_id = ?", [document_id, kb_id]
        with self.db.write() as conn:
            if conn.execute(sql, params).rowcount == 0:
                raise NotFound(f"No document with id {document_id}", code="document_not_found")

    def delete_sources(self, kb_id: int, sources: Iterable[str]) -> int:
        """Delete the documents with these sources; how many there were."""
        n = 0
        with self.db.write() as conn:
            for source in sources:
                n += conn.execute("DELETE FROM kb_documents WHERE kb_id = ? AND source = ?", (kb_id, source)).rowcount
        return n

    def sources_under(self, kb_id: int, prefix: str) -> list[str]:
        """Sources of documents inside the folder ``prefix`` (a path ending in the separator)."""
        rows = self.db.query("SELECT source FROM kb_documents WHERE kb_id = ? AND substr(source, 1, ?) = ?", (kb_id, len(prefix), prefix))
        return [r[0] for r in rows]

    # ---- chunks and search -------------------------------------------------------------------
    def get_chunks(self, chunk_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        if not chunk_ids:
            return {}
        cond, params = self._visible()
        rows = self.db.query(f"SELECT {_CHUNK_COLUMNS} FROM {_CHUNK_JOIN} WHERE c.id IN ({_marks(chunk_ids)}){cond}", [*chunk_ids, *params])
        return {r["id"]: chunk_dict(r) for r in rows}

    def get_chunk(self, chunk_id: int) -> dict[str, Any]:
        found = self.get_chunks([chunk_id]).get(chunk_id)
        if found is None:
            raise NotFound(f"No passage with id {chunk_id}", code="chunk_not_found")
        return found

    def document_chunks(self, document_id: int) -> list[dict[str, Any]]:
        """A document's chunks in reading order (summaries read them all)."""
        cond, params = self._visible()
        rows = self.db.query(f"SELECT {_CHUNK_COLUMNS} FROM {_CHUNK_JOIN} WHERE c.document_id = ?{cond} ORDER BY c.position", (document_id, *params))
        return [chunk_dict(r) for r in rows]

    def lexical_search(self, kb_ids: Sequence[int], words: Sequence[str], grams: Sequence[str], limit: int) -> list[tuple[int, float]]:
        """``(chunk_id, score)`` best first for the passages holding any of these words or bigrams
        (bm25 over both columns: a Chinese word jieba cuts differently in the question than in the
        document still meets its bigrams); higher score is better (``-bm25``). A syntax error in
        the MATCH finds nothing rather than failing the answer."""
        kb_ids = self.visible_ids(kb_ids)
        match = fts_match(words, grams)
        if not kb_ids or not match:
            return []
        sql = (
            "SELECT c.id, -bm25(kb_chunks_fts) AS score FROM kb_chunks_fts JOIN kb_chunks c ON c.id = kb_chunks_fts.rowid "
            "JOIN kb_documents d ON d.id = c.document_id "
            f"WHERE kb_chunks_fts MATCH ? AND c.kb_id IN ({_marks(kb_ids)}) AND d.status = 'ready' ORDER BY bm25(kb_chunks_fts) LIMIT ?"
        )
        try:
            rows = self.db.query(sql, [match, *kb_ids, limit])
        except sqlite3.OperationalError:
            return []
        return [(int(r[0]), float(r[1])) for r in rows]

    def scope_version(self, kb_ids: Sequence[int]) -> tuple[int, int, str]:
        """Changes whenever a document of these knowledge bases is added, replaced, removed or
        finished (document ids only grow; finishing bumps ``updated_at``): the key for caching
        their vectors in memory. It reads the few document rows, never the chunks."""
        row = self.db.query_one(
            f"SELECT count(*), coalesce(max(id), 0), coalesce(max(updated_at), '') FROM kb_documents WHERE kb_id IN ({_marks(kb_ids)})",
            list(kb_ids),
        )
        return (int(row[0]), int(row[1]), str(row[2])) if row else (0, 0, "")

    def chunk_count(self, kb_ids: Sequence[int]) -> int:
        """Chunks of the ready documents in these knowledge bases."""
        row = self.db.query_one(
            f"SELECT count(*) FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id WHERE c.kb_id IN ({_marks(kb_ids)}) AND d.status = 'ready'",
            list(kb_ids),
        )
        return int(row[0]) if row else 0

    def chunk_vectors(self, kb_ids: Sequence[int], embedder: str) -> list[tuple[int, bytes]]:
        """``(chunk_id, vector blob)`` of the ready chunks embedded by ``embedder``."""
        kb_ids = self.visible_ids(kb_ids)
        if not kb_ids:
            return []
        rows = self.db.query(
            f"SELECT c.id, c.vector FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id "
            f"WHERE c.kb_id IN ({_marks(kb_ids)}) AND d.status = 'ready' AND d.embedder = ? AND c.vector IS NOT NULL",
            [*kb_ids, embedder],
        )
        return [(int(r[0]), bytes(r[1])) for r in rows]

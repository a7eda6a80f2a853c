"""Knowledge bases, documents and chunks: the :class:`KnowledgeStore` repository.

Search lives here too, behind plain methods (``lexical_search``, ``chunk_vectors``), so every
query goes through one place and the PostgreSQL store (:mod:`xiaoq.store.pg_kb`) implements the
two that differ its own way; callers pass already segmented terms (:mod:`xiaoq.kb.lexical`).
Every method blocks; async callers use ``asyncio.to_thread``; :func:`knowledge_store` picks the
class for a database.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Iterable, Optional, Sequence

from xiaoq.errors import NotFound
from xiaoq.store.conversations import utc_now
from xiaoq.store.db import Database

_KB_COLUMNS = (
    "k.id, k.name, k.conversation_id, k.description, k.created_at, k.updated_at, "
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


class KnowledgeStore:
    """Knowledge bases over a :class:`~xiaoq.store.db.Database` (the conversations' file)."""

    def __init__(self, db: Database):
        self.db = db

    # ---- knowledge bases --------------------------------------------------------------------
    def get_kb(self, name: str) -> dict[str, Any]:
        row = self.db.query_one(f"SELECT {_KB_COLUMNS} FROM knowledge_bases k WHERE k.name = ?", (name,))
        if row is None:
            raise NotFound(f"No knowledge base named {name!r}", code="kb_not_found")
        return _kb_dict(row)

    def find_kb(self, name: str) -> Optional[dict[str, Any]]:
        row = self.db.query_one(f"SELECT {_KB_COLUMNS} FROM knowledge_bases k WHERE k.name = ?", (name,))
        return _kb_dict(row) if row else None

    def ensure_kb(self, name: str, conversation_id: Optional[str] = None, description: str = "") -> dict[str, Any]:
        """The knowledge base ``name``, created when missing."""
        now = utc_now()
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO knowledge_bases (name, conversation_id, description, created_at, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (name, conversation_id, description, now, now),
            )
        return self.get_kb(name)

    def list_kbs(self) -> list[dict[str, Any]]:
        """Named knowledge bases (conversation scopes are not listed), by name."""
        rows = self.db.query(f"SELECT {_KB_COLUMNS} FROM knowledge_bases k WHERE k.conversation_id IS NULL ORDER BY k.name")
        return [_kb_dict(r) for r in rows]

    def delete_kb(self, name: str) -> None:
        """Delete it with its documents and chunks (cascade; the FTS rows go by trigger)."""
        with self.db.write() as conn:
            if conn.execute("DELETE FROM knowledge_bases WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"No knowledge base named {name!r}", code="kb_not_found")

    # ---- documents ---------------------------------------------------------------------------
    def find_document(self, kb_id: int, source: str) -> Optional[dict[str, Any]]:
        row = self.db.query_one(f"SELECT {_DOC_COLUMNS} FROM kb_documents WHERE kb_id = ? AND source = ?", (kb_id, source))
        return _doc_dict(row) if row else None

    def get_document(self, document_id: int) -> dict[str, Any]:
        row = self.db.query_one(f"SELECT {_DOC_COLUMNS} FROM kb_documents WHERE id = ?", (document_id,))
        if row is None:
            raise NotFound(f"No document with id {document_id}", code="document_not_found")
        return _doc_dict(row)

    def list_documents(self, kb_id: int) -> list[dict[str, Any]]:
        rows = self.db.query(f"SELECT {_DOC_COLUMNS} FROM kb_documents WHERE kb_id = ? ORDER BY source", (kb_id,))
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
        rows = self.db.query(f"SELECT {_CHUNK_COLUMNS} FROM {_CHUNK_JOIN} WHERE c.id IN ({_marks(chunk_ids)})", list(chunk_ids))
        return {r["id"]: chunk_dict(r) for r in rows}

    def get_chunk(self, chunk_id: int) -> dict[str, Any]:
        found = self.get_chunks([chunk_id]).get(chunk_id)
        if found is None:
            raise NotFound(f"No passage with id {chunk_id}", code="chunk_not_found")
        return found

    def document_chunks(self, document_id: int) -> list[dict[str, Any]]:
        """A document's chunks in reading order (summaries read them all)."""
        rows = self.db.query(f"SELECT {_CHUNK_COLUMNS} FROM {_CHUNK_JOIN} WHERE c.document_id = ? ORDER BY c.position", (document_id,))
        return [chunk_dict(r) for r in rows]

    def lexical_search(self, kb_ids: Sequence[int], words: Sequence[str], grams: Sequence[str], limit: int) -> list[tuple[int, float]]:
        """``(chunk_id, score)`` best first for the passages holding any of these words or bigrams
        (bm25 over both columns: a Chinese word jieba cuts differently in the question than in the
        document still meets its bigrams); higher score is better (``-bm25``). A syntax error in
        the MATCH finds nothing rather than failing the answer."""
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
        if not kb_ids:
            return []
        rows = self.db.query(
            f"SELECT c.id, c.vector FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id "
            f"WHERE c.kb_id IN ({_marks(kb_ids)}) AND d.status = 'ready' AND d.embedder = ? AND c.vector IS NOT NULL",
            [*kb_ids, embedder],
        )
        return [(int(r[0]), bytes(r[1])) for r in rows]

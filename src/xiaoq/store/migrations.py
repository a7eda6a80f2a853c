"""Schema migrations: an ordered list of plain functions, the applied names recorded in ``_migrations``.

The pattern of simonw/llm's ``llm/migrations.py``: a migration is a function taking the connection,
registered in order with ``@migration``; :func:`migrate` runs those whose name is not yet in the
``_migrations`` table. Each runs in its own transaction together with the row that records it, so a
crash mid-migration leaves the file at the previous version, never half-migrated.

Never edit or reorder a released migration: add a new one. Tests migrate an empty file and a file
holding data at ``m001`` to the latest schema.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration (its ``__name__`` is what gets recorded)."""
    MIGRATIONS.append(fn)
    return fn


def applied(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations already applied, in order."""
    _ensure_table(conn)
    return [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY rowid")]


def migrate(conn: sqlite3.Connection, upto: str | None = None) -> list[str]:
    """Apply the pending migrations (all, or up to and including ``upto``); return their names."""
    done = set(applied(conn))
    ran: list[str] = []
    for fn in MIGRATIONS:
        name = fn.__name__
        if name not in done:
            conn.execute("BEGIN IMMEDIATE")
            try:
                fn(conn)
                conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))", (name,))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            ran.append(name)
        if name == upto:
            break
    return ran


def _ensure_table(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")


def _script(conn: sqlite3.Connection, sql: str) -> None:
    """Run several statements inside the current transaction.

    ``executescript`` would COMMIT first and so break the one-transaction-per-migration rule;
    this splits on complete statements instead (``sqlite3.complete_statement`` understands
    ``CREATE TRIGGER … BEGIN …; END;``).
    """
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            conn.execute(buf)
            buf = ""
    if buf.strip():
        conn.execute(buf)


@migration
def m001_initial(conn: sqlite3.Connection) -> None:
    """Conversations and their messages. Timestamps are ISO-8601 UTC text with ms and ``Z``, so
    they sort as text and go to JSON unchanged."""
    _script(
        conn,
        """
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY CHECK (length(id) = 32),
            title TEXT NOT NULL DEFAULT '',
            system_prompt TEXT,
            settings TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX conversations_updated ON conversations (updated_at);
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'complete' CHECK (status IN ('complete', 'incomplete', 'error')),
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cached_tokens INTEGER,
            timings TEXT,
            error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX messages_conversation ON messages (conversation_id, id);
        """,
    )


@migration
def m002_fts_budget_summary(conn: sqlite3.Connection) -> None:
    """Full-text search, the context budget's record, and the stored summary of earlier turns.

    FTS5 with the ``trigram`` tokenizer indexes every 3-character window, so Chinese (no spaces
    between words) is searchable; it is an external-content table over ``messages`` kept in sync
    by triggers (which also fire for ON DELETE CASCADE), and existing rows are indexed here.
    """
    _script(
        conn,
        """
        ALTER TABLE conversations ADD COLUMN summary TEXT;
        ALTER TABLE conversations ADD COLUMN summary_upto_message_id INTEGER;
        ALTER TABLE conversations ADD COLUMN summary_tokens INTEGER;
        ALTER TABLE messages ADD COLUMN budget TEXT;
        CREATE VIRTUAL TABLE messages_fts USING fts5 (
            content, content='messages', content_rowid='id', tokenize='trigram'
        );
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
        END;
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
        END;
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
            INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
        END;
        INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
        """,
    )


@migration
def m003_message_token_counts(conn: sqlite3.Connection) -> None:
    """The token count of each message's content, kept so the context budget counts a stored turn
    once instead of before every reply. The count is only valid for the tokenizer that made it
    (``content_tokens_key``, the engine's ``tokenizer_id``), and a trigger forgets it whenever
    the content changes, whoever changes it."""
    _script(
        conn,
        """
        ALTER TABLE messages ADD COLUMN content_tokens INTEGER;
        ALTER TABLE messages ADD COLUMN content_tokens_key TEXT;
        CREATE TRIGGER messages_content_tokens_reset AFTER UPDATE OF content ON messages
        WHEN new.content IS NOT old.content BEGIN
            UPDATE messages SET content_tokens = NULL, content_tokens_key = NULL WHERE id = new.id;
        END;
        """,
    )


@migration
def m004_knowledge_bases(conn: sqlite3.Connection) -> None:
    """Knowledge bases, their documents and passages (chunks), and the chunks' lexical index.

    A knowledge base with a ``conversation_id`` is that conversation's own scope (its attached
    files) and goes when the conversation goes. A document is ``ingesting`` until all its chunks
    are committed (in small batches) and only ``ready`` documents are searched. Vectors are
    float16 BLOBs scored with numpy; ``embedder`` names the model that made them, so a change of
    model is noticed. The FTS table holds words (jieba) and CJK bigrams computed in Python, since
    no SQLite tokenizer segments Chinese; its rows share the chunk ids.
    """
    _script(
        conn,
        """
        CREATE TABLE knowledge_bases (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            conversation_id TEXT REFERENCES conversations (id) ON DELETE CASCADE,
            description TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE kb_documents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kb_id INTEGER NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
            source TEXT NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            content_hash TEXT NOT NULL,
            bytes INTEGER NOT NULL DEFAULT 0,
            pages INTEGER,
            status TEXT NOT NULL DEFAULT 'ingesting' CHECK (status IN ('ingesting', 'ready', 'error')),
            error TEXT,
            chunk_count INTEGER NOT NULL DEFAULT 0,
            embedder TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (kb_id, source)
        );
        CREATE TABLE kb_chunks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            document_id INTEGER NOT NULL REFERENCES kb_documents (id) ON DELETE CASCADE,
            kb_id INTEGER NOT NULL,
            position INTEGER NOT NULL,
            heading TEXT NOT NULL DEFAULT '',
            anchor TEXT,
            page INTEGER,
            text TEXT NOT NULL,
            tokens INTEGER NOT NULL DEFAULT 0,
            vector BLOB
        );
        CREATE INDEX kb_chunks_document ON kb_chunks (document_id, position);
        CREATE INDEX kb_chunks_kb ON kb_chunks (kb_id);
        CREATE VIRTUAL TABLE kb_chunks_fts USING fts5 (words, grams, tokenize='unicode61 remove_diacritics 2');
        CREATE TRIGGER kb_chunks_fts_delete AFTER DELETE ON kb_chunks BEGIN
            DELETE FROM kb_chunks_fts WHERE rowid = old.id;
        END;
        """,
    )


@migration
def m005_reply_finish_reason_citations(conn: sqlite3.Connection) -> None:
    """Why each reply ended (``stop``, ``length``, ``cancelled``, ``error``; the set may grow, so it
    is free text, not a CHECK) and a JSON list of the sources a reply cites (none yet: retrieval
    fills it later). Replies stored before this stay NULL: nobody recorded why they ended."""
    _script(
        conn,
        """
        ALTER TABLE messages ADD COLUMN finish_reason TEXT;
        ALTER TABLE messages ADD COLUMN citations TEXT;
        """,
    )


@migration
def m006_conversation_kb_retrieval(conn: sqlite3.Connection) -> None:
    """The knowledge base a conversation answers from (``conversations.kb``, NULL: none; a real
    column, so no client keeps it in free-form settings), and what was retrieved for a reply
    (``messages.retrieval``: every candidate with its scores, JSON) beside its ``citations``."""
    _script(
        conn,
        """
        ALTER TABLE conversations ADD COLUMN kb TEXT;
        ALTER TABLE messages ADD COLUMN retrieval TEXT;
        """,
    )


@migration
def m007_presets(conn: sqlite3.Connection) -> None:
    """Presets ("assistants"): a name, a system prompt and sampling settings that a new conversation
    copies. ``builtin`` names the shipped preset a row can be reset to (NULL for one a user made);
    ``language`` is the UI language it is shown in (NULL: any); ``system_prompt`` NULL means the
    server's default prompt. ``owner_id`` (a user's id, NULL: everyone's; no foreign key, since
    ``users`` comes with m008) and ``visibility`` are there for accounts, so owning presets needs
    no rewrite of this table."""
    _script(
        conn,
        """
        CREATE TABLE presets (
            id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
            builtin TEXT UNIQUE,
            owner_id INTEGER,
            visibility TEXT NOT NULL DEFAULT 'shared' CHECK (visibility IN ('private', 'shared')),
            language TEXT,
            name TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            system_prompt TEXT,
            settings TEXT NOT NULL DEFAULT '{}',
            position INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX presets_owner ON presets (owner_id, position);
        """,
    )


@migration
def m008_accounts(conn: sqlite3.Connection) -> None:
    """Users (admin or user, in named groups), login sessions and per-user API keys, stored as
    SHA-256 digests so a copy of the database opens nothing; an owner for every conversation and
    knowledge base, and who else may use a knowledge base. Conversations stored before accounts
    have no owner until the first admin claims them (:meth:`UserStore.claim_unowned`)."""
    _script(
        conn,
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            username TEXT NOT NULL UNIQUE COLLATE NOCASE,
            password_hash TEXT,
            role TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user')),
            created_at TEXT NOT NULL
        );
        CREATE TABLE user_groups (
            user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            group_name TEXT NOT NULL,
            PRIMARY KEY (user_id, group_name)
        );
        CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        );
        CREATE INDEX sessions_user ON sessions (user_id);
        CREATE TABLE api_keys (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            name TEXT NOT NULL DEFAULT '',
            prefix TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            last_used_at TEXT
        );
        CREATE INDEX api_keys_user ON api_keys (user_id);
        ALTER TABLE conversations ADD COLUMN owner_id INTEGER REFERENCES users (id) ON DELETE CASCADE;
        CREATE INDEX conversations_owner ON conversations (owner_id, updated_at);
        ALTER TABLE knowledge_bases ADD COLUMN owner_id INTEGER REFERENCES users (id) ON DELETE SET NULL;
        ALTER TABLE knowledge_bases ADD COLUMN visibility TEXT NOT NULL DEFAULT 'everyone' CHECK (visibility IN ('everyone', 'group', 'private'));
        ALTER TABLE knowledge_bases ADD COLUMN group_name TEXT;
        """,
    )


@migration
def m009_preset_groups(conn: sqlite3.Connection) -> None:
    """Presets shared with one group (``visibility = 'group'`` and ``group_name``), as knowledge
    bases are. SQLite cannot change a CHECK constraint in place, so the table is copied into a new one."""
    _script(
        conn,
        """
        CREATE TABLE presets_new (
            id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
            builtin TEXT UNIQUE,
            owner_id INTEGER,
            visibility TEXT NOT NULL DEFAULT 'shared' CHECK (visibility IN ('private', 'shared', 'group')),
            group_name TEXT,
            language TEXT,
            name TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            system_prompt TEXT,
            settings TEXT NOT NULL DEFAULT '{}',
            position INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        INSERT INTO presets_new (id, builtin, owner_id, visibility, language, name, description, system_prompt, settings, position, created_at, updated_at)
            SELECT id, builtin, owner_id, visibility, language, name, description, system_prompt, settings, position, created_at, updated_at FROM presets;
        DROP TABLE presets;
        ALTER TABLE presets_new RENAME TO presets;
        CREATE INDEX presets_owner ON presets (owner_id, position);
        """,
    )

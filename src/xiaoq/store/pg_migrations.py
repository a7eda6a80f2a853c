"""The PostgreSQL schema: the same migrations as :mod:`xiaoq.store.migrations`, by the same names,
written for PostgreSQL (a test checks that the two lists name the same steps in the same order).

Differences that are deliberate: ``BIGSERIAL`` ids instead of SQLite's ``AUTOINCREMENT``; search
through a ``pg_trgm`` GIN index on ``messages.content`` (``ILIKE '%q%'`` uses it from three
characters on, shorter queries scan, which matches SQLite's trigram/LIKE split) instead of FTS5.
pg_trgm needs a UTF-8 database (``initdb --locale C.UTF-8``) to index Chinese.

Every migration runs in one transaction with the row that records it, under an advisory lock, so
replicas that start together apply each step once.
"""

from __future__ import annotations

from typing import Any, Callable

Migration = Callable[[Any], None]
MIGRATIONS: list[Migration] = []
#: Advisory lock key held while migrating ("xiaoq" in ASCII).
LOCK_KEY = 0x7869616F71


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


def applied(conn: Any) -> list[str]:
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
    return [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY applied_at, name").fetchall()]


def migrate(conn: Any, upto: str | None = None) -> list[str]:
    """Apply the pending migrations (all, or up to and including ``upto``); return their names."""
    ran: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        done = set(applied(conn))
    for fn in MIGRATIONS:
        if fn.__name__ not in done:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                if conn.execute("SELECT 1 FROM _migrations WHERE name = %s", (fn.__name__,)).fetchone() is None:
                    fn(conn)
                    conn.execute("INSERT INTO _migrations (name) VALUES (%s)", (fn.__name__,))
                    ran.append(fn.__name__)
        if fn.__name__ == upto:
            break
    return ran


def _script(conn: Any, sql: str) -> None:
    for statement in sql.split(";"):
        if statement.strip():
            conn.execute(statement)


@migration
def m001_initial(conn: Any) -> None:
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
            id BIGSERIAL PRIMARY KEY,
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
        CREATE INDEX messages_conversation ON messages (conversation_id, id)
        """,
    )


@migration
def m002_fts_budget_summary(conn: Any) -> None:
    _script(
        conn,
        """
        ALTER TABLE conversations ADD COLUMN summary TEXT;
        ALTER TABLE conversations ADD COLUMN summary_upto_message_id BIGINT;
        ALTER TABLE conversations ADD COLUMN summary_tokens INTEGER;
        ALTER TABLE messages ADD COLUMN budget TEXT;
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
        CREATE INDEX messages_content_trgm ON messages USING gin (content gin_trgm_ops)
        """,
    )


@migration
def m003_message_token_counts(conn: Any) -> None:
    """Each content's token count and the tokenizer that made it; forgotten (as by SQLite's
    trigger) whenever the content changes, whoever changes it."""
    _script(
        conn,
        """
        ALTER TABLE messages ADD COLUMN content_tokens INTEGER;
        ALTER TABLE messages ADD COLUMN content_tokens_key TEXT
        """,
    )
    conn.execute(
        """
        CREATE FUNCTION messages_content_tokens_reset() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.content IS DISTINCT FROM OLD.content THEN
                NEW.content_tokens := NULL;
                NEW.content_tokens_key := NULL;
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    conn.execute(
        "CREATE TRIGGER messages_content_tokens_reset BEFORE UPDATE OF content ON messages "
        "FOR EACH ROW EXECUTE FUNCTION messages_content_tokens_reset()"
    )


@migration
def m004_knowledge_bases(conn: Any) -> None:
    """The knowledge bases' tables, so a conversation's attached scope goes with it (their
    lexical index joins in m006)."""
    _script(
        conn,
        """
        CREATE TABLE knowledge_bases (
            id BIGSERIAL PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            conversation_id TEXT REFERENCES conversations (id) ON DELETE CASCADE,
            description TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE kb_documents (
            id BIGSERIAL PRIMARY KEY,
            kb_id BIGINT NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
            source TEXT NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            content_hash TEXT NOT NULL,
            bytes BIGINT NOT NULL DEFAULT 0,
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
            id BIGSERIAL PRIMARY KEY,
            document_id BIGINT NOT NULL REFERENCES kb_documents (id) ON DELETE CASCADE,
            kb_id BIGINT NOT NULL,
            position INTEGER NOT NULL,
            heading TEXT NOT NULL DEFAULT '',
            anchor TEXT,
            page INTEGER,
            text TEXT NOT NULL,
            tokens INTEGER NOT NULL DEFAULT 0,
            vector BYTEA
        );
        CREATE INDEX kb_chunks_document ON kb_chunks (document_id, position);
        CREATE INDEX kb_chunks_kb ON kb_chunks (kb_id)
        """,
    )


@migration
def m005_reply_finish_reason_citations(conn: Any) -> None:
    """Why each reply ended (free text: the set may grow) and the JSON list of sources it cites."""
    _script(
        conn,
        """
        ALTER TABLE messages ADD COLUMN finish_reason TEXT;
        ALTER TABLE messages ADD COLUMN citations TEXT
        """,
    )


@migration
def m006_conversation_kb_retrieval(conn: Any) -> None:
    """The knowledge base a conversation answers from (NULL: none) and what was retrieved for a
    reply (JSON text, like ``citations``). Also the passages' lexical index, which SQLite keeps in
    FTS5 since m004: ``kb_chunks.lex``, a tsvector of the same jieba words (weight A) and CJK
    bigrams (weight B) built in Python (:mod:`xiaoq.store.pg_kb`), under a GIN index."""
    _script(
        conn,
        """
        ALTER TABLE conversations ADD COLUMN kb TEXT;
        ALTER TABLE messages ADD COLUMN retrieval TEXT;
        ALTER TABLE kb_chunks ADD COLUMN lex TSVECTOR;
        CREATE INDEX kb_chunks_lex ON kb_chunks USING gin (lex)
        """,
    )


@migration
def m007_presets(conn: Any) -> None:
    _script(
        conn,
        """
        CREATE TABLE presets (
            id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
            builtin TEXT UNIQUE,
            owner_id BIGINT,
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
        CREATE INDEX presets_owner ON presets (owner_id, position)
        """,
    )


@migration
def m008_accounts(conn: Any) -> None:
    """Users, groups, sessions and API keys (digests only); owners of conversations and knowledge
    bases. Usernames are unique whatever their case, as SQLite's ``COLLATE NOCASE`` makes them."""
    _script(
        conn,
        """
        CREATE TABLE users (
            id BIGSERIAL PRIMARY KEY,
            username TEXT NOT NULL,
            password_hash TEXT,
            role TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user')),
            created_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX users_username ON users (lower(username));
        CREATE TABLE user_groups (
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            group_name TEXT NOT NULL,
            PRIMARY KEY (user_id, group_name)
        );
        CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY,
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        );
        CREATE INDEX sessions_user ON sessions (user_id);
        CREATE TABLE api_keys (
            id BIGSERIAL PRIMARY KEY,
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            name TEXT NOT NULL DEFAULT '',
            prefix TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            last_used_at TEXT
        );
        CREATE INDEX api_keys_user ON api_keys (user_id);
        ALTER TABLE conversations ADD COLUMN owner_id BIGINT REFERENCES users (id) ON DELETE CASCADE;
        CREATE INDEX conversations_owner ON conversations (owner_id, updated_at);
        ALTER TABLE knowledge_bases ADD COLUMN owner_id BIGINT REFERENCES users (id) ON DELETE SET NULL;
        ALTER TABLE knowledge_bases ADD COLUMN visibility TEXT NOT NULL DEFAULT 'everyone' CHECK (visibility IN ('everyone', 'group', 'private'));
        ALTER TABLE knowledge_bases ADD COLUMN group_name TEXT
        """,
    )


@migration
def m009_preset_groups(conn: Any) -> None:
    """Presets shared with one group (``visibility = 'group'`` and ``group_name``), as knowledge bases are."""
    _script(
        conn,
        """
        ALTER TABLE presets DROP CONSTRAINT IF EXISTS presets_visibility_check;
        ALTER TABLE presets ADD CONSTRAINT presets_visibility_check CHECK (visibility IN ('private', 'shared', 'group'));
        ALTER TABLE presets ADD COLUMN group_name TEXT
        """,
    )

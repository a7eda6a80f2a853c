"""PostgreSQL specifics on a real server (tests/pg.py): the same migrations as SQLite by name and
order, from an empty database and from the first schema holding data, applied once when replicas
start together; and two XiaoQ servers sharing one database."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import psycopg

from xiaoq.api.app import create_app
from xiaoq.engine.fake import FakeEngine
from xiaoq.store import PgStore, open_store
from xiaoq.store import migrations as sqlite_migrations
from xiaoq.store import pg_migrations
from xiaoq.store.pg import PgDatabase, redact

from tests.api.helpers import make_settings, parse_sse
from tests.api.server import serve, wait_health


def test_same_migrations_as_sqlite() -> None:
    assert [f.__name__ for f in pg_migrations.MIGRATIONS] == [f.__name__ for f in sqlite_migrations.MIGRATIONS]


def test_empty_database_to_latest_and_idempotent(pg_server) -> None:
    url = pg_server.new_database(migrated=False)
    with psycopg.connect(url, autocommit=True) as conn:
        names = [f.__name__ for f in pg_migrations.MIGRATIONS]
        assert pg_migrations.migrate(conn) == names
        assert pg_migrations.migrate(conn) == []
        assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'").fetchone()
        assert conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'messages_content_trgm'").fetchone()[0].find("gin_trgm_ops") > 0


def test_first_schema_with_data_to_latest(pg_server) -> None:
    url = pg_server.new_database(migrated=False)
    with psycopg.connect(url, autocommit=True) as conn:
        assert pg_migrations.migrate(conn, upto="m001_initial") == ["m001_initial"]
        conn.execute("INSERT INTO conversations (id, title, created_at, updated_at) VALUES (%s, '旧对话', 'a', 'a')", ("a" * 32,))
        conn.execute("INSERT INTO messages (conversation_id, role, content, created_at, updated_at) VALUES (%s, 'user', '我养了一只叫豆豆的猫', 'x', 'x')", ("a" * 32,))
    store = open_store(url)  # migrates the rest
    try:
        assert isinstance(store, PgStore)
        assert [h["conversation_title"] for h in store.search("豆豆")] == ["旧对话"]
        assert [h["conversation_title"] for h in store.search("叫豆豆的猫")] == ["旧对话"]
        assert store.get_summary("a" * 32) is None
    finally:
        store.close()


def test_replicas_starting_together_migrate_once(pg_server) -> None:
    url = pg_server.new_database(migrated=False)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            PgDatabase(url).close()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM _migrations").fetchone()[0] == len(pg_migrations.MIGRATIONS)


def test_password_never_shown() -> None:
    assert redact("postgresql://xiaoq:s3cret@db:5432/xiaoq") == "postgresql://xiaoq:***@db:5432/xiaoq"


def test_two_xiaoq_servers_share_conversations(pg_url: str) -> None:
    """A conversation started on one front end continues on the other (each with its own store
    connections), and search on either finds both turns."""
    stores = [open_store(pg_url), open_store(pg_url)]
    apps = []
    for store in stores:
        settings = make_settings()
        apps.append(create_app(settings, FakeEngine(settings), store=store, web_dir=None))
    try:
        with serve(apps[0]) as a, serve(apps[1]) as b:
            wait_health(a)
            wait_health(b)
            cid = httpx.post(a + "/api/conversations", json={"title": "共享"}).json()["id"]
            parse_sse(httpx.post(f"{a}/api/conversations/{cid}/messages", json={"content": "第一句在甲"}, timeout=30).text)
            done = parse_sse(httpx.post(f"{b}/api/conversations/{cid}/messages", json={"content": "第二句在乙"}, timeout=30).text)[-1]
            assert done["done"] is True
            # the reply on b was built from the history written through a
            messages = httpx.get(f"{a}/api/conversations/{cid}").json()["messages"]
            assert [m["content"] for m in messages if m["role"] == "user"] == ["第一句在甲", "第二句在乙"]
            assert [m["status"] for m in messages] == ["complete"] * 4
            assert {h["conversation_id"] for h in httpx.get(b + "/api/search", params={"q": "在甲"}).json()["data"]} == {cid}
            # knowledge bases live in the shared database too
            assert httpx.post(a + "/api/kb", json={"name": "shared"}).status_code == 201
            assert [k["name"] for k in httpx.get(b + "/api/kb").json()["data"]] == ["shared"]
    finally:
        for store in stores:
            store.close()

"""A database that cannot be written (full: ``PRAGMA max_page_count``; read-only: ``PRAGMA
query_only``, since tests run as root and chmod proves nothing) gives the client a clear JSON error
with its own code before any stream starts; nothing is half-written, ``/health`` still answers, and
once the fault is gone the same server works on with a sound file. Real uvicorn on 127.0.0.1, a real
SQLite file, the fake engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from xiaoq.api.app import create_app
from xiaoq.engine.fake import FakeEngine
from xiaoq.store import Store

from tests.api.helpers import make_settings, parse_sse
from tests.api.server import serve, wait_health

BIG = "很长的消息，" * 20_000  # ~360 KB of UTF-8: needs new pages in any database


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Store]]:
    store = Store(tmp_path / "xiaoq.db")
    settings = make_settings()
    app = create_app(settings, FakeEngine(settings), store=store, web_dir=None)
    with serve(app) as url:
        wait_health(url)
        yield url, store
    store.close()


def pragma(store: Store, sql: str) -> None:
    """On the server's own writer connection, outside a transaction (these pragmas are per
    connection, and under query_only not even BEGIN IMMEDIATE would pass)."""
    with store.db._write_lock:
        store.db._writer.execute(sql)


def snapshot(http: httpx.Client) -> list[Any]:
    convs = http.get("/api/conversations").json()["data"]
    return [http.get(f"/api/conversations/{c['id']}").json() for c in convs]


def assert_storage_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == code and "nothing was saved" in err["message"], err


def check_fault(url: str, store: Store, status: int, code: str, on: str, off: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        cid = http.post("/api/conversations", json={"title": "before"}).json()["id"]
        assert parse_sse(http.post(f"/api/conversations/{cid}/messages", json={"content": "hi"}).text)[-1]["done"]
        before = snapshot(http)
        pragma(store, on)
        try:
            writes = [
                http.post(f"/api/conversations/{cid}/messages", json={"content": BIG}),
                http.post("/chat", json={"prompt": BIG, "conversation_id": cid}),
                http.post("/api/conversations", json={"title": "t", "system_prompt": BIG[:19_000]}),
                http.patch(f"/api/conversations/{cid}", json={"system_prompt": BIG[:19_000]}),
            ]
            for r in writes:
                assert_storage_error(r, status, code)
            assert http.get("/health").status_code == 200
            assert snapshot(http) == before  # nothing half-written, reads still work
            again = http.post(f"/api/conversations/{cid}/messages", json={"content": BIG})
            assert_storage_error(again, status, code)  # not 409: the failed turn released the conversation
        finally:
            pragma(store, off)
        assert store.db.integrity_check() == "ok"
        events = parse_sse(http.post(f"/api/conversations/{cid}/messages", json={"content": "after"}).text)
        assert events[-1]["done"] and events[-1]["finish_reason"] in ("stop", "length")
        msgs = http.get(f"/api/conversations/{cid}").json()["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant"] * 2 and msgs[2]["content"] == "after"
    print(f"{code}: {len(writes)} writes refused with {status}, health 200, integrity ok, server went on after")


def test_disk_full_is_507_storage_full(server: tuple[str, Store]) -> None:
    url, store = server
    pages = store.db.query_one("PRAGMA page_count")[0]
    check_fault(url, store, 507, "storage_full", f"PRAGMA max_page_count={pages}", "PRAGMA max_page_count=1073741823")


def test_read_only_database_is_503_storage_read_only(server: tuple[str, Store]) -> None:
    url, store = server
    check_fault(url, store, 503, "storage_read_only", "PRAGMA query_only=ON", "PRAGMA query_only=OFF")

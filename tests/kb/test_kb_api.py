"""``/api/kb``: create, upload (202 + job), progress, documents, search, the cited passage, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import make_settings, wait_ready
from tests.kb import docs
from xiaoq.api.app import create_app
from xiaoq.engine.fake import FakeEngine
from xiaoq.store import open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """The app over a real SQLite file, and over a fresh database of a real PostgreSQL."""
    settings = make_settings(kb_dense=False)
    store = open_store(tmp_path / "x.db" if request.param == "sqlite" else request.getfixturevalue("pg_url"))
    with TestClient(create_app(settings, FakeEngine(settings), store=store, web_dir=None)) as c:
        wait_ready(c)
        yield c
    store.close()


def _upload(client: TestClient, kb: str, files: list[tuple[str, bytes]]) -> dict:
    r = client.post(f"/api/kb/{kb}/documents", files=[("files", (name, data)) for name, data in files])
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/api/kb/jobs/{r.json()['id']}"
    job_id = r.json()["id"]
    for _ in range(500):
        job = client.get(f"/api/kb/jobs/{job_id}").json()
        if job["status"] in ("done", "error"):
            return job
        __import__("time").sleep(0.02)
    raise AssertionError("ingest job never finished")


def test_create_upload_search_and_open_a_passage(client: TestClient) -> None:
    r = client.post("/api/kb", json={"name": "office", "description": "行政"})
    assert r.status_code == 201 and r.json()["name"] == "office"
    assert client.post("/api/kb", json={"name": "office"}).status_code == 409
    job = _upload(client, "office", [("admin.md", docs.MARKDOWN.encode()), ("it.html", docs.HTML.encode()), ("bad.xlsx", b"nope")])
    assert job["status"] == "done"
    p = job["progress"]
    assert (p["files_total"], p["files_done"], p["added"], p["failed"]) == (3, 3, 2, 1)
    assert p["errors"][0]["source"] == "bad.xlsx" and "XLSX" in p["errors"][0]["error"]

    listed = client.get("/api/kb").json()["data"]
    assert [(k["name"], k["document_count"]) for k in listed] == [("office", 2)]
    documents = client.get("/api/kb/office/documents").json()["data"]
    assert sorted(d["source"] for d in documents) == ["admin.md", "it.html"]

    hits = client.get("/api/kb/office/search", params={"q": "VPN 端口", "k": 2}).json()["data"]
    assert hits[0]["source"] == "it.html" and hits[0]["anchor"] == "vpn-setup" and hits[0]["heading"] == "VPN 接入"
    assert {"chunk_id", "source", "heading", "anchor", "snippet", "score"} <= set(hits[0])
    chunk = client.get(f"/api/kb/chunks/{hits[0]['chunk_id']}").json()
    assert "4433" in chunk["text"] and chunk["kb"] == "office"

    doc_id = next(d["id"] for d in documents if d["source"] == "it.html")
    assert client.delete(f"/api/kb/office/documents/{doc_id}").status_code == 204
    assert all(h["source"] != "it.html" for h in client.get("/api/kb/office/search", params={"q": "VPN"}).json()["data"])
    assert client.delete("/api/kb/office").status_code == 204
    assert client.get("/api/kb").json()["data"] == []


def test_reupload_of_same_content_is_unchanged(client: TestClient) -> None:
    _upload(client, "default", [("admin.md", docs.MARKDOWN.encode())])
    again = _upload(client, "default", [("admin.md", docs.MARKDOWN.encode())])
    assert (again["progress"]["added"], again["progress"]["unchanged"]) == (0, 1)


@pytest.mark.parametrize(
    "method, path, status, code",
    [
        ("get", "/api/kb/Bad!/documents", 400, "invalid_kb_name"),
        ("get", "/api/kb/missing/documents", 404, "kb_not_found"),
        ("get", "/api/kb/missing/search?q=x", 404, "kb_not_found"),
        ("get", "/api/kb/jobs/nope", 404, "job_not_found"),
        ("get", "/api/kb/chunks/999", 404, "chunk_not_found"),
        ("delete", "/api/kb/missing", 404, "kb_not_found"),
    ],
)
def test_errors_are_json(client: TestClient, method: str, path: str, status: int, code: str) -> None:
    r = getattr(client, method)(path)
    assert r.status_code == status and r.json()["error"]["code"] == code


def test_bad_bodies_are_4xx(client: TestClient) -> None:
    assert client.post("/api/kb", json={"name": "x" * 65}).status_code in (400, 422)
    assert client.post("/api/kb", json={"name": "UPPER"}).json()["error"]["code"] == "invalid_kb_name"
    assert client.post("/api/kb/default/documents", files=[("files", ("", b"x"))]).status_code in (400, 422)
    assert client.get("/api/kb/default/search", params={"q": "x", "k": 0}).status_code == 422


def test_odd_values_are_4xx_or_empty_on_both_stores(client: TestClient) -> None:
    """Values a database may refuse (ids past 64 bits, NUL characters) never reach it as a 5xx."""
    client.post("/api/kb", json={"name": "odd"})
    big = 2**70
    for r in (client.get(f"/api/kb/chunks/{big}"), client.delete(f"/api/kb/odd/documents/{big}")):
        assert 400 <= r.status_code < 500 and "error" in r.json(), r.text
    for q in ("年假\x00", "\x00", "x" * 5000):
        r = client.get("/api/kb/odd/search", params={"q": q})
        assert r.status_code in (200, 400, 422) and ("data" in r.json() or "error" in r.json()), (q[:8], r.text)
    job = _upload(client, "odd", [("odd.txt", "年假有十五\x00天。".encode())])  # PostgreSQL text cannot hold NUL
    assert (job["status"], job["progress"]["added"]) == ("done", 1), job
    hits = client.get("/api/kb/odd/search", params={"q": "年假"}).json()["data"]
    assert [h["source"] for h in hits] == ["odd.txt"]

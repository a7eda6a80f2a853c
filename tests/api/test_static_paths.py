"""The web UI's files and nothing else: path traversal in its encoded forms gets 404, and the SQLite
database (with its journal and KV states) is never served, even when the data directory lies inside
the web root. Real uvicorn on 127.0.0.1; raw request lines so no client normalizes the paths."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Iterator

import pytest

from xiaoq.api.app import create_app
from xiaoq.api.web import WEB_DIR
from xiaoq.engine.fake import FakeEngine
from xiaoq.store import Store

from tests.api.helpers import make_settings
from tests.api.server import serve


def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """Send ``GET <target>`` exactly as written; return (status, body)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode("latin-1"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The built UI copied to a web root that also holds the data directory and a stray database."""
    root = tmp_path_factory.mktemp("site") / "web"
    shutil.copytree(WEB_DIR, root)
    data = root / "data"
    settings = make_settings(data_dir=str(data))
    store = Store(settings.db_path())  # web/data/xiaoq.db (+ -wal, -shm while open)
    (data / "kv").mkdir(parents=True, exist_ok=True)
    (data / "kv" / "state.kv").write_bytes(b"KV")
    (data / "uploads").mkdir(exist_ok=True)
    (data / "uploads" / "notes.txt").write_text("private upload")
    (data / "export.json").write_text('{"private": true}')
    shutil.copy(settings.db_path(), root / "xiaoq.db")  # a database right beside index.html
    (root / "xiaoq.db-wal").write_bytes(b"WAL")
    (root / ".env").write_text("XIAOQ_API_KEY=secret")
    (Path(root.parent) / "secret.txt").write_text("outside the root")
    app = create_app(settings, FakeEngine(settings), store=store, web_dir=root)
    with serve(app) as url:
        yield url, root
    store.close()


def test_the_ui_is_served(site: tuple[str, Path]) -> None:
    url, _ = site
    assert raw_get(url, "/")[0] == 200
    assert raw_get(url, "/index.html")[0] == 200
    assert raw_get(url, "/favicon.svg")[0] == 200


NEVER_SERVED = [
    "/xiaoq.db", "/xiaoq.db-wal", "/.env", "/data/xiaoq.db", "/data/xiaoq.db-wal", "/data/kv/state.kv",
    "/data/uploads/notes.txt", "/data/export.json", "/data/", "/data", "/assets/", "/assets",
]
TRAVERSALS = [
    "/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt", "/assets/%2e%2e/%2e%2e/secret.txt",
    "/..%2fsecret.txt", "/%252e%252e/secret.txt", "/%252e%252e%252fsecret.txt", "/..%5csecret.txt", "/assets\\..\\..\\secret.txt",
    "/%5c..%5c..%5csecret.txt", "//etc/passwd", "/%2fetc%2fpasswd", "/etc/passwd", "/index.html%00.db", "/xiaoq.db%00",
    "/index.html/../xiaoq.db", "/./xiaoq.db", "/data/../xiaoq.db", "/%2e/xiaoq.db", "/XIAOQ.DB", "/xiaoq.db/", "/xiaoq.db;.html",
    "/..%c0%afsecret.txt", "/%c0%ae%c0%ae/secret.txt", "/.%2e/secret.txt", "/~/secret.txt",
]


@pytest.mark.parametrize("target", NEVER_SERVED + TRAVERSALS)
def test_nothing_but_the_ui_files_is_served(site: tuple[str, Path], target: str) -> None:
    url, root = site
    status, body = raw_get(url, target)
    assert status == 404, (target, status, body[:200])
    for leaked in (b"SQLite format", b"private upload", b'"private": true', b"outside the root", b"XIAOQ_API_KEY", b"WAL", b"KV"):
        assert leaked not in body, (target, leaked)
    assert (root / "xiaoq.db").read_bytes().startswith(b"SQLite format 3")  # the file really is there

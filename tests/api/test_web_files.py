"""How the built UI's files travel: gzip when the browser accepts it, 304 on a matching ETag, HEAD
with the real Content-Length, and security headers on every response (API JSON included)."""

from __future__ import annotations

import gzip
from pathlib import Path

from fastapi.testclient import TestClient

from xiaoq.api.app import create_app
from xiaoq.engine.fake import FakeEngine

from tests.api.helpers import make_settings, wait_ready


def _build(tmp_path: Path) -> bytes:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>小Q</title>", encoding="utf-8")
    js = ("export const x = 'XiaoQ';\n" * 200).encode()
    (tmp_path / "assets" / "index-abc.js").write_bytes(js)
    return js


def test_gzip_etag_head_and_headers(tmp_path: Path) -> None:
    js = _build(tmp_path)
    settings = make_settings()
    with TestClient(create_app(settings, FakeEngine(settings), web_dir=tmp_path)) as c:
        wait_ready(c)
        r = c.get("/assets/index-abc.js", headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
        assert r.content == js  # httpx undoes the gzip: the body is the file
        assert int(r.headers["content-length"]) == len(gzip.compress(js, mtime=0, compresslevel=9))
        assert r.headers["content-type"].startswith("text/javascript") or "javascript" in r.headers["content-type"]
        etag = r.headers["etag"]
        r304 = c.get("/assets/index-abc.js", headers={"If-None-Match": etag})
        assert r304.status_code == 304 and not r304.content
        plain = c.get("/assets/index-abc.js", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.content == js
        head = c.head("/assets/index-abc.js", headers={"Accept-Encoding": "identity"})
        assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) == len(js)
        api = c.get("/health")
        assert api.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in api.headers["content-security-policy"]


def test_files_are_compressed_on_first_request_not_at_start(tmp_path: Path, monkeypatch) -> None:
    """Building the app compresses nothing (it is on the way to the first token); a file's gzip
    form is made once, by its first request that accepts gzip."""
    import xiaoq.api.web as web

    js = _build(tmp_path)
    made: list[int] = []
    real = gzip.compress

    def counting(data: bytes, *args, **kwargs) -> bytes:
        made.append(len(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(web.gzip, "compress", counting)
    settings = make_settings()
    with TestClient(create_app(settings, FakeEngine(settings), web_dir=tmp_path)) as c:
        wait_ready(c)
        assert made == []
        for _ in range(3):
            r = c.get("/assets/index-abc.js", headers={"Accept-Encoding": "gzip"})
            assert r.headers["content-encoding"] == "gzip" and r.content == js
        assert made == [len(js)]

"""The app serves the built web UI (``api/web.py``) beside the API: UI files need no key, API routes
still do, and API routes win over the UI's catch-all."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from xiaoq.api.app import create_app
from xiaoq.engine.fake import FakeEngine

from tests.api.helpers import make_settings, wait_ready


def test_web_ui_served_next_to_the_api(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>小Q</title>", encoding="utf-8")
    (tmp_path / "assets" / "app-1234.js").write_text("console.log('x');" * 100)
    settings = make_settings(api_key="key")
    with TestClient(create_app(settings, FakeEngine(settings), web_dir=tmp_path)) as c:
        wait_ready(c)
        r = c.get("/")
        assert r.status_code == 200 and "小Q" in r.text and r.headers["cache-control"] == "no-cache"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        r = c.get("/assets/app-1234.js")
        assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
        # The API keeps its key and its routes.
        assert c.post("/chat", json={"prompt": "hi"}).status_code == 401
        assert c.get("/api/config").status_code == 401
        r = c.post("/chat", json={"prompt": "hi"}, headers={"Authorization": "Bearer key"})
        assert r.status_code == 200 and '"done":true' in r.text
        # Not a file of the build: not public, and with the key a JSON 404.
        assert c.get("/secret.txt").status_code == 401
        r = c.get("/secret.txt", headers={"Authorization": "Bearer key"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_no_ui_without_a_build(tmp_path: Path) -> None:
    settings = make_settings()
    with TestClient(create_app(settings, FakeEngine(settings), web_dir=tmp_path)) as c:
        wait_ready(c)
        assert c.get("/").status_code == 404

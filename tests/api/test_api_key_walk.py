"""With an API key, every route of the router needs it: the walk reads ``app.routes``, so a route
added later is covered without touching this test. Only ``GET /health``, the web UI's own files and
the code runner's (its sandbox page, Pyodide's files) are public. A real server: uvicorn on 127.0.0.1, the real engine on the tiny GGUF, a real SQLite
file, the built web UI."""

from __future__ import annotations

import base64
import re
from collections import Counter
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from fastapi import FastAPI

from xiaoq.api.app import create_app
from xiaoq.api.body_limits import flat_routes
from xiaoq.api.web import WEB_DIR, WebUI
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.store import Store

from tests.api.helpers import make_settings
from tests.api.server import serve

KEY = "walk-key-0123456789"
#: Values for path parameters, by name; a route with a new parameter name fails loudly here.
PARAM_VALUES = {
    "conversation_id": "c0ffee", "message_id": "1", "preset_id": "tutor-zh", "model_id": "xiaoq-tiny-qwen2", "path": "no-such-file",
    "name": "default", "job_id": "0123", "chunk_id": "1", "document_id": "1",
}


def endpoints(app: FastAPI) -> list[tuple[str, str]]:
    """(method, concrete path) for every method of every route (HEAD is GET's twin)."""
    out = []
    for route in flat_routes(app.routes):
        assert route.path, f"a route without a path: {route!r}: extend the walk"
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PARAM_VALUES[m.group(1)], route.path)
        out += [(method, path) for method in sorted(route.methods or {"GET"})]
    return out


@pytest.fixture(scope="module")
def keyed(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FastAPI]]:
    db = tmp_path_factory.mktemp("walk") / "xiaoq.db"
    settings = make_settings(parallel=1, ctx=512, kv_cache_mb=0, kv_disk_mb=0, db=str(db), api_key=KEY)
    store = Store(db)
    app = create_app(settings, LlamaEngine(tiny_gguf, settings), store=store, web_dir=WEB_DIR)
    with serve(app) as url:
        yield url, app
    store.close()


def wrong_credentials() -> list[tuple[dict[str, str], dict[str, str]]]:
    """(headers, query) pairs that are not ``Authorization: Bearer <key>``."""
    basic = base64.b64encode(f"user:{KEY}".encode()).decode()
    return [
        ({}, {}),
        ({"Authorization": "Bearer wrong"}, {}),
        ({"Authorization": f"Bearer {KEY[:-1]}"}, {}),
        ({"Authorization": f"Bearer {KEY}x"}, {}),
        ({"Authorization": "Bearer"}, {}),
        ({"Authorization": f"bearer  {KEY} extra"}, {}),
        ({"Authorization": KEY}, {}),
        ({"Authorization": f"Token {KEY}"}, {}),
        ({"Authorization": f"Basic {basic}"}, {}),
        ({"X-API-Key": KEY}, {}),
        ({"api-key": KEY}, {}),
        ({"Cookie": f"api_key={KEY}"}, {}),
        ({}, {"api_key": KEY}),
        ({}, {"key": KEY}),
    ]


def test_every_route_needs_the_key(keyed: tuple[str, FastAPI]) -> None:
    url, app = keyed
    walked = endpoints(app)
    # The code runner's sandbox page and Pyodide's index are public like the UI (the sandbox cannot
    # send a key); /pyodide/<name> is public only for Pyodide's own file names.
    public = {("GET", "/health"), ("HEAD", "/health"), ("GET", "/runner"), ("GET", "/pyodide/index.json")}
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=url, timeout=30) as client:
        for method, path in walked:
            if (method, path) in public:
                continue
            for headers, params in wrong_credentials():
                r = client.request(method, path, headers={**headers, "content-type": "application/json"}, params=params, content=b"{}")
                statuses[r.status_code] += 1
                assert r.status_code == 401, (method, path, headers, params, r.status_code, r.text)
                if method != "HEAD":
                    assert r.json()["error"]["code"] == "invalid_api_key"
                assert r.headers["www-authenticate"] == "Bearer"
            # With the key the route itself answers (whatever it says about the dummy values).
            r = client.request(method, path, headers={"Authorization": f"Bearer {KEY}", "content-type": "application/json"}, content=b"{}")
            statuses[r.status_code] += 1
            assert r.status_code != 401, (method, path, r.text)
    tried = sum(statuses.values())
    print(f"key walk: {len(flat_routes(app.routes))} routes, {len(walked)} method+path pairs, {tried} requests, statuses {dict(sorted(statuses.items()))}")
    assert statuses[401] == len(set(walked) - public) * len(wrong_credentials())


def test_only_health_and_the_ui_files_are_public(keyed: tuple[str, FastAPI]) -> None:
    url, _ = keyed
    r = httpx.get(url + "/health")
    assert r.status_code in (200, 503) and set(r.json()) == {"status"}
    ui_files = sorted(WebUI(WEB_DIR).files)
    assert "/index.html" in ui_files
    for path in ["/", *ui_files]:
        r = httpx.get(url + path)
        assert r.status_code == 200, (path, r.status_code)
    for method in ("POST", "PATCH", "DELETE"):  # public means read-only
        r = httpx.request(method, url + "/index.html")
        assert r.status_code == 401, (method, r.status_code)
    for path in ["/no-such-file", "/docs", "/openapi.json", "/metrics", "/api/config"]:
        assert httpx.get(url + path).status_code == 401, path
    print(f"public without the key: /health and {len(ui_files)} UI files")

"""A web page cannot reach XiaoQ through the user's browser: DNS rebinding (a foreign ``Host``) and
cross-site requests (a foreign ``Origin``, a form's content type) neither read nor change anything.

A real server: uvicorn on 127.0.0.1, the real llama.cpp engine on the tiny GGUF, a real SQLite
file, default settings (no API key) plus one listed host pattern and one listed origin."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from xiaoq.api.app import create_app
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.store import Store

from tests.api.helpers import make_settings
from tests.api.server import serve, wait_health

LISTED_ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Store]]:
    db = tmp_path_factory.mktemp("guard") / "xiaoq.db"
    settings = make_settings(
        parallel=1, ctx=512, kv_cache_mb=0, kv_disk_mb=0, db=str(db), allowed_hosts=["xiaoq.test", "*.corp.example"], allowed_origins=[LISTED_ORIGIN]
    )
    store = Store(db)
    with serve(create_app(settings, LlamaEngine(tiny_gguf, settings), store=store, web_dir=None)) as url:
        wait_health(url)
        yield url, int(url.rsplit(":", 1)[1]), store
    store.close()


def request(url: str, method: str, path: str, **headers: str) -> httpx.Response:
    content = headers.pop("body", None)
    return httpx.request(method, url + path, headers=headers, content=content, timeout=30)


def count(url: str) -> int:
    return len(httpx.get(url + "/api/conversations", params={"limit": 200}).json()["data"])


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == code and err["message"], err
    return err


REBINDING_HOSTS = [
    "rebind.attacker.example:{port}",
    "attacker.example",
    "127.0.0.1.nip.io:{port}",
    "localhost.attacker.example:{port}",
    "xiaoq.test.attacker.example",
    "corp.example",  # *.corp.example lists subdomains only
    "2130706433:{port}",  # 127.0.0.1 as a number: browsers send the dotted form, so this came from a name
    "",
    "bad host:{port}",
]


def test_a_rebound_host_is_refused_on_every_route(server: tuple[str, int, Store]) -> None:
    url, port, _ = server
    tried = 0
    for host in REBINDING_HOSTS:
        for method, path in [("GET", "/api/conversations"), ("GET", "/health"), ("GET", "/v1/models"), ("POST", "/api/conversations"), ("GET", "/metrics")]:
            r = request(url, method, path, Host=host.format(port=port), **{"content-type": "application/json"})
            err = assert_error(r, 400, "invalid_host")
            assert "--allowed-hosts" in err["message"]
            tried += 1
    print(f"rebinding Host headers: {tried} requests, all 400 invalid_host")


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST.:{port}", "app.localhost:{port}", "[::1]:{port}", "10.0.0.7", "xiaoq.test:{port}", "a.corp.example"],
)
def test_ip_literals_loopback_names_and_listed_hosts_are_served(server: tuple[str, int, Store], host: str) -> None:
    url, port, _ = server
    r = request(url, "GET", "/api/conversations", Host=host.format(port=port))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/conversations"), ("PATCH", "/api/conversations/{cid}"), ("DELETE", "/api/conversations/{cid}"), ("POST", "/chat"), ("POST", "/api/conversations/{cid}/stop")],
)
def test_a_foreign_origin_cannot_change_anything(server: tuple[str, int, Store], method: str, path: str) -> None:
    url, port, store = server
    cid = httpx.post(url + "/api/conversations", json={"title": "keep"}).json()["id"]
    before = count(url)
    origins = ["http://evil.example", "null", f"http://127.0.0.1:{port + 1}", f"http://localhost:{port}", f"https://127.0.0.1:{port}x", "file://"]
    body = b'{"title": "owned", "prompt": "hi", "max_tokens": 1}' if method != "DELETE" else None
    for origin in origins:
        r = request(url, method, path.format(cid=cid), Origin=origin, body=body, **{"content-type": "application/json"})
        err = assert_error(r, 403, "invalid_origin")
        assert "--allowed-origins" in err["message"]
        assert "access-control-allow-origin" not in r.headers
    # No Origin, but the browser says the request is cross-site (Fetch Metadata).
    r = request(url, method, path.format(cid=cid), body=body, **{"content-type": "application/json", "sec-fetch-site": "cross-site"})
    assert_error(r, 403, "invalid_origin")
    assert count(url) == before
    assert httpx.get(f"{url}/api/conversations/{cid}").json()["title"] == "keep"


def test_the_issue_reproduction_no_longer_creates_a_conversation(server: tuple[str, int, Store]) -> None:
    url, _, _ = server
    before = count(url)
    # curl -X POST -H 'Origin: http://evil.example' -H 'Content-Type: text/plain' .../api/conversations -d ''
    r = request(url, "POST", "/api/conversations", Origin="http://evil.example", body=b"", **{"content-type": "text/plain"})
    assert r.status_code == 403, r.text
    assert count(url) == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain;charset=UTF-8"])
@pytest.mark.parametrize(("path", "body"), [("/api/conversations", b""), ("/api/conversations", b'{"title": "t"}'), ("/chat", b'{"prompt": "hi", "max_tokens": 1}')])
def test_form_content_types_are_refused_even_without_origin(server: tuple[str, int, Store], content_type: str, path: str, body: bytes) -> None:
    """A cross-site form sends these types without a preflight; an old browser may omit Origin."""
    url, _, _ = server
    before = count(url)
    err = assert_error(request(url, "POST", path, body=body, **{"content-type": content_type}), 415, "unsupported_media_type")
    assert "application/json" in err["message"]
    assert count(url) == before


def test_same_origin_listed_origin_and_no_origin_are_allowed(server: tuple[str, int, Store]) -> None:
    url, port, _ = server
    json_type = {"content-type": "application/json"}
    for headers in [{"Origin": f"http://127.0.0.1:{port}"}, {"Origin": LISTED_ORIGIN}, {}]:
        r = request(url, "POST", "/api/conversations", body=b"{}", **headers, **json_type)
        assert r.status_code == 201, r.text
    r = request(url, "POST", "/api/conversations", Origin=LISTED_ORIGIN, body=b"{}", **json_type)
    assert r.headers["access-control-allow-origin"] == LISTED_ORIGIN
    assert "origin" in r.headers["vary"].lower()
    r = request(url, "POST", "/api/conversations", Host=f"localhost:{port}", Origin=f"http://localhost:{port}", body=b"", **json_type)
    assert r.status_code == 201, r.text
    r = request(url, "POST", "/api/conversations")  # curl -X POST: no body, no type
    assert r.status_code == 201, r.text


def test_no_cors_headers_for_foreign_origins_and_never_a_wildcard(server: tuple[str, int, Store]) -> None:
    url, port, _ = server
    seen: list[httpx.Response] = []
    for origin in ["http://evil.example", "null", f"http://127.0.0.1:{port}"]:
        seen.append(request(url, "GET", "/api/conversations", Origin=origin))
        seen.append(request(url, "OPTIONS", "/api/conversations", Origin=origin, **{"access-control-request-method": "POST"}))
        for r in seen[-2:]:
            assert not any(name.startswith("access-control-") for name in r.headers), dict(r.headers)
    preflight = request(url, "OPTIONS", "/api/conversations", Origin=LISTED_ORIGIN, **{"access-control-request-method": "POST"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == LISTED_ORIGIN
    seen.append(preflight)
    assert all(r.headers.get("access-control-allow-origin") != "*" for r in seen)

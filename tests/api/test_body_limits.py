"""Request bodies are limited per route while they stream in: JSON routes by ``--max-body-bytes``,
routes marked ``UPLOAD_BODY`` (documents, audio) by ``--max-upload-mb`` and only as multipart.
The upload route here is the test's own, registered the way a real one will be."""

from __future__ import annotations

from typing import Any, Iterator

import httpx
import pytest
from fastapi import FastAPI, Request

from xiaoq.api.app import create_app
from xiaoq.api.body_limits import UPLOAD_BODY
from xiaoq.engine.fake import FakeEngine

from tests.api.helpers import make_settings
from tests.api.server import serve

MiB = 1024 * 1024


def upload_app() -> FastAPI:
    settings = make_settings(max_body_bytes=64 * 1024, max_upload_mb=2)
    app = create_app(settings, FakeEngine(settings), web_dir=None)

    @app.post("/api/test-upload", openapi_extra=UPLOAD_BODY)
    async def upload(request: Request) -> dict[str, Any]:
        form = await request.form()
        sizes = {name: len(await item.read()) for name, item in form.items() if not isinstance(item, str)}
        return {"sizes": sizes}

    return app


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(upload_app()) as base:
        yield base


def error_code(r: httpx.Response) -> str:
    return r.json()["error"]["code"]


def chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    """A body with no Content-Length (chunked): only counting while it streams can stop it."""
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b" " * n


def test_an_upload_route_takes_files_up_to_its_own_limit(url: str) -> None:
    r = httpx.post(url + "/api/test-upload", files={"doc": ("a.txt", b"x" * (MiB + MiB // 2))}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"sizes": {"doc": MiB + MiB // 2}}  # over the JSON limit, under the upload one
    r = httpx.post(url + "/api/test-upload", files={"doc": ("a.txt", b"x" * (3 * MiB))}, timeout=30)
    assert r.status_code == 413 and error_code(r) == "payload_too_large"


def test_a_chunked_upload_is_cut_off_while_streaming(url: str) -> None:
    boundary = "b0undary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="doc"; filename="a.bin"\r\n\r\n'.encode()

    def body() -> Iterator[bytes]:
        yield head
        yield from chunks(8 * MiB)

    try:
        r = httpx.post(url + "/api/test-upload", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}, timeout=30)
    except httpx.TransportError:  # the server may close before the client is done sending
        return
    assert r.status_code == 413 and error_code(r) == "payload_too_large"


def test_json_routes_keep_the_json_limit(url: str) -> None:
    r = httpx.post(url + "/chat", content=b'{"prompt": "' + b"x" * (100 * 1024) + b'"}', headers={"content-type": "application/json"})
    assert r.status_code == 413 and error_code(r) == "payload_too_large"
    r = httpx.post(url + "/chat", content=chunks(200 * 1024), headers={"content-type": "application/json"})
    assert r.status_code == 413 and error_code(r) == "payload_too_large"


def test_each_route_takes_only_its_own_content_type(url: str) -> None:
    r = httpx.post(url + "/chat", files={"doc": ("a.txt", b"hi")})
    assert r.status_code == 415 and error_code(r) == "unsupported_media_type"
    r = httpx.post(url + "/api/test-upload", json={"doc": "hi"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]["message"]


def test_the_audio_upload_route_is_marked_and_json_routes_are_not() -> None:
    from xiaoq.api.body_limits import is_upload_route

    app = upload_app()

    def scope(path: str) -> dict[str, Any]:
        return {"type": "http", "method": "POST", "path": path, "root_path": "", "headers": [], "query_string": b""}

    assert is_upload_route(app.routes, scope("/v1/audio/transcriptions"))
    assert is_upload_route(app.routes, scope("/api/test-upload"))
    assert not any(is_upload_route(app.routes, scope(p)) for p in ["/chat", "/v1/chat/completions", "/v1/audio/speech", "/api/conversations"])

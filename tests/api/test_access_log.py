"""Request ids and the access log: the id header on every response, one log line per request with
that id, JSON lines when asked, and no user text (prompts, answers, query strings) in the log."""

from __future__ import annotations

import io
import json
import logging
import uuid
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from xiaoq.logs import setup_logging

from tests.api.helpers import wait_ready

MARKER = "紫色长颈鹿在唱歌"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """setup_logging changes process-wide loggers: put them back for the other tests."""
    names = ("xiaoq", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {n: (logging.getLogger(n).level, logging.getLogger(n).propagate, list(logging.getLogger(n).handlers), logging.getLogger(n).disabled) for n in names}
    yield
    for n, (level, propagate, handlers, disabled) in saved.items():
        logger = logging.getLogger(n)
        logger.setLevel(level)
        logger.propagate, logger.handlers[:], logger.disabled = propagate, handlers, disabled


@pytest.fixture
def json_log() -> io.StringIO:
    out = io.StringIO()
    setup_logging("info", "json", stream=out)
    return out


def access_lines(out: io.StringIO) -> list[dict]:
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return [line for line in lines if line["logger"] == "xiaoq.access"]


def test_every_response_has_a_fresh_request_id(client: TestClient) -> None:
    ids = {client.get("/health").headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3 and all(str(uuid.UUID(i)) == i for i in ids)


def test_a_sane_incoming_id_is_kept_an_insane_one_replaced(client: TestClient) -> None:
    assert client.get("/health", headers={"X-Request-Id": "lb-7f3a.42:x"}).headers["x-request-id"] == "lb-7f3a.42:x"
    for bad in ("a" * 200, "<script>", "two words", ""):
        got = client.get("/health", headers={"X-Request-Id": bad}).headers["x-request-id"]
        assert got != bad and str(uuid.UUID(got)) == got


def test_refusals_carry_the_id_too(app_factory) -> None:
    app, _ = app_factory(api_key="k", max_body_bytes=2048)
    with TestClient(app) as c:
        wait_ready(c)
        denied = c.get("/v1/models", headers={"X-Request-Id": "r1"})
        too_big = c.post("/chat", content=b"x" * 5000, headers={"Authorization": "Bearer k", "X-Request-Id": "r2"})
    assert (denied.status_code, denied.headers["x-request-id"]) == (401, "r1")
    assert (too_big.status_code, too_big.headers["x-request-id"]) == (413, "r2")


def test_one_json_access_line_per_request_without_user_text(client: TestClient, json_log: io.StringIO) -> None:
    r = client.post("/chat", json={"prompt": MARKER, "max_tokens": 16}, headers={"X-Request-Id": "chat-1"})
    assert r.status_code == 200 and '"token":"紫"' in r.text  # the fake engine echoed the prompt
    client.get(f"/v1/models?q={MARKER}")
    lines = access_lines(json_log)
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [("POST", "/chat", 200), ("GET", "/v1/models", 200)]
    chat = lines[0]
    assert chat["request_id"] == "chat-1" and chat["completed"] is True and chat["bytes"] == len(r.content)
    assert chat["duration_ms"] >= 0 and chat["client"]
    assert MARKER not in json_log.getvalue() and MARKER[:3] not in json_log.getvalue()


def test_text_lines_stay_one_line(client: TestClient) -> None:
    out = io.StringIO()
    setup_logging("info", "text", stream=out)
    client.get("/no%0d%0aFAKE 200/here", headers={"X-Request-Id": "t-1"})
    logging.getLogger("xiaoq.api").warning("title was %s", "a\r\nINFO forged line")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "[t-1]" in lines[0] and '"GET /no\\r\\nFAKE 200/here" 404' in lines[0]
    assert lines[1].endswith("title was a\\r\\nINFO forged line")


def test_probes_are_debug_lines(client: TestClient) -> None:
    out = io.StringIO()
    setup_logging("info", "text", stream=out)
    client.get("/health")
    assert out.getvalue() == ""
    setup_logging("debug", "text", stream=out)
    client.get("/health")
    assert '"GET /health" 200' in out.getvalue()


def test_log_level_filters(client: TestClient) -> None:
    out = io.StringIO()
    setup_logging("warning", "text", stream=out)
    client.get("/v1/models")
    logging.getLogger("xiaoq.api").warning("kept")
    assert out.getvalue().count("\n") == 1 and "kept" in out.getvalue()

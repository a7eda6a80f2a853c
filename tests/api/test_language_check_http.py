"""The language check over the REAL llama.cpp engine (tiny generated GGUF) behind a real uvicorn
server, through a stored conversation: the tiny model's random weights write Latin-letter gibberish,
so a Chinese question's reply starts in the wrong language, is dropped unseen and generated again
with the firmer line; what is streamed and stored is exactly the retry's text (the same reply a
conversation gets whose system prompt *is* the firmer line), and /metrics counts the retry."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from xiaoq.api.app import create_app
from xiaoq.chat import language_check
from xiaoq.config import DEFAULT_SYSTEM_PROMPT, default_system_prompt
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.types import ChatMessage, GenerationRequest
from xiaoq.store import Store

from tests.api.helpers import make_settings, parse_sse
from tests.api.server import serve, wait_health

QUESTION = "天空为什么是蓝色的？"
SAMPLING = {"temperature": 0.8, "seed": 1, "max_tokens": 40}


@pytest.fixture(scope="module")
def url(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("language") / "xiaoq.db"
    settings = make_settings(ctx=2048, max_tokens=512, parallel=1, kv_cache_mb=16, db=str(db), system_prompt=DEFAULT_SYSTEM_PROMPT)
    store = Store(db)
    with serve(create_app(settings, LlamaEngine(tiny_gguf, settings), store=store, web_dir=None)) as base:
        wait_health(base)
        yield base
    store.close()


def reply(url: str, **conversation: Any) -> tuple[str, str, dict]:
    """Streamed text, stored text and the done event of one turn in a new conversation."""
    with httpx.Client(base_url=url, timeout=120) as c:
        cid = c.post("/api/conversations", json=conversation).json()["id"]
        events = parse_sse(c.post(f"/api/conversations/{cid}/messages", json={"content": QUESTION, **SAMPLING}).text)
        stored = c.get(f"/api/conversations/{cid}").json()["messages"][-1]["content"]
    return "".join(e.get("token", "") for e in events), stored, events[-1]


def retries(url: str) -> int:
    found = re.search(r"^xiaoq_http_language_retries_total (\d+)$", httpx.get(url + "/metrics").text, re.M)
    assert found, "the counter is missing from /metrics"
    return int(found.group(1))


def test_a_wrong_language_start_is_regenerated_and_only_the_retry_is_streamed_and_stored(url: str) -> None:
    first, _, _ = reply(url, settings={"language_check": False})
    before = retries(url)
    streamed, stored, done = reply(url)
    assert retries(url) == before + 1
    assert done["finish_reason"] == "length"
    assert streamed == stored
    original = [ChatMessage(role="system", content=default_system_prompt(DEFAULT_SYSTEM_PROMPT, QUESTION)), ChatMessage(role="user", content=QUESTION)]
    firmer = language_check.steered(GenerationRequest(messages=original), "zh").messages[0]["content"]
    expected, _, _ = reply(url, system_prompt=firmer, settings={"language_check": False})
    assert streamed == expected and streamed != first

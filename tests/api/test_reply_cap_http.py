"""The default reply cap over the REAL llama.cpp engine (tiny generated GGUF) behind a real uvicorn
server, with the product's default context and cap: a reply whose request names no ``max_tokens``
runs to the default cap (the tiny model's random weights never end on their own), on the OpenAI
route and in a stored conversation, and the conversation's earlier turns still fit the 4096-token
context beside that reserve (kept verbatim, none summarized)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import pytest

from xiaoq.api.app import create_app
from xiaoq.config import Settings
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.store import Store

from tests.api.helpers import make_settings, parse_sse
from tests.api.server import serve, wait_health

#: The default cap: a list of ten items with a sentence or two each runs past 512 tokens on the
#: 0.5B model (eval/quality.py's length-cap hits); the loop guard, not the cap, ends runaways.
DEFAULT_REPLY_TOKENS = 1024
EARLIER_TURNS = 4
EARLIER_REPLY_TOKENS = 200


@pytest.fixture(scope="module")
def url(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("cap") / "xiaoq.db"
    settings = make_settings(parallel=1, kv_cache_mb=16, db=str(db))
    assert settings.ctx == Settings.model_fields["ctx"].default == 4096
    store = Store(db)
    with serve(create_app(settings, LlamaEngine(tiny_gguf, settings), store=store, web_dir=None)) as base:
        wait_health(base)
        yield base
    store.close()


def test_the_ui_is_told_the_default_cap(url: str) -> None:
    assert httpx.get(url + "/api/config").json()["default_max_tokens"] == DEFAULT_REPLY_TOKENS


def test_openai_reply_without_max_tokens_runs_to_the_default_cap(url: str) -> None:
    body = {"model": "x", "messages": [{"role": "user", "content": "List ten things to pack."}], "temperature": 0}
    done = httpx.post(url + "/v1/chat/completions", json=body, timeout=300).json()
    assert done["choices"][0]["finish_reason"] == "length"
    assert done["usage"]["completion_tokens"] == DEFAULT_REPLY_TOKENS


def test_conversation_keeps_its_history_beside_the_default_reply_reserve(url: str) -> None:
    with httpx.Client(base_url=url, timeout=300) as c:
        cid = c.post("/api/conversations", json={}).json()["id"]
        for i in range(EARLIER_TURNS):
            turn = {"content": f"Question {i}: what should I pack?", "max_tokens": EARLIER_REPLY_TOKENS, "temperature": 0}
            assert parse_sse(c.post(f"/api/conversations/{cid}/messages", json=turn).text)[-1]["finish_reason"] == "length"
        done = parse_sse(c.post(f"/api/conversations/{cid}/messages", json={"content": "And for a week?", "temperature": 0}).text)[-1]
    assert done["finish_reason"] == "length" and done["usage"]["completion_tokens"] == DEFAULT_REPLY_TOKENS
    budget = done["budget"]
    assert budget["turns_total"] == budget["turns_kept"] == EARLIER_TURNS and budget["turns_summarized"] == 0
    assert budget["prompt_tokens"] > EARLIER_TURNS * EARLIER_REPLY_TOKENS

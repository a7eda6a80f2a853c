"""The loop guard at the HTTP edge (fake engine, which runs the real guard over its characters):
/chat ends with ``repetition`` and the length of the text to keep, the OpenAI API says ``stop``
with ``native_finish_reason: "repetition"`` (its finish reasons are a fixed set) and returns the trimmed text
when it is not streaming. On by default, off per request or by the setting."""

from __future__ import annotations

import json

from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from xiaoq.config import Settings

from tests.api.helpers import parse_sse, wait_ready

HEAD = "Here is the answer.\n"
LINE = "The same line comes again and again.\n"
LOOPED = HEAD + LINE * 12


@pytest.fixture
def guarded(app_factory):
    app, engine = app_factory(loop_guard=True)
    return app, engine


@pytest.fixture
def client(guarded) -> Iterator[TestClient]:
    with TestClient(guarded[0]) as c:
        wait_ready(c)
        yield c


@pytest.fixture
def engine(guarded):
    return guarded[1]


def test_the_guard_is_on_by_default() -> None:
    assert Settings.model_fields["loop_guard"].default is True


def chat(c: TestClient, **fields) -> tuple[str, dict]:
    events = parse_sse(c.post("/chat", json={"prompt": "q", **fields}).text)
    return "".join(e.get("token", "") for e in events), events[-1]


def test_chat_reply_that_loops_ends_with_repetition_and_text_length(client: TestClient, engine) -> None:
    engine.enqueue(LOOPED)
    streamed, done = chat(client)
    assert done["finish_reason"] == "repetition"
    assert streamed[: done["text_length"]] == HEAD + LINE
    assert len(streamed) < len(LOOPED)  # stopped, not run to the end
    assert engine.requests[-1].sampling.loop_guard is True


def test_per_request_and_setting_switch_it(app_factory) -> None:
    app, engine = app_factory(loop_guard=False)
    with TestClient(app) as c:
        wait_ready(c)
        engine.enqueue(LOOPED)
        streamed, done = chat(c)
        assert done["finish_reason"] == "stop" and "text_length" not in done and streamed == LOOPED
        engine.enqueue(LOOPED)
        _, done = chat(c, loop_guard=True)
        assert done["finish_reason"] == "repetition"


def test_ordinary_reply_has_no_text_length(client: TestClient, engine) -> None:
    engine.enqueue("| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n")
    _, done = chat(client)
    assert done["finish_reason"] == "stop" and "text_length" not in done


def test_openai_says_stop_with_native_finish_reason_and_trims_a_whole_reply(client: TestClient, engine) -> None:
    engine.enqueue(LOOPED)
    body = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "q"}]}).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["native_finish_reason"] == "repetition"
    assert choice["message"]["content"] == HEAD + LINE


def test_openai_stream_last_chunk_carries_the_text_length(client: TestClient, engine) -> None:
    engine.enqueue(LOOPED)
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "q"}], "stream": True})
    chunks = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    last = chunks[-1]["choices"][0]
    assert last["finish_reason"] == "stop" and last["native_finish_reason"] == "repetition"
    assert text[: last["text_length"]] == HEAD + LINE
    engine.enqueue(LOOPED)
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "q"}], "loop_guard": False})
    assert r.json()["choices"][0]["message"]["content"] == LOOPED and "native_finish_reason" not in r.json()["choices"][0]

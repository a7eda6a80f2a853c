"""``POST /api/conversations/{id}/continue``: the model goes on with its own last reply, appended to
the SAME stored message, with the same SSE events as a turn. A continue that does not complete
(stopped, failed, refused as busy) leaves the stored reply exactly as it was.

Fake engine (the real loop guard over characters) for the exact shapes; the real llama.cpp engine
on the tiny GGUF over a real uvicorn socket for the path that matters: a reply cut by
``max_tokens`` is continued in place, and a busy server refuses with 503 and changes nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from xiaoq.engine.fake import FakeReply
from tests.api.helpers import parse_sse
from tests.api.server import serve, wait_health
from tests.api.test_conversations_api import build, client, engine, new_conv, send, store, text_of  # noqa: F401
from tests.api.test_conversations_real import real_app


@pytest.fixture
def app_engine(store):  # noqa: F811
    return build(store, loop_guard=True)


HEAD = "先写一段开头。\n"
LINE = "同样的句子接连出现了好几遍。\n"
LOOPED = HEAD + LINE * 12


def messages_of(client: TestClient, cid: str) -> list[dict[str, Any]]:
    return client.get(f"/api/conversations/{cid}").json()["messages"]


def cont(client: TestClient, cid: str, **body: Any) -> httpx.Response:
    return client.post(f"/api/conversations/{cid}/continue", json=body)


def test_continue_appends_to_the_same_reply_from_where_it_stopped(client: TestClient, engine) -> None:  # noqa: F811
    cid = new_conv(client)["id"]
    engine.enqueue(LOOPED)
    reply_id = send(client, cid, "问题")[-1]["message_id"]
    engine.enqueue("然后是新的一段内容。")
    r = cont(client, cid)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
    events = parse_sse(r.text)
    assert events[0] == {"start": True, "user_message_id": messages_of(client, cid)[0]["id"], "message_id": reply_id}
    assert events[-1]["done"] is True and events[-1]["finish_reason"] == "stop" and events[-1]["message_id"] == reply_id
    assert text_of(events) == "然后是新的一段内容。"
    req = engine.requests[-1]
    assert req.continue_last is True and req.messages[-1] == {"role": "assistant", "content": HEAD + LINE}
    stored = messages_of(client, cid)
    assert [m["id"] for m in stored][-1] == reply_id and len(stored) == 2
    assert stored[-1]["content"] == HEAD + LINE + "然后是新的一段内容。"
    assert stored[-1]["status"] == "complete" and stored[-1]["finish_reason"] == "stop"


def test_a_continued_reply_cut_again_by_max_tokens_says_length(client: TestClient, engine) -> None:  # noqa: F811
    cid = new_conv(client)["id"]
    engine.enqueue("一二三四五六七八九十")
    first = send(client, cid, "数数", max_tokens=4)
    assert first[-1]["finish_reason"] == "length"
    engine.enqueue("五六七八九十")
    events = parse_sse(cont(client, cid, max_tokens=3).text)
    assert events[-1]["finish_reason"] == "length" and text_of(events) == "五六七"
    last = messages_of(client, cid)[-1]
    assert last["content"] == "一二三四五六七" and last["finish_reason"] == "length"
    assert last["completion_tokens"] == 7  # the whole reply's tokens, not only the continuation's


def test_a_failed_continue_leaves_the_stored_reply_as_it_was(client: TestClient, engine) -> None:  # noqa: F811
    cid = new_conv(client)["id"]
    engine.enqueue("一二三四五六")
    send(client, cid, "数数", max_tokens=4)
    before = messages_of(client, cid)
    engine.enqueue(FakeReply("七八", error="the model fell over"))
    events = parse_sse(cont(client, cid).text)
    assert events[-1]["error"]["message"] and events[-1]["message_id"] == before[-1]["id"]
    assert messages_of(client, cid) == before


def test_a_stopped_continue_leaves_the_stored_reply_as_it_was(store) -> None:  # noqa: F811
    app, engine = build(store, engine_kwargs={"delay": 0.02})
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        wait_health(url)
        cid = http.post("/api/conversations", json={}).json()["id"]
        engine.enqueue("一二三四五六")
        parse_sse(http.post(f"/api/conversations/{cid}/messages", json={"content": "数数", "max_tokens": 4}).text)
        before = http.get(f"/api/conversations/{cid}").json()["messages"]
        engine.enqueue("续写的文字" * 200)
        with http.stream("POST", f"/api/conversations/{cid}/continue", json={}) as held:
            lines = (json.loads(line[6:]) for line in held.iter_lines() if line.startswith("data: "))
            assert next(lines)["start"] is True
            assert "token" in next(lines) and "token" in next(lines)
            time.sleep(1.2)  # past the writer's save interval
            assert next(lines).get("token")  # a piece after the interval: the row was saved with it
            during = http.get(f"/api/conversations/{cid}").json()["messages"][-1]
            assert during["content"].startswith(before[-1]["content"]) and len(during["content"]) > len(before[-1]["content"])
            busy = http.post(f"/api/conversations/{cid}/continue", json={})
            assert http.post(f"/api/conversations/{cid}/stop").json() == {"stopped": True}
            rest = list(lines)
        assert rest[-1]["finish_reason"] == "cancelled"
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "conversation_busy"
        assert http.get(f"/api/conversations/{cid}").json()["messages"] == before


def test_continue_needs_a_reply_to_continue(client: TestClient, engine) -> None:  # noqa: F811
    cid = new_conv(client)["id"]
    r = cont(client, cid)
    assert r.status_code == 400 and set(r.json()) == {"error"} and r.json()["error"]["code"] == "nothing_to_continue"
    assert cont(client, "nope").status_code == 404
    bad = cont(client, cid, max_tokens="many")
    assert bad.status_code == 422 and set(bad.json()) == {"error"}


def test_continue_over_the_real_engine_and_a_busy_server(tiny_gguf: Path, tmp_path: Path) -> None:
    app, store = real_app(tiny_gguf, tmp_path / "cont.db", parallel=1, queue=0, threads=1, max_tokens=4000)
    try:
        with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
            wait_health(url)
            a = http.post("/api/conversations", json={}).json()["id"]
            b = http.post("/api/conversations", json={}).json()["id"]
            first = parse_sse(http.post(f"/api/conversations/{a}/messages", json={"content": "你好", "max_tokens": 6}).text)
            assert first[-1]["finish_reason"] == "length"
            before = http.get(f"/api/conversations/{a}").json()["messages"]
            with http.stream("POST", f"/api/conversations/{b}/messages", json={"content": "讲一个很长的故事", "max_tokens": 3500}) as held:
                lines = (json.loads(line[6:]) for line in held.iter_lines() if line.startswith("data: "))
                assert next(lines)["start"] is True and "token" in next(lines)  # the only slot is busy
                busy = http.post(f"/api/conversations/{a}/continue", json={})
                during = http.get(f"/api/conversations/{a}").json()["messages"]
                assert http.post(f"/api/conversations/{b}/stop").json() == {"stopped": True}
            assert busy.status_code == 503 and busy.json()["error"]["type"] == "server_busy", busy.text
            assert during == before
            events = parse_sse(http.post(f"/api/conversations/{a}/continue", json={"max_tokens": 5}).text)
            added = "".join(e.get("token", "") for e in events)
            print(f"continued {len(added)} chars; prompt {first[-1]['usage']['prompt_tokens']} -> {events[-1]['usage']['prompt_tokens']} tokens")
            assert events[0]["message_id"] == before[-1]["id"] and events[-1]["finish_reason"] == "length"
            # The prompt now holds the reply so far, left open (no end-of-turn marker after it).
            assert events[-1]["usage"]["prompt_tokens"] > first[-1]["usage"]["prompt_tokens"] + 3
            after = http.get(f"/api/conversations/{a}").json()["messages"]
            assert [m["id"] for m in after] == [m["id"] for m in before]
            assert after[-1]["content"] == before[-1]["content"] + added and added
            assert after[-1]["status"] == "complete" and after[-1]["finish_reason"] == "length"
            assert after[-1]["completion_tokens"] == 11
    finally:
        store.close()

"""The conversations API over the FakeEngine and a REAL SQLite file: exact JSON and SSE shapes of
docs/api.md, 404/409/422/503, stop, disconnect, regenerate, edit, export, search, suggestions,
fence repair and shutdown. (The same paths over real llama.cpp: test_conversations_real.py.)"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from xiaoq.api.app import create_app
from xiaoq.engine.fake import FakeEngine, FakeReply
from xiaoq.store import Store

from tests.api.helpers import make_settings, parse_sse, wait_ready
from tests.api.server import serve, wait_health

CONV_KEYS = {"id", "title", "system_prompt", "settings", "kb", "created_at", "updated_at", "message_count"}
MSG_KEYS = {
    "id", "conversation_id", "role", "content", "status", "prompt_tokens", "completion_tokens",
    "cached_tokens", "timings", "budget", "error", "finish_reason", "citations", "retrieval", "created_at", "updated_at",
}
BUDGET_KEYS = {"turns_total", "turns_kept", "turns_summarized", "summary_tokens", "prompt_tokens", "trimmed"}
LONG = "这是一个很长的回答，慢慢地流出来。" * 40


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "conv.db")
    yield s
    s.close()


def build(store: Store, engine_kwargs: dict[str, Any] | None = None, **overrides: Any) -> tuple[FastAPI, FakeEngine]:
    settings = make_settings(**overrides)
    engine = FakeEngine(settings, **(engine_kwargs or {}))
    return create_app(settings, engine, store=store, web_dir=None), engine


@pytest.fixture
def app_engine(store: Store) -> tuple[FastAPI, FakeEngine]:
    return build(store)


@pytest.fixture
def client(app_engine: tuple[FastAPI, FakeEngine]) -> Iterator[TestClient]:
    with TestClient(app_engine[0]) as c:
        wait_ready(c)
        yield c


@pytest.fixture
def engine(app_engine: tuple[FastAPI, FakeEngine]) -> FakeEngine:
    return app_engine[1]


def new_conv(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/api/conversations", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def send(client: TestClient, cid: str, content: str, **extra: Any) -> list[Any]:
    r = client.post(f"/api/conversations/{cid}/messages", json={"content": content, **extra})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return parse_sse(r.text)


def text_of(events: list[Any]) -> str:
    return "".join(e["token"] for e in events if "token" in e)


# ---- CRUD ----------------------------------------------------------------------------------------
def test_create_list_get_patch_delete_shapes(client: TestClient) -> None:
    a = new_conv(client)
    assert set(a) == CONV_KEYS
    assert len(a["id"]) == 32 and a["title"] == "" and a["system_prompt"] is None and a["settings"] == {} and a["message_count"] == 0
    assert a["created_at"].endswith("Z")
    b = new_conv(client, title="冒泡排序", system_prompt="简短回答。", settings={"temperature": 0.2})
    assert (b["title"], b["system_prompt"], b["settings"]) == ("冒泡排序", "简短回答。", {"temperature": 0.2})

    listed = client.get("/api/conversations").json()
    assert list(listed) == ["data"] and [c["id"] for c in listed["data"]] == [b["id"], a["id"]]  # newest first
    assert [c["id"] for c in client.get("/api/conversations?limit=1&offset=1").json()["data"]] == [a["id"]]

    got = client.get(f"/api/conversations/{b['id']}").json()
    assert set(got) == CONV_KEYS | {"messages"} and got["messages"] == []

    patched = client.patch(f"/api/conversations/{b['id']}", json={"title": "新标题"}).json()
    assert (patched["title"], patched["system_prompt"], patched["settings"]) == ("新标题", "简短回答。", {"temperature": 0.2})
    cleared = client.patch(f"/api/conversations/{b['id']}", json={"system_prompt": None, "settings": {}}).json()
    assert cleared["system_prompt"] is None and cleared["settings"] == {} and cleared["title"] == "新标题"

    r = client.delete(f"/api/conversations/{b['id']}")
    assert r.status_code == 204 and r.content == b""
    assert client.get(f"/api/conversations/{b['id']}").status_code == 404


def test_unknown_ids_are_404_json_everywhere(client: TestClient) -> None:
    cid = "0" * 32
    calls = [
        ("GET", f"/api/conversations/{cid}", None),
        ("PATCH", f"/api/conversations/{cid}", {"title": "x"}),
        ("DELETE", f"/api/conversations/{cid}", None),
        ("POST", f"/api/conversations/{cid}/messages", {"content": "hi"}),
        ("POST", f"/api/conversations/{cid}/regenerate", {}),
        ("POST", f"/api/conversations/{cid}/messages/1/edit", {"content": "hi"}),
        ("POST", f"/api/conversations/{cid}/stop", None),
        ("GET", f"/api/conversations/{cid}/export?format=md", None),
    ]
    for method, url, body in calls:
        r = client.request(method, url, json=body)
        assert r.status_code == 404, (method, url, r.status_code, r.text)
        assert r.json()["error"]["code"] == "not_found", r.text
    real = new_conv(client)
    r = client.post(f"/api/conversations/{real['id']}/messages/999999/edit", json={"content": "x"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def test_bad_input_is_4xx_json(client: TestClient) -> None:
    cid = new_conv(client)["id"]
    cases = [
        (f"/api/conversations/{cid}/messages", {"content": ""}, 422, "content"),
        (f"/api/conversations/{cid}/messages", {"content": "hi", "temperature": 5}, 422, "temperature"),
        (f"/api/conversations/{cid}/messages", {"content": "hi", "bogus": 1}, 422, "bogus"),
        (f"/api/conversations/{cid}/messages", {}, 422, "content"),
        ("/api/conversations", {"settings": {"top_p": 0}}, 422, "settings.top_p"),
    ]
    for url, body, status, field in cases:
        r = client.post(url, json=body)
        assert r.status_code == status, (body, r.text)
        assert field in r.json()["error"]["message"], r.text
    r = client.post(f"/api/conversations/{cid}/messages", json={"content": "   "})
    assert r.status_code == 400 and r.json()["error"]["code"] == "empty_content"
    assert client.get(f"/api/conversations/{cid}/export?format=pdf").status_code == 422
    r = client.post(f"/api/conversations/{cid}/regenerate", json={})
    assert r.status_code == 400 and r.json()["error"]["code"] == "nothing_to_regenerate"
    assert client.get(f"/api/conversations/{cid}").json()["messages"] == []  # nothing half-stored


# ---- a turn ------------------------------------------------------------------------------------------
def test_send_streams_start_tokens_done_and_stores_both_messages(client: TestClient, engine: FakeEngine) -> None:
    cid = new_conv(client)["id"]
    engine.enqueue("你好，我是小Q！")
    events = send(client, cid, "帮我写一个冒泡排序的Python函数，并解释原理。")
    start, done = events[0], events[-1]
    assert set(start) == {"start", "user_message_id", "message_id"} and start["start"] is True
    assert text_of(events) == "你好，我是小Q！"
    assert set(done) == {"done", "message_id", "finish_reason", "usage", "timings", "budget"}
    assert done["done"] is True and done["finish_reason"] == "stop" and done["message_id"] == start["message_id"]
    assert done["usage"]["completion_tokens"] == 8
    assert set(done["usage"]["prompt_tokens_details"]) == {"cached_tokens"}
    assert {"ttft_ms", "tokens_per_second"} <= set(done["timings"])
    assert set(done["budget"]) == BUDGET_KEYS

    conv = client.get(f"/api/conversations/{cid}").json()
    assert conv["title"] == "帮我写一个冒泡排序的Python函数…"  # made from the first question at once
    assert conv["message_count"] == 2
    user, reply = conv["messages"]
    assert set(user) == MSG_KEYS and set(reply) == MSG_KEYS
    assert (user["id"], user["role"], user["status"]) == (start["user_message_id"], "user", "complete")
    assert (reply["id"], reply["role"], reply["status"], reply["content"]) == (start["message_id"], "assistant", "complete", "你好，我是小Q！")
    assert reply["completion_tokens"] == 8 and reply["prompt_tokens"] == done["usage"]["prompt_tokens"]
    assert reply["cached_tokens"] == done["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert reply["timings"]["ttft_ms"] == done["timings"]["ttft_ms"] and reply["budget"] == done["budget"]


def test_history_system_prompt_and_settings_reach_the_engine(client: TestClient, engine: FakeEngine) -> None:
    cid = new_conv(client, system_prompt="你是一个海盗。", settings={"temperature": 0.1, "max_tokens": 77})["id"]
    send(client, cid, "我叫李雷")
    send(client, cid, "我叫什么？", top_p=0.5)
    req = engine.requests[-1]
    assert req.messages == [
        {"role": "system", "content": "你是一个海盗。"},
        {"role": "user", "content": "我叫李雷"},
        {"role": "assistant", "content": "我叫李雷"},  # the fake engine echoes
        {"role": "user", "content": "我叫什么？"},
    ]
    assert (req.sampling.temperature, req.sampling.top_p, req.sampling.max_tokens) == (0.1, 0.5, 77)
    # Without its own system prompt a conversation uses the server's.
    cid2 = new_conv(client)["id"]
    send(client, cid2, "hi")
    assert engine.requests[-1].messages[0] == {"role": "system", "content": "SYS"}


def test_cached_tokens_grow_turn_by_turn(client: TestClient) -> None:
    cid = new_conv(client)["id"]
    cached = [send(client, cid, f"第{i}个问题")[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] for i in range(4)]
    assert cached[0] < cached[1] < cached[2] < cached[3], cached


def test_fence_repair_applies_to_stream_and_store(client: TestClient, engine: FakeEngine) -> None:
    cid = new_conv(client)["id"]
    engine.enqueue("代码如下：\n```\ndef add(a, b):\n    return a + b\n```\n好了。")
    events = send(client, cid, "写个加法")
    expected = "代码如下：\n```python\ndef add(a, b):\n    return a + b\n```\n好了。"
    assert text_of(events) == expected
    assert client.get(f"/api/conversations/{cid}").json()["messages"][-1]["content"] == expected


def test_engine_error_mid_stream_is_an_error_event_and_stored(client: TestClient, engine: FakeEngine) -> None:
    cid = new_conv(client)["id"]
    engine.enqueue(FakeReply("半句", error="llama_decode failed (1)"))
    events = send(client, cid, "hi")
    assert text_of(events) == "半句"
    last = events[-1]
    assert set(last) == {"error", "message_id"} and last["error"]["code"] == "engine_error"
    reply = client.get(f"/api/conversations/{cid}").json()["messages"][-1]
    assert (reply["id"], reply["status"], reply["content"], reply["error"]) == (last["message_id"], "error", "半句", "llama_decode failed (1)")


def test_regenerate_replaces_the_last_reply(client: TestClient, engine: FakeEngine) -> None:
    cid = new_conv(client)["id"]
    engine.enqueue("first answer", "second answer")
    send(client, cid, "question")
    r = client.post(f"/api/conversations/{cid}/regenerate", json={"temperature": 0})
    events = parse_sse(r.text)
    assert text_of(events) == "second answer" and engine.requests[-1].sampling.temperature == 0
    msgs = client.get(f"/api/conversations/{cid}").json()["messages"]
    assert [(m["role"], m["content"]) for m in msgs] == [("user", "question"), ("assistant", "second answer")]
    assert events[0]["user_message_id"] == msgs[0]["id"] and events[-1]["message_id"] == msgs[1]["id"]
    assert engine.requests[-1].messages[-1] == {"role": "user", "content": "question"}


def test_edit_deletes_everything_after_and_answers_again(client: TestClient, engine: FakeEngine) -> None:
    cid = new_conv(client)["id"]
    engine.enqueue("a1", "a2", "a3", "edited answer")
    send(client, cid, "q1")
    first_user = client.get(f"/api/conversations/{cid}").json()["messages"][0]["id"]
    send(client, cid, "q2")
    send(client, cid, "q3")
    r = client.post(f"/api/conversations/{cid}/messages/{first_user}/edit", json={"content": "q1 改过"})
    assert r.status_code == 200
    events = parse_sse(r.text)
    msgs = client.get(f"/api/conversations/{cid}").json()["messages"]
    assert [(m["role"], m["content"]) for m in msgs] == [("user", "q1 改过"), ("assistant", "edited answer")]
    assert events[0]["user_message_id"] == msgs[0]["id"] and events[-1]["message_id"] == msgs[1]["id"]
    assert engine.requests[-1].messages[1:] == [{"role": "user", "content": "q1 改过"}]
    reply_id = msgs[1]["id"]
    r = client.post(f"/api/conversations/{cid}/messages/{reply_id}/edit", json={"content": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "not_a_user_message"


def test_export_md_and_json_and_search_and_suggestions(client: TestClient, engine: FakeEngine) -> None:
    cid = new_conv(client, title="猫")["id"]
    engine.enqueue("豆豆是一只可爱的猫。", "好的。")
    send(client, cid, "我叫李雷，我养了一只叫豆豆的猫")
    send(client, cid, "我养了什么？")

    r = client.get(f"/api/conversations/{cid}/export?format=md")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
    assert r.headers["content-disposition"] == f"attachment; filename=\"xiaoq-{cid[:8]}.md\"; filename*=UTF-8''%E7%8C%AB.md"  # 猫.md
    assert "# 猫" in r.text and "我叫李雷，我养了一只叫豆豆的猫" in r.text and "豆豆是一只可爱的猫。" in r.text
    r = client.get(f"/api/conversations/{cid}/export?format=json")
    assert r.headers["content-type"].startswith("application/json") and ".json" in r.headers["content-disposition"]
    data = r.json()
    assert data["id"] == cid and [m["content"] for m in data["messages"]][:2] == ["我叫李雷，我养了一只叫豆豆的猫", "豆豆是一只可爱的猫。"]

    hits = client.get("/api/search", params={"q": "叫豆豆"}).json()["data"]  # 3 chars: FTS5 trigram
    assert {h["role"] for h in hits} == {"user"} and hits[0]["conversation_id"] == cid and hits[0]["conversation_title"] == "猫"
    assert set(hits[0]) == {"conversation_id", "conversation_title", "message_id", "role", "snippet", "created_at"}
    assert "叫豆豆" in hits[0]["snippet"]
    two = client.get("/api/search", params={"q": "豆豆"}).json()["data"]  # 2 chars: LIKE fallback
    assert len(two) == 2 and [h["role"] for h in two] == ["assistant", "user"]  # newest first
    assert client.get("/api/search", params={"q": "没有这个词"}).json() == {"data": []}

    sugg = client.get("/api/suggestions", params={"q": "我养"}).json()
    assert sugg == {"data": ["我养了什么？", "我叫李雷，我养了一只叫豆豆的猫"]}  # starts-with first
    assert client.get("/api/suggestions", params={"q": ""}).json() == {"data": []}


def test_chat_route_with_conversation_id_records_the_turn(client: TestClient, engine: FakeEngine) -> None:
    cid = new_conv(client)["id"]
    engine.enqueue("记住了。", "你叫李雷。")
    r = client.post("/chat", json={"prompt": "我叫李雷", "conversation_id": cid})
    first = parse_sse(r.text)
    assert all("start" not in e for e in first)  # /chat keeps its classic event shapes
    assert text_of(first) == "记住了。" and first[-1]["done"] is True and "message_id" in first[-1]
    r = client.post("/chat", json={"prompt": "我叫什么？", "conversation_id": cid})
    assert text_of(parse_sse(r.text)) == "你叫李雷。"
    assert engine.requests[-1].messages[1:] == [
        {"role": "user", "content": "我叫李雷"},
        {"role": "assistant", "content": "记住了。"},
        {"role": "user", "content": "我叫什么？"},
    ]
    assert len(client.get(f"/api/conversations/{cid}").json()["messages"]) == 4
    r = client.post("/chat", json={"prompt": "x", "conversation_id": "f" * 32})
    assert r.status_code == 404
    r = client.post("/chat", json={"prompt": "x", "conversation_id": cid, "history": [{"user": "a", "bot": "b"}]})
    assert r.status_code == 400 and "conversation_id" in r.json()["error"]["message"]


def test_busy_engine_is_503_and_the_question_is_not_stored(store: Store) -> None:
    app, engine = build(store, parallel=1, queue=0)
    with TestClient(app) as c:
        wait_ready(c)
        cid = new_conv(c)["id"]
        engine._active = 1  # every slot taken, no waiting room (as if another user were answering)
        r = c.post(f"/api/conversations/{cid}/messages", json={"content": "hi"})
        engine._active = 0
        assert r.status_code == 503 and r.headers["retry-after"] and r.json()["error"]["code"] == "queue_full"
        assert c.get(f"/api/conversations/{cid}").json()["messages"] == []  # a retry will not duplicate it
        assert len(send(c, cid, "hi")) > 2  # and the conversation is not left "busy"


# ---- over a real socket: concurrency, stop, disconnect, shutdown -----------------------------------
def _sse_lines(resp: httpx.Response) -> Iterator[dict]:
    for line in resp.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line[6:])


@contextmanager
def slow_answers(store: Store) -> Iterator[tuple[FastAPI, FakeEngine, httpx.Client, str]]:
    """A real uvicorn server whose fake engine streams a long reply slowly, a client, and a new
    conversation's id."""
    app, engine = build(store, engine_kwargs={"replies": [LONG], "delay": 0.01})
    with serve(app) as url:
        wait_health(url)
        with httpx.Client(base_url=url, timeout=30) as http:
            yield app, engine, http, http.post("/api/conversations", json={}).json()["id"]


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_second_send_while_answering_is_409_and_stop_keeps_partial_reply(store: Store) -> None:
    with slow_answers(store) as (app, _, http, cid):
        with http.stream("POST", f"/api/conversations/{cid}/messages", json={"content": "讲个长故事"}) as resp:
            events = _sse_lines(resp)
            start = next(events)
            got = [next(events)["token"] for _ in range(5)]
            r = http.post(f"/api/conversations/{cid}/messages", json={"content": "再来"})
            assert r.status_code == 409 and r.json()["error"]["code"] == "conversation_busy"
            other = http.post("/api/conversations", json={}).json()["id"]  # other conversations are not blocked
            assert http.post(f"/api/conversations/{other}/stop").json() == {"stopped": False}
            assert http.post(f"/api/conversations/{cid}/stop").json() == {"stopped": True}
            rest = list(events)
        got += [e["token"] for e in rest if "token" in e]
        done = rest[-1]
        assert done["done"] is True and done["finish_reason"] == "cancelled"
        reply = store.get_message(start["message_id"])
        assert reply["status"] == "incomplete" and reply["content"] == "".join(got)
        assert 5 <= len(reply["content"]) < len(LONG)
        msgs = http.get(f"/api/conversations/{cid}").json()["messages"]
        assert [m["content"] for m in msgs][:1] == ["讲个长故事"] and len(msgs) == 2
        assert http.post(f"/api/conversations/{cid}/messages", json={"content": "短的"}).status_code == 200  # free again


def test_client_disconnect_cancels_and_keeps_incomplete_reply(store: Store) -> None:
    with slow_answers(store) as (app, engine, http, cid):
        with http.stream("POST", f"/api/conversations/{cid}/messages", json={"content": "讲个长故事"}) as resp:
            events = _sse_lines(resp)
            start = next(events)
            got = "".join(next(events)["token"] for _ in range(10))
        # leaving the block closed the connection: the reply is finalized and the engine stopped
        _wait(lambda: not app.state.conversations.is_running(cid) and engine.generations[-1].result is not None)
        assert engine.generations[-1].result.finish_reason == "cancelled"
        reply = store.get_message(start["message_id"])
        # stored = what the server sent (the client may have left some of it unread)
        assert reply["status"] == "incomplete" and reply["content"].startswith(got)
        assert len(reply["content"]) < len(LONG)


def test_deleting_a_conversation_while_it_answers_stops_the_reply(store: Store) -> None:
    with slow_answers(store) as (app, _, http, cid):
        with http.stream("POST", f"/api/conversations/{cid}/messages", json={"content": "讲个长故事"}) as resp:
            events = _sse_lines(resp)
            next(events), next(events)
            assert http.delete(f"/api/conversations/{cid}").status_code == 204
            rest = list(events)
        assert rest[-1]["done"] is True and rest[-1]["finish_reason"] == "cancelled"
        assert http.get(f"/api/conversations/{cid}").status_code == 404
        assert store.get_messages(cid) == [] and not app.state.conversations.is_running(cid)


def test_server_shutdown_stores_running_reply_incomplete(store: Store) -> None:
    app, _ = build(store, engine_kwargs={"replies": [LONG], "delay": 0.01})
    result: dict[str, Any] = {}
    with serve(app) as url:
        wait_health(url)
        http = httpx.Client(base_url=url, timeout=30)
        cid = http.post("/api/conversations", json={}).json()["id"]

        def reader() -> None:
            try:
                with http.stream("POST", f"/api/conversations/{cid}/messages", json={"content": "讲个长故事"}) as resp:
                    for event in _sse_lines(resp):
                        result.setdefault("start", event)
                        if "token" in event:
                            result["text"] = result.get("text", "") + event["token"]
            except httpx.HTTPError:
                pass

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        deadline = time.monotonic() + 10
        while len(result.get("text", "")) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        # leaving `serve` shuts uvicorn down while the reply streams
    t.join(10)
    http.close()
    reply = store.get_message(result["start"]["message_id"])
    assert reply["status"] == "incomplete"
    assert 5 <= len(reply["content"]) < len(LONG) and result["text"].startswith(reply["content"])


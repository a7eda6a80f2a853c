"""``POST /chat`` over the fake engine: SSE framing, event shapes, how the request reaches the engine."""

from __future__ import annotations

from fastapi.testclient import TestClient

from xiaoq.chat.prompt import build_messages, data_block
from xiaoq.engine.fake import FakeEngine, FakeReply

from tests.api.helpers import parse_sse, wait_ready


def test_streams_tokens_then_done_with_usage_and_timings(client: TestClient, engine: FakeEngine) -> None:
    engine.enqueue("你好，小Q！")
    r = client.post("/chat", json={"prompt": "你好"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache" and r.headers["x-accel-buffering"] == "no"
    assert '"token":"你"' in r.text  # ensure_ascii=False: Chinese readable on the wire
    events = parse_sse(r.text)
    tokens = [e["token"] for e in events[:-1]]
    assert "".join(tokens) == "你好，小Q！" and len(tokens) == 6
    done = events[-1]
    assert done["done"] is True and done["finish_reason"] == "stop"
    usage = done["usage"]
    assert usage["completion_tokens"] == 6
    assert usage["prompt_tokens"] == engine.count_prompt_tokens(engine.requests[0].messages)
    assert usage["total_tokens"] == usage["prompt_tokens"] + 6
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert set(done["timings"]) >= {"ttft_ms", "prompt_ms", "decode_ms", "queue_ms", "tokens_per_second"}


def test_history_becomes_chat_messages_with_default_and_custom_system(client: TestClient, engine: FakeEngine) -> None:
    history = [{"user": "我叫李雷", "bot": "你好，李雷！"}, {"user": "我养了一只猫", "bot": "真好。"}]
    client.post("/chat", json={"prompt": "我叫什么？", "history": history})
    assert engine.requests[-1].messages == [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "我叫李雷"},
        {"role": "assistant", "content": "你好，李雷！"},
        {"role": "user", "content": "我养了一只猫"},
        {"role": "assistant", "content": "真好。"},
        {"role": "user", "content": "我叫什么？"},
    ]
    client.post("/chat", json={"prompt": "hi", "system": "Be brief."})
    assert engine.requests[-1].messages[0] == {"role": "system", "content": "Be brief."}
    client.post("/chat", json={"prompt": "hi", "system": ""})  # an empty system prompt: none of ours, nor the template's
    assert engine.requests[-1].messages == [{"role": "system", "content": ""}, {"role": "user", "content": "hi"}]


def test_second_turn_reports_cached_prefix(client: TestClient, engine: FakeEngine) -> None:
    first = parse_sse(client.post("/chat", json={"prompt": "hello"}).text)[-1]
    second = parse_sse(client.post("/chat", json={"prompt": "hello", "history": [{"user": "hello", "bot": "hello"}]}).text)[-1]
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


def test_sampling_defaults_from_settings_and_overrides(app_factory) -> None:
    app, engine = app_factory(temperature=0.7, top_p=0.9, default_max_tokens=512, max_tokens=1000, seed=7)
    with TestClient(app) as c:
        wait_ready(c)
        c.post("/chat", json={"prompt": "hi"})
        s = engine.requests[-1].sampling
        assert (s.temperature, s.top_p, s.max_tokens, s.seed, s.stop) == (0.7, 0.9, 512, 7, [])
        c.post("/chat", json={"prompt": "hi", "temperature": 0, "top_p": 0.5, "max_tokens": 50000, "seed": 3, "stop": "END"})
        s = engine.requests[-1].sampling
        assert (s.temperature, s.top_p, s.max_tokens, s.seed, s.stop) == (0.0, 0.5, 1000, 3, ["END"])  # capped


def test_max_tokens_ends_with_length(client: TestClient, engine: FakeEngine) -> None:
    engine.enqueue("abcdefghij")
    events = parse_sse(client.post("/chat", json={"prompt": "hi", "max_tokens": 4}).text)
    assert "".join(e["token"] for e in events[:-1]) == "abcd"
    assert events[-1]["finish_reason"] == "length"
    assert events[-1]["usage"]["completion_tokens"] == 4


def test_stop_string_ends_the_answer(client: TestClient, engine: FakeEngine) -> None:
    engine.enqueue("one two END three")
    events = parse_sse(client.post("/chat", json={"prompt": "hi", "stop": ["END"]}).text)
    assert "".join(e["token"] for e in events[:-1]) == "one two "
    assert events[-1]["finish_reason"] == "stop"


def test_failure_mid_stream_is_an_error_event(client: TestClient, engine: FakeEngine) -> None:
    engine.enqueue(FakeReply("partial", error="llama_decode failed"))
    r = client.post("/chat", json={"prompt": "hi"})
    assert r.status_code == 200
    events = parse_sse(r.text)
    assert "".join(e["token"] for e in events[:-1]) == "partial"
    err = events[-1]["error"]
    assert err["code"] == "engine_error" and "llama_decode failed" in err["message"]
    assert not any("done" in e for e in events)



def test_build_messages_accepts_pairs_dicts_and_role_messages() -> None:
    expected = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "b1"},
        {"role": "user", "content": "p"},
    ]
    assert build_messages("S", [("u1", "b1")], "p") == expected
    assert build_messages("S", [{"user": "u1", "bot": "b1"}], "p") == expected
    assert build_messages("S", [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "b1"}], "p") == expected
    # A failed turn (no reply) keeps the question; data blocks come right after the system message.
    block = data_block("notes", "a </data> inside")
    assert build_messages("", [{"user": "u1", "bot": ""}], "p", [block]) == [
        {"role": "system", "content": ""},
        block,
        {"role": "user", "content": "u1"},
        {"role": "user", "content": "p"},
    ]
    assert block["role"] == "user" and block["content"].count("</data>") == 1 and block["content"].endswith("</data>")


def test_unexpected_failure_mid_stream_is_an_error_event(client: TestClient, engine: FakeEngine, monkeypatch) -> None:
    from xiaoq.api.streaming import TrackedGeneration

    async def broken_pieces(self):
        yield "a"
        raise RuntimeError("bug")

    monkeypatch.setattr(TrackedGeneration, "pieces", broken_pieces)
    events = parse_sse(client.post("/chat", json={"prompt": "hi"}).text)
    assert events[0] == {"token": "a"}
    assert events[-1]["error"]["code"] == "engine_error" and "bug" not in events[-1]["error"]["message"]
    assert not any("done" in e for e in events)


def test_openapi_schema_and_no_cors_by_default(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/chat", "/v1/chat/completions", "/v1/models", "/health", "/metrics"} <= set(schema["paths"])
    r = client.post("/chat", json={"prompt": "hi"}, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    r = client.options("/chat", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers and r.status_code == 405

"""``/v1/chat/completions`` and ``/v1/models``: OpenAI's exact shapes, and the official client."""

from __future__ import annotations

import openai
import pytest
from fastapi.testclient import TestClient

from xiaoq.engine.fake import FakeEngine, FakeReply

from tests.api.helpers import make_settings, parse_sse
from tests.api.server import serve, wait_health

USER = [{"role": "user", "content": "hi"}]


def test_non_stream_shape(client: TestClient, engine: FakeEngine) -> None:
    engine.enqueue("你好！")
    r = client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": USER})
    assert r.status_code == 200
    body = r.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["model"] == "fake-model"
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "你好！", "refusal": None}, "logprobs": None, "finish_reason": "stop"}
    ]
    usage = body["usage"]
    assert usage["completion_tokens"] == 3 and usage["total_tokens"] == usage["prompt_tokens"] + 3
    assert "cached_tokens" in usage["prompt_tokens_details"]


def test_stream_shape_with_include_usage(client: TestClient, engine: FakeEngine) -> None:
    engine.enqueue("abc")
    body = {"messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    r = client.post("/v1/chat/completions", json=body)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:4]] == ["a", "b", "c"]
    assert chunks[4]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert all(c["usage"] is None for c in chunks[:5])
    assert chunks[5]["choices"] == [] and chunks[5]["usage"]["completion_tokens"] == 3
    assert "prompt_tokens_details" in chunks[5]["usage"]


def test_stream_without_usage_and_length_finish(client: TestClient, engine: FakeEngine) -> None:
    engine.enqueue("abcdef")
    r = client.post("/v1/chat/completions", json={"messages": USER, "stream": True, "max_completion_tokens": 2, "max_tokens": 5})
    chunks = parse_sse(r.text)[:-1]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "ab"  # max_completion_tokens wins


def test_messages_roles_parts_and_parameters_reach_the_engine(client: TestClient, engine: FakeEngine) -> None:
    messages = [
        {"role": "developer", "content": "Be terse."},
        {"role": "user", "content": [{"type": "text", "text": "part one, "}, {"type": "text", "text": "part two"}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "again"},
    ]
    body = {"model": "anything", "messages": messages, "temperature": 0.2, "top_p": 0.5, "seed": 11, "stop": ["x", "y"], "max_tokens": 9, "user": "u1", "frequency_penalty": 0}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    req = engine.requests[-1]
    assert req.messages == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "part one, part two"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "again"},
    ]
    s = req.sampling
    assert (s.temperature, s.top_p, s.seed, s.stop, s.max_tokens) == (0.2, 0.5, 11, ["x", "y"], 9)


def test_n_other_than_one_is_400(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json={"messages": USER, "n": 2})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "n"
    assert client.post("/v1/chat/completions", json={"messages": USER, "n": 1}).status_code == 200


def test_error_mid_stream_and_non_stream(client: TestClient, engine: FakeEngine) -> None:
    engine.enqueue(FakeReply("pa", error="decode failed"), FakeReply("", error="decode failed"))
    events = parse_sse(client.post("/v1/chat/completions", json={"messages": USER, "stream": True}).text)
    assert events[-1]["error"]["code"] == "engine_error"
    r = client.post("/v1/chat/completions", json={"messages": USER})
    assert r.status_code == 500 and r.json()["error"]["code"] == "engine_error"


def test_models(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert body["data"] == [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "xiaoq"}]
    assert client.get("/v1/models/fake-model").json()["id"] == "fake-model"
    assert client.get("/v1/models/other").status_code == 404


@pytest.mark.slow
def test_official_openai_client_over_uvicorn() -> None:
    from xiaoq.api.app import create_app

    settings = make_settings(api_key="k-123")
    engine = FakeEngine(settings, delay=0.001)
    with serve(create_app(settings, engine, web_dir=None)) as url:
        wait_health(url)
        client = openai.OpenAI(base_url=url + "/v1", api_key="k-123", max_retries=0, timeout=30)
        assert [m.id for m in client.models.list()] == ["fake-model"]

        engine.enqueue("你好，世界")
        completion = client.chat.completions.create(model="qwen", messages=[{"role": "user", "content": "hi"}])
        assert completion.choices[0].message.content == "你好，世界"
        assert completion.choices[0].finish_reason == "stop"
        assert completion.usage is not None and completion.usage.completion_tokens == 5
        assert completion.usage.prompt_tokens_details is not None
        assert completion.usage.prompt_tokens_details.cached_tokens is not None

        engine.enqueue("流式输出")
        stream = client.chat.completions.create(
            model="qwen", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "流式输出"
        assert chunks[0].choices[0].delta.role == "assistant"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4

        bad = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0, timeout=30)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        with pytest.raises(openai.UnprocessableEntityError) as exc_info:
            client.chat.completions.create(model="q", messages=[{"role": "user", "content": "x"}], temperature=5)
        assert "temperature" in str(exc_info.value)

        engine.enqueue(FakeReply("ab", error="decode failed"))
        with pytest.raises(openai.APIError, match="decode failed"):
            list(client.chat.completions.create(model="q", messages=[{"role": "user", "content": "x"}], stream=True))

"""Every bad request gets a 4xx in the one error shape ``{"error": {"message","type","code"}}``;
never a 500 for bad input."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from xiaoq.engine.fake import FakeEngine

from tests.api.helpers import wait_ready


def assert_error(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "code"} and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


@pytest.mark.parametrize(
    ("path", "body", "param", "fragment"),
    [
        ("/chat", {"prompt": "hi", "temperature": 2.5}, "temperature", "temperature: Input should be less than or equal to 2"),
        ("/chat", {"prompt": "hi", "temperature": -0.1}, "temperature", "temperature: Input should be greater than or equal to 0"),
        ("/chat", {"prompt": "hi", "top_p": 0}, "top_p", "top_p: Input should be greater than 0"),
        ("/chat", {"prompt": "hi", "top_p": 1.5}, "top_p", "top_p:"),
        ("/chat", {"prompt": "hi", "max_tokens": 0}, "max_tokens", "max_tokens: Input should be greater than or equal to 1"),
        ("/chat", {"prompt": ""}, "prompt", "prompt: String should have at least 1 character"),
        ("/chat", {"history": []}, "prompt", "prompt: Field required"),
        ("/chat", {"prompt": 5}, "prompt", "prompt: Input should be a valid string"),
        ("/chat", {"prompt": "hi", "history": [{"user": "a", "bot": 3}]}, "history[0].bot", "history[0].bot:"),
        ("/chat", {"prompt": "hi", "temprature": 0.5}, "temprature", "temprature: Extra inputs are not permitted"),
        ("/chat", {"prompt": "hi", "stop": ["a"] * 9}, "stop", "stop"),
        ("/chat", {"prompt": "hi", "seed": -1}, "seed", "seed:"),
        ("/v1/chat/completions", {"messages": []}, "messages", "messages: List should have at least 1 item"),
        ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "messages[0].role:"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature", "temperature: Input should be less"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages[0].content[0].type", "messages[0].content[0].type: Input should be 'text'"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 0}, "max_completion_tokens", "max_completion_tokens:"),
    ],
)
def test_schema_errors_are_422_naming_the_field(client: TestClient, path: str, body: dict, param: str, fragment: str) -> None:
    err = assert_error(client.post(path, json=body), 422, "validation_error")
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param
    assert fragment in err["message"], err["message"]


def test_malformed_json_is_400_in_the_error_shape(client: TestClient) -> None:
    r = client.post("/chat", content=b'{"prompt": "hi",', headers={"content-type": "application/json"})
    err = assert_error(r, 400, "invalid_json")
    assert "JSON" in err["message"]


def test_body_that_is_not_an_object_names_the_problem(client: TestClient) -> None:
    err = assert_error(client.post("/chat", json=["hi"]), 422, "validation_error")
    assert "JSON object" in err["message"]
    err = assert_error(client.post("/chat", content=b'{"prompt": "hi"}', headers={"content-type": "text/plain"}), 415, "unsupported_media_type")
    assert "application/json" in err["message"]


def test_unknown_route_404_and_wrong_method_405(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    err = assert_error(client.get("/chat"), 405, "method_not_allowed")
    assert err["type"] == "invalid_request_error"


def test_history_longer_than_max_messages_is_422(app_factory) -> None:
    app, _ = app_factory(max_messages=2)
    with TestClient(app) as c:
        wait_ready(c)
        body = {"prompt": "hi", "history": [{"user": "u", "bot": "b"}] * 3}
        err = assert_error(c.post("/chat", json=body), 422, "validation_error")
        assert err["param"] == "history" and "at most 2" in err["message"]
        msgs = [{"role": "user", "content": "x"}] * 3
        err = assert_error(c.post("/v1/chat/completions", json={"messages": msgs}), 422)
        assert err["param"] == "messages"


def test_context_length_exceeded_is_400_with_both_counts(app_factory) -> None:
    app, engine = app_factory(ctx=256, max_tokens=2048)
    with TestClient(app) as c:
        wait_ready(c)
        body = {"prompt": "x" * 200, "max_tokens": 100}
        err = assert_error(c.post("/chat", json=body), 400, "context_length_exceeded")
        expected_prompt = engine.count_prompt_tokens([{"role": "system", "content": "SYS"}, {"role": "user", "content": "x" * 200}])
        assert err["prompt_tokens"] == expected_prompt
        assert err["max_tokens"] == 100 and err["n_ctx"] == 256
        assert str(expected_prompt) in err["message"] and "100" in err["message"]
        # The OpenAI surface reports it the same way (as JSON, not inside a stream).
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x" * 300}], "stream": True, "max_tokens": 10})
        assert_error(r, 400, "context_length_exceeded")
        assert engine.requests == []


def test_omitted_max_tokens_shrinks_to_the_room_left(app_factory) -> None:
    app, engine = app_factory(ctx=256)
    with TestClient(app) as c:
        wait_ready(c)
        r = c.post("/chat", json={"prompt": "x" * 200})
        assert r.status_code == 200
        sampling = engine.requests[-1].sampling
        assert sampling.max_tokens == 256 - engine.count_prompt_tokens(engine.requests[-1].messages)


def test_body_over_limit_is_413(app_factory) -> None:
    app, engine = app_factory(max_body_bytes=2048)
    with TestClient(app) as c:
        wait_ready(c)
        big = json.dumps({"prompt": "x" * 5000}).encode()
        assert_error(c.post("/chat", content=big, headers={"content-type": "application/json"}), 413, "payload_too_large")

        def chunks():  # no Content-Length: chunked transfer, counted while streaming
            for _ in range(10):
                yield b" " * 500
            yield b'{"prompt": "hi"}'

        assert_error(c.post("/chat", content=chunks(), headers={"content-type": "application/json"}), 413, "payload_too_large")
        assert engine.requests == []
        ok = c.post("/chat", content=json.dumps({"prompt": "x" * 1000}).encode(), headers={"content-type": "application/json"})
        assert ok.status_code == 200


def test_api_key_required_everywhere_but_health(app_factory) -> None:
    app, engine = app_factory(api_key="s3cret-key")
    with TestClient(app) as c:
        wait_ready(c)  # /health needs no key
        for method, path in [("post", "/chat"), ("post", "/v1/chat/completions"), ("get", "/v1/models"), ("get", "/metrics"), ("get", "/api/config"), ("get", "/nope")]:
            r = getattr(c, method)(path, **({"json": {"prompt": "hi"}} if method == "post" else {}))
            err = assert_error(r, 401, "invalid_api_key")
            assert err["type"] == "authentication_error"
            assert r.headers["www-authenticate"] == "Bearer"
        for bad in ["Bearer wrong", "Bearer s3cret-ke", "Basic s3cret-key", "s3cret-key", "Bearer "]:
            assert_error(c.get("/v1/models", headers={"Authorization": bad}), 401)
        good = {"Authorization": "Bearer s3cret-key"}
        assert c.get("/v1/models", headers=good).status_code == 200
        assert c.get("/api/config", headers=good).json()["auth_required"] is True
        r = c.post("/chat", json={"prompt": "hi"}, headers=good)
        assert r.status_code == 200 and "done" in r.text
        assert len(engine.requests) == 1


def test_busy_is_503_with_retry_after(app_factory) -> None:
    app, engine = app_factory(parallel=1, queue=1, engine_kwargs={"delay": 0.05})
    with TestClient(app) as c:
        wait_ready(c)
        # Occupy the slot and the queue place directly on the engine, from the app's loop.
        running = [c.portal.call(lambda: _submit(engine)) for _ in range(2)]
        r = c.post("/chat", json={"prompt": "hi"})
        err = assert_error(r, 503, "queue_full")
        assert err["type"] == "server_busy"
        assert int(r.headers["retry-after"]) >= 1
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}], "stream": True})
        assert_error(r, 503, "queue_full")
        assert "retry-after" in r.headers
        for g in running:
            g.cancel()


async def _submit(engine: FakeEngine):
    from xiaoq.engine.types import GenerationRequest, SamplingParams

    return await engine.submit(GenerationRequest(messages=[{"role": "user", "content": "long " * 20}], sampling=SamplingParams(max_tokens=100)))


def test_model_loading_is_503_json(app_factory) -> None:
    app, _ = app_factory(engine_kwargs={"load_delay": 30})
    with TestClient(app) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json() == {"status": "loading"}
        err = assert_error(c.post("/chat", json={"prompt": "hi"}), 503, "model_loading")
        assert err["type"] == "server_busy"


def test_unexpected_exception_is_500_in_the_error_shape(app_factory) -> None:
    app, engine = app_factory()

    async def broken(request):
        raise RuntimeError("boom")

    engine.submit = broken  # type: ignore[method-assign]
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_ready(c)
        err = assert_error(c.post("/chat", json={"prompt": "hi"}), 500, "internal_error")
        assert "boom" not in err["message"]  # no internals leak

"""Sampling parameters out of range are a 422 naming the parameter on every surface that takes them
(``/chat``, ``/v1/chat/completions``, a conversation's turns and its stored settings); an omitted
``max_tokens`` becomes ``--default-max-tokens``, never above ``--max-tokens`` nor the room left in
the context. Over the fake engine (its ``requests`` show what reached the engine) and real SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient

from xiaoq.api.app import create_app
from xiaoq.engine.fake import FakeEngine
from xiaoq.store import Store

from tests.api.helpers import make_settings, wait_ready

MSG = [{"role": "user", "content": "hi"}]

#: (parameter, out-of-range values) shared by every surface.
COMMON: list[tuple[str, list[Any]]] = [
    ("temperature", [-0.01, 2.01, 1e308, "hot", [0.5]]),
    ("top_p", [0, -0.5, 1.01, "all"]),
    ("max_tokens", [0, -1, 1.5, "many", [5]]),
    ("seed", [-1, 2**32, 2**64, 1.5, "x"]),
]
OPENAI_ONLY: list[tuple[str, list[Any]]] = [
    ("frequency_penalty", [-2.01, 2.01, "x"]),
    ("presence_penalty", [-2.01, 2.01, 1e9]),
    ("n", [0, -1, 1.5]),
    ("max_completion_tokens", [0, -3]),
    ("stop", ["", [""], ["x" * 65], ["x"] * 9, 5, [5]]),
    ("logit_bias", [{"-1": 1}, {"5": 100.5}, {"5": -101}, {"abc": 1}, {"5": "x"}, [1]]),
    ("stream", ["yes please", 2]),
]
CHAT_ONLY: list[tuple[str, list[Any]]] = [("stop", ["", [""], ["x" * 65], ["x"] * 9, 5, [5]])]


def cases(table: list[tuple[str, list[Any]]]) -> list[tuple[str, Any]]:
    return [(name, v) for name, values in table for v in values]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "xiaoq.db")
    yield s
    s.close()


def client_for(store: Store, **overrides: Any) -> tuple[TestClient, FakeEngine]:
    settings = make_settings(**overrides)
    engine = FakeEngine(settings)
    return TestClient(create_app(settings, engine, store=store, web_dir=None)), engine


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, FakeEngine, str]]:
    """One server for every refusal: each test checks that nothing reached the engine."""
    store = Store(tmp_path_factory.mktemp("ranges") / "xiaoq.db")
    client, engine = client_for(store)
    with client:
        wait_ready(client)
        cid = client.post("/api/conversations", json={}).json()["id"]
        yield client, engine, cid
    store.close()


def assert_422(r: Any, param: str) -> None:
    assert r.status_code == 422, (param, r.status_code, r.text[:300])
    err = r.json()["error"]
    assert err["code"] == "validation_error" and err["param"].startswith(param), (param, err)
    assert param in err["message"]


@pytest.mark.parametrize(("param", "value"), cases(COMMON + CHAT_ONLY))
def test_chat(served: tuple[TestClient, FakeEngine, str], param: str, value: Any) -> None:
    client, engine, _ = served
    assert_422(client.post("/chat", json={"prompt": "hi", param: value}), param)
    assert engine.requests == []


@pytest.mark.parametrize(("param", "value"), cases(COMMON + OPENAI_ONLY))
def test_openai(served: tuple[TestClient, FakeEngine, str], param: str, value: Any) -> None:
    client, engine, _ = served
    assert_422(client.post("/v1/chat/completions", json={"messages": MSG, param: value}), param)
    assert engine.requests == []


@pytest.mark.parametrize(("param", "value"), cases(COMMON))
def test_conversation_turns_and_settings(served: tuple[TestClient, FakeEngine, str], param: str, value: Any) -> None:
    client, engine, cid = served
    assert_422(client.post(f"/api/conversations/{cid}/messages", json={"content": "hi", param: value}), param)
    assert_422(client.post(f"/api/conversations/{cid}/regenerate", json={param: value}), param)
    assert_422(client.post("/api/conversations", json={"settings": {param: value}}), f"settings.{param}")
    assert_422(client.patch(f"/api/conversations/{cid}", json={"settings": {param: value}}), f"settings.{param}")
    assert engine.requests == []
    assert client.get(f"/api/conversations/{cid}").json()["messages"] == []  # nothing stored


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_numbers_are_refused(served: tuple[TestClient, FakeEngine, str], literal: bytes) -> None:
    """Python's JSON parser accepts these literals; no sampling parameter may be one."""
    client, engine, cid = served
    for path, head in [("/chat", b'{"prompt": "hi", '), ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], '),
                       (f"/api/conversations/{cid}/messages", b'{"content": "hi", ')]:
        for param in ("temperature", "top_p") + (("presence_penalty", "frequency_penalty") if path.startswith("/v1") else ()):
            r = client.post(path, content=head + b'"' + param.encode() + b'": ' + literal + b"}", headers={"content-type": "application/json"})
            assert_422(r, param)
    assert engine.requests == []


def test_n_above_one_is_refused_as_unsupported(served: tuple[TestClient, FakeEngine, str]) -> None:
    r = served[0].post("/v1/chat/completions", json={"messages": MSG, "n": 2})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"


def sent_max_tokens(engine: FakeEngine) -> int:
    return engine.requests[-1].sampling.max_tokens


def each_surface(client: TestClient, cid: str, extra: dict[str, Any]) -> Iterator[str]:
    """One request per surface with ``extra`` sampling fields; yields the surface's name after it."""
    assert client.post("/chat", json={"prompt": "hi", **extra}).status_code == 200
    yield "/chat"
    assert client.post("/v1/chat/completions", json={"messages": MSG, **extra}).status_code == 200
    yield "/v1/chat/completions"
    assert client.post(f"/api/conversations/{cid}/messages", json={"content": "hi", **extra}).status_code == 200
    yield "conversation"


@pytest.mark.parametrize(
    ("settings", "want"),
    [({"default_max_tokens": 40, "max_tokens": 1000}, 40), ({"default_max_tokens": 400, "max_tokens": 30}, 30)],
    ids=["default", "capped"],
)
def test_omitted_max_tokens_is_the_default_within_the_cap(store: Store, settings: dict[str, Any], want: int) -> None:
    client, engine = client_for(store, **settings)
    with client:
        wait_ready(client)
        cid = client.post("/api/conversations", json={}).json()["id"]
        for surface in each_surface(client, cid, {}):
            assert sent_max_tokens(engine) == want, surface


def test_omitted_max_tokens_shrinks_to_the_room_left(store: Store) -> None:
    client, engine = client_for(store, ctx=256, default_max_tokens=1000, max_tokens=2000, system_prompt="S" * 100)
    with client:
        wait_ready(client)
        cid = client.post("/api/conversations", json={}).json()["id"]
        for surface in each_surface(client, cid, {}):
            request = engine.requests[-1]
            prompt = engine.count_prompt_tokens(request.messages)
            assert 1 <= request.sampling.max_tokens <= 256 - prompt, surface
            assert request.sampling.max_tokens >= 256 - prompt - 8, (surface, request.sampling.max_tokens, prompt)


def test_explicit_max_tokens_above_the_cap_is_capped(store: Store) -> None:
    client, engine = client_for(store, default_max_tokens=10, max_tokens=20)
    with client:
        wait_ready(client)
        cid = client.post("/api/conversations", json={}).json()["id"]
        for surface in each_surface(client, cid, {"max_tokens": 10**12}):
            assert sent_max_tokens(engine) == 20, surface

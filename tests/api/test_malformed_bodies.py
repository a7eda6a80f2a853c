"""Malformed bodies on every JSON route (walked from the app, so a new route is covered the day it is
added): not JSON, the wrong JSON type, wrong field types, missing fields, huge lists, 10 MiB, the
wrong content type, invalid UTF-8 and NUL bytes each get a 4xx in the one error shape whose message
names the problem; never a 5xx. Over the fake engine and a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from xiaoq.api.app import create_app
from xiaoq.engine.fake import FakeEngine
from xiaoq.store import Store

from tests.api.helpers import make_settings, wait_ready

TEN_MIB = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, TestClient, dict[str, Any]]]:
    store = Store(tmp_path_factory.mktemp("malformed") / "xiaoq.db")
    settings = make_settings()
    app = create_app(settings, FakeEngine(settings), store=store, web_dir=None)
    with TestClient(app) as client:
        wait_ready(client)
        cid = client.post("/api/conversations", json={"title": "t"}).json()["id"]
        text = client.post(f"/api/conversations/{cid}/messages", json={"content": "hello"}).text
        assert '"done":true' in text
        mid = client.get(f"/api/conversations/{cid}").json()["messages"][0]["id"]
        pid = client.post("/api/presets", json={"name": "p"}).json()["id"]
        yield app, client, {"conversation_id": cid, "message_id": mid, "name": "default", "preset_id": pid}
    store.close()


class JsonRoute:
    """A route that takes a JSON body, as the app's OpenAPI schema declares it."""

    def __init__(self, method: str, path: str, schema: dict[str, Any]):
        self.method, self.path, self.schema = method.upper(), path, schema

    def __repr__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def fields(self) -> dict[str, Any]:
        return self.schema.get("properties", {})

    @property
    def required(self) -> list[str]:
        return list(self.schema.get("required", []))


def json_routes(app: FastAPI) -> list[JsonRoute]:
    """Every operation with a JSON request body, its schema resolved (``X | null`` unwrapped)."""
    spec = app.openapi()
    models = spec.get("components", {}).get("schemas", {})

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        for option in schema.get("anyOf", []):
            if option.get("type") != "null":
                return resolve(option)
        return models[schema["$ref"].rsplit("/", 1)[-1]] if "$ref" in schema else schema

    out = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json")
            if body is not None:
                out.append(JsonRoute(method, path, resolve(body["schema"])))
    return out


def call(client: TestClient, route: JsonRoute, ids: dict[str, Any], content: bytes, ctype: str = "application/json"):  # type: ignore[no-untyped-def]
    return client.request(route.method, route.path.format(**ids), content=content, headers={"content-type": ctype})


def assert_4xx(r: Any, *fragments: str) -> dict[str, Any]:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "code"} and err["message"] and err["code"], err
    low = err["message"].lower()
    assert any(f.lower() in low for f in fragments), (fragments, err["message"])
    return err


BAD = {
    "not-json": (b'{"prompt": "hi", ', "application/json", ["not valid JSON"]),
    "json-array": (b"[1, 2, 3]", "application/json", ["JSON object"]),
    "json-string": (b'"hello"', "application/json", ["JSON object"]),
    "json-number": (b"42", "application/json", ["JSON object"]),
    "huge-list": (json.dumps([0] * 300_000).encode(), "application/json", ["JSON object"]),
    "ten-mib": (b'{"content": "' + b"a" * TEN_MIB + b'"}', "application/json", ["larger than the limit"]),
    "text-plain": (b'{"content": "hi", "prompt": "hi"}', "text/plain", ["application/json", "content-type"]),
    "form": (b"content=hi&prompt=hi", "application/x-www-form-urlencoded", ["application/json", "content-type"]),
    "invalid-utf8": (b'{"content": "\xff\xfe\xfd", "prompt": "\xc3\x28"}', "application/json", ["UTF-8"]),
    "nul-byte": (b'{"content": "a\x00b", "prompt": "a\x00b"}', "application/json", ["not valid JSON"]),
}


def test_the_walk_finds_every_json_route(served: tuple[FastAPI, TestClient, dict[str, Any]]) -> None:
    found = {repr(r) for r in json_routes(served[0])}
    print("JSON routes:", sorted(found))
    assert {"POST /chat", "POST /v1/chat/completions", "POST /api/conversations", "PATCH /api/conversations/{conversation_id}"} <= found
    assert len(found) >= 7


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_bodies_are_4xx_naming_the_problem(served: tuple[FastAPI, TestClient, dict[str, Any]], case: str) -> None:
    app, client, ids = served
    content, ctype, fragments = BAD[case]
    for route in json_routes(app):
        r = call(client, route, ids, content, ctype)
        assert_4xx(r, *fragments)


def test_wrong_type_in_every_field_is_422_naming_it(served: tuple[FastAPI, TestClient, dict[str, Any]]) -> None:
    app, client, ids = served
    tried = 0
    for route in json_routes(app):
        for name in route.fields:
            # A list of lists fits no field here (text, number, bool, object or list of those).
            r = call(client, route, ids, json.dumps({name: [[[]]]}).encode())
            err = assert_4xx(r, name)
            assert r.status_code == 422 and err["code"] == "validation_error", (route, name, r.text)
            tried += 1
    print("fields tried:", tried)
    assert tried >= 30


def test_missing_required_fields_are_named(served: tuple[FastAPI, TestClient, dict[str, Any]]) -> None:
    app, client, ids = served
    for route in json_routes(app):
        required = route.required
        if not required:
            continue
        r = call(client, route, ids, b"{}")
        err = assert_4xx(r, *required)
        assert all(n in err["message"] for n in required), (route.path, err)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/chat", {"prompt": "hi", "history": [{"user": "u"}] * 50_000}, "history"),
        ("/v1/chat/completions", {"messages": [{"role": "user"}] * 50_000}, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "logit_bias": {str(i): 1 for i in range(5000)}}, "logit_bias"),
        ("/chat", {"prompt": "hi", "stop": ["x"] * 5000}, "stop"),
        # Parts are not capped one by one: together they must fit the context.
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 30_000}]}, "context"),
    ],
    ids=["history", "messages", "logit_bias", "stop", "content-parts"],
)
def test_huge_lists_are_refused_by_name(served: tuple[FastAPI, TestClient, dict[str, Any]], path: str, body: dict[str, Any], field: str) -> None:
    r = served[1].post(path, json=body)
    err = assert_4xx(r, field)
    assert r.status_code in (400, 413, 422), r.text[:200]
    print(path, field, r.status_code, err["message"][:100])


@pytest.mark.parametrize("field", ["prompt", "system", "history", "stop"])
def test_nul_characters_in_text_are_refused_on_chat(served: tuple[FastAPI, TestClient, dict[str, Any]], field: str) -> None:
    body: dict[str, Any] = {"prompt": "hi"}
    body[field] = {"prompt": "a\u0000b", "system": "s\u0000", "history": [{"user": "u\u0000", "bot": "b"}], "stop": ["\u0000"]}[field]
    err = assert_4xx(served[1].post("/chat", json=body), "NUL")
    assert field in err["message"]


def test_nul_characters_are_refused_on_every_text_field_of_conversations(served: tuple[FastAPI, TestClient, dict[str, Any]]) -> None:
    _, client, ids = served
    cid = ids["conversation_id"]
    for method, path, body in [
        ("POST", "/api/conversations", {"title": "a\u0000"}),
        ("POST", "/api/conversations", {"system_prompt": "\u0000"}),
        ("PATCH", f"/api/conversations/{cid}", {"title": "x\u0000y"}),
        ("POST", f"/api/conversations/{cid}/messages", {"content": "hi\u0000"}),
        ("POST", f"/api/conversations/{cid}/messages/{ids['message_id']}/edit", {"content": "\u0000"}),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "a\u0000"}]}),
    ]:
        assert_4xx(client.request(method, path, json=body), "NUL")
    after = client.get(f"/api/conversations/{cid}").json()
    assert after["title"] == "t" and "\u0000" not in json.dumps(after)


def test_the_server_still_answers_after_all_that(served: tuple[FastAPI, TestClient, dict[str, Any]]) -> None:
    client = served[1]
    r = client.post("/chat", json={"prompt": "still here?"})
    assert r.status_code == 200 and '"done":true' in r.text

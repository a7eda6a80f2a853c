"""The turn's guarantees over the REAL llama.cpp engine (tiny GGUF), real SQLite and, where a held
stream matters, a real uvicorn socket:

- a full server refuses a regenerate or edit with 503 and the conversation keeps its reply;
- ``"system": ""`` means no system prompt at all (the bare template), on every surface;
(after summarization the system message is exactly the operator's prompt: see
``test_conversations_real.py``'s long conversation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests.api.helpers import parse_sse, wait_ready
from tests.api.server import serve, wait_health
from tests.api.test_conversations_real import SYSTEM, real_app, turn


def test_busy_regenerate_and_edit_keep_the_reply_over_a_real_socket(tiny_gguf: Path, tmp_path: Path) -> None:
    app, store = real_app(tiny_gguf, tmp_path / "busy.db", parallel=1, queue=0, threads=1, max_tokens=4000)
    try:
        with serve(app) as url:
            wait_health(url)
            with httpx.Client(base_url=url, timeout=60) as http:
                a = http.post("/api/conversations", json={}).json()["id"]
                b = http.post("/api/conversations", json={}).json()["id"]
                r = http.post(f"/api/conversations/{a}/messages", json={"content": "你好", "max_tokens": 6})
                before = http.get(f"/api/conversations/{a}").json()["messages"]
                assert [(m["role"], m["status"]) for m in before] == [("user", "complete"), ("assistant", "complete")]
                with http.stream("POST", f"/api/conversations/{b}/messages", json={"content": "讲一个很长的故事", "max_tokens": 3500}) as held:
                    lines = (json.loads(line[6:]) for line in held.iter_lines() if line.startswith("data: "))
                    assert next(lines)["start"] is True and "token" in next(lines)  # the only slot is busy
                    regen = http.post(f"/api/conversations/{a}/regenerate", json={})
                    edit = http.post(f"/api/conversations/{a}/messages/{before[0]['id']}/edit", json={"content": "改过的问题"})
                    after = http.get(f"/api/conversations/{a}").json()["messages"]
                    assert http.post(f"/api/conversations/{b}/stop").json() == {"stopped": True}
                for r in (regen, edit):
                    assert r.status_code == 503 and r.json()["error"]["type"] == "server_busy", r.text
                    assert r.headers.get("Retry-After")
                assert after == before
                # Once the slot is free the regenerate goes through and replaces the reply.
                events = parse_sse(http.post(f"/api/conversations/{a}/regenerate", json={"max_tokens": 5}).text)
                final = http.get(f"/api/conversations/{a}").json()["messages"]
                assert [m["id"] for m in final] == [before[0]["id"], events[-1]["message_id"]]
                assert final[1]["finish_reason"] == "length" and final[1]["content"] == "".join(e.get("token", "") for e in events)
    finally:
        store.close()


def test_an_empty_system_prompt_turns_it_off_everywhere(tiny_gguf: Path, tmp_path: Path) -> None:
    app, store = real_app(tiny_gguf, tmp_path / "sys.db")
    try:
        with TestClient(app) as client:
            wait_ready(client, timeout=60)
            engine = app.state.engine
            bare = engine.count_prompt_tokens([{"role": "system", "content": ""}, {"role": "user", "content": "hi"}])

            def chat(**extra: Any) -> int:
                events = parse_sse(client.post("/chat", json={"prompt": "hi", "max_tokens": 1, **extra}).text)
                return events[-1]["usage"]["prompt_tokens"]

            def openai(messages: list[dict[str, str]]) -> int:
                r = client.post("/v1/chat/completions", json={"messages": [*messages, {"role": "user", "content": "hi"}], "max_tokens": 1})
                return r.json()["usage"]["prompt_tokens"]

            def stored(system_prompt: Any) -> int:
                cid = client.post("/api/conversations", json={"system_prompt": system_prompt}).json()["id"]
                return turn(client, cid, "hi", max_tokens=1)[-1]["usage"]["prompt_tokens"]

            off = (chat(system=""), openai([{"role": "system", "content": ""}]), stored(""))
            x = (chat(system="x"), openai([{"role": "system", "content": "x"}]), stored("x"))
            default = (chat(), openai([]), stored(None))
            print(f"prompt_tokens: bare template {bare}, system '' {off}, 'x' {x}, default {default}")
            assert off == (bare, bare, bare)
            assert all(bare < n <= bare + 2 for n in x)
            assert default[0] == default[1] == default[2] > bare + 2
            assert default[0] == engine.count_prompt_tokens([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}])
    finally:
        store.close()

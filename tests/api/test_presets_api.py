"""``/api/presets`` over a real SQLite file: the built-ins in both languages, CRUD with the one
error shape, reset, and a preset COPIED into a conversation when it starts (a later edit changes
only new conversations). The copied prompt reaches the real llama.cpp engine (tiny GGUF)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from xiaoq.chat.presets import BUILTINS
from tests.api.helpers import parse_sse, wait_ready
from tests.api.test_conversations_api import app_engine, client, engine, new_conv, send, store  # noqa: F401
from tests.api.test_conversations_real import real_app

PRESET_KEYS = {"id", "builtin", "owner_id", "visibility", "group_name", "language", "name", "description", "system_prompt", "settings", "position", "created_at", "updated_at"}


def error_of(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) >= {"message", "type", "code"}
    return body["error"]


def test_builtins_in_both_languages(client: TestClient) -> None:  # noqa: F811
    all_ = client.get("/api/presets").json()["data"]
    assert len(all_) == 8 and all(set(p) == PRESET_KEYS for p in all_)
    zh = client.get("/api/presets", params={"language": "zh"}).json()["data"]
    en = client.get("/api/presets", params={"language": "en"}).json()["data"]
    assert [p["name"] for p in zh] == ["通用助手", "编程导师", "知识库助手", "翻译"]
    assert [p["builtin"] for p in en] == ["general-en", "tutor-en", "kb-en", "translate-en"]
    assert zh[0]["system_prompt"] is None  # the general assistant uses the server's default
    error_of(client.get("/api/presets", params={"language": "fr"}), 422)


def test_crud_reset_and_errors(client: TestClient) -> None:  # noqa: F811
    r = client.post("/api/presets", json={"name": "写周报", "system_prompt": "用要点写。", "settings": {"temperature": 0.2, "max_tokens": 200}})
    assert r.status_code == 201, r.text
    mine = r.json()
    assert mine["builtin"] is None and mine["settings"] == {"temperature": 0.2, "max_tokens": 200}
    patched = client.patch(f"/api/presets/{mine['id']}", json={"description": "每周五用", "language": "zh"}).json()
    assert (patched["description"], patched["language"], patched["name"]) == ("每周五用", "zh", "写周报")
    assert client.get(f"/api/presets/{mine['id']}").json() == patched
    error_of(client.post(f"/api/presets/{mine['id']}/reset"), 400)
    assert client.delete(f"/api/presets/{mine['id']}").status_code == 204
    assert error_of(client.get(f"/api/presets/{mine['id']}"), 404)["code"] == "preset_not_found"
    # built-ins: edited, reset, never deleted
    client.patch("/api/presets/translate-zh", json={"system_prompt": "只翻成日语。", "settings": {"temperature": 0.9}})
    shipped = next(b for b in BUILTINS if b["builtin"] == "translate-zh")
    back = client.post("/api/presets/translate-zh/reset").json()
    assert back["system_prompt"] == shipped["system_prompt"] and back["settings"] == shipped["settings"]
    assert error_of(client.delete("/api/presets/translate-zh"), 400)["code"] == "builtin_preset"
    # bad input: one error shape
    error_of(client.post("/api/presets", json={}), 400)
    error_of(client.post("/api/presets", json={"name": ""}), 422)
    error_of(client.post("/api/presets", json={"name": "x", "settings": {"temperature": 9}}), 422)
    error_of(client.post("/api/presets", json={"name": "x", "colour": "red"}), 422)
    error_of(client.patch("/api/presets/tutor-zh", json={"name": None}), 400)
    error_of(client.patch("/api/presets/nope", json={"name": "y"}), 404)
    error_of(client.post("/api/conversations", json={"preset": "nope"}), 404)
    cid = new_conv(client)["id"]
    error_of(client.patch(f"/api/conversations/{cid}", json={"preset": "tutor-zh"}), 400)


def test_a_conversation_copies_its_preset(client: TestClient, engine) -> None:  # noqa: F811
    mine = client.post("/api/presets", json={"name": "简答", "system_prompt": "每次只用一句话回答。", "settings": {"temperature": 0.1}}).json()
    conv = new_conv(client, preset=mine["id"], settings={"max_tokens": 50})
    assert conv["system_prompt"] == "每次只用一句话回答。" and conv["settings"] == {"temperature": 0.1, "max_tokens": 50}
    client.patch(f"/api/presets/{mine['id']}", json={"system_prompt": "改过的提示。"})
    assert client.get(f"/api/conversations/{conv['id']}").json()["system_prompt"] == "每次只用一句话回答。"
    send(client, conv["id"], "你好")
    req = engine.requests[-1]
    assert req.messages[0] == {"role": "system", "content": "每次只用一句话回答。"} and req.sampling.temperature == 0.1
    later = new_conv(client, preset=mine["id"])
    assert later["system_prompt"] == "改过的提示。"
    own = new_conv(client, preset=mine["id"], system_prompt="自己的提示。")
    assert own["system_prompt"] == "自己的提示。"
    general = new_conv(client, preset="general-zh")
    assert general["system_prompt"] is None and general["settings"] == {}


def test_the_preset_prompt_reaches_the_real_engine(tiny_gguf: Path, tmp_path: Path) -> None:
    app, store_ = real_app(tiny_gguf, tmp_path / "p.db")
    try:
        with TestClient(app) as c:
            wait_ready(c, timeout=60)
            tutor = c.get("/api/presets/tutor-en").json()
            cid = c.post("/api/conversations", json={"preset": "tutor-en"}).json()["id"]
            events = parse_sse(c.post(f"/api/conversations/{cid}/messages", json={"content": "hi", "max_tokens": 2}).text)
            expected = app.state.engine.count_prompt_tokens([{"role": "system", "content": tutor["system_prompt"]}, {"role": "user", "content": "hi"}])
            print(f"prompt tokens with the tutor preset: {events[-1]['usage']['prompt_tokens']}")
            assert events[-1]["usage"]["prompt_tokens"] == expected
    finally:
        store_.close()

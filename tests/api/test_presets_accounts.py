"""Presets with accounts, on SQLite and PostgreSQL: a user's private preset is theirs alone (listing,
reading, editing, deleting, starting a conversation from it: 404 for anyone else); a shared one is
everyone's to use; a group's is its members' to use (404 for anyone else); the built-ins and shared presets are changed by their owner or an admin only."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient

from xiaoq.api.app import create_app
from xiaoq.auth.accounts import Accounts
from xiaoq.engine.fake import FakeEngine
from xiaoq.store import open_store
from xiaoq.store.users import UserStore

from tests.api.helpers import make_settings, wait_ready


@pytest.fixture(params=["sqlite", "postgresql"])
def setup(request, tmp_path) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    store = open_store(tmp_path / "x.db" if request.param == "sqlite" else request.getfixturevalue("pg_url"))
    accounts = Accounts(UserStore(store.db))
    keys = {}
    for name, role, groups in (("alice", "admin", ()), ("bob", "user", ()), ("carol", "user", ("hr",)), ("dave", "user", ("hr", "ops"))):
        keys[name] = {"Authorization": f"Bearer {accounts.new_key(accounts.create(name, None, role, groups))[1]}"}
    settings = make_settings(auth="accounts", user_rpm=0)
    app = create_app(settings, FakeEngine(settings), store=store, web_dir=None)
    with TestClient(app) as client:
        wait_ready(client)
        yield client, keys
    store.close()


def ids(client: TestClient, who: dict[str, str]) -> set[str]:
    return {p["id"] for p in client.get("/api/presets", headers=who).json()["data"]}


def test_private_presets_are_their_owners(setup: Any) -> None:
    client, k = setup
    mine = client.post("/api/presets", json={"name": "bob's secret prompt", "system_prompt": "只说暗号。"}, headers=k["bob"]).json()
    assert mine["visibility"] == "private"
    assert mine["id"] in ids(client, k["bob"])
    for other in ("alice", "carol"):
        assert mine["id"] not in ids(client, k[other])
        for method, path, body in (
            ("GET", f"/api/presets/{mine['id']}", None),
            ("PATCH", f"/api/presets/{mine['id']}", {"name": "taken"}),
            ("DELETE", f"/api/presets/{mine['id']}", None),
            ("POST", "/api/conversations", {"preset": mine["id"]}),
        ):
            r = client.request(method, path, json=body, headers=k[other])
            assert r.status_code == 404, (other, method, path, r.text)
    assert client.get(f"/api/presets/{mine['id']}", headers=k["bob"]).json()["name"] == "bob's secret prompt"
    conv = client.post("/api/conversations", json={"preset": mine["id"]}, headers=k["bob"]).json()
    assert conv["system_prompt"] == "只说暗号。"


def test_shared_presets_and_builtins_are_used_by_all_changed_by_owner_or_admin(setup: Any) -> None:
    client, k = setup
    shared = client.post("/api/presets", json={"name": "team notes", "visibility": "shared"}, headers=k["bob"]).json()
    assert shared["id"] in ids(client, k["carol"]) and "translate-zh" in ids(client, k["carol"])
    assert client.post("/api/conversations", json={"preset": shared["id"]}, headers=k["carol"]).status_code == 201
    r = client.patch(f"/api/presets/{shared['id']}", json={"name": "carol's now"}, headers=k["carol"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "preset_read_only"
    assert client.delete(f"/api/presets/{shared['id']}", headers=k["carol"]).status_code == 403
    assert client.patch("/api/presets/translate-zh", json={"system_prompt": "x"}, headers=k["bob"]).status_code == 403
    assert client.post("/api/presets/translate-zh/reset", headers=k["bob"]).status_code == 403
    assert client.patch("/api/presets/translate-zh", json={"system_prompt": "只翻成日语。"}, headers=k["alice"]).status_code == 200
    assert client.patch(f"/api/presets/{shared['id']}", json={"description": "by the admin"}, headers=k["alice"]).status_code == 200
    assert client.patch(f"/api/presets/{shared['id']}", json={"name": "bob renames"}, headers=k["bob"]).status_code == 200


def test_group_presets_are_their_members(setup: Any) -> None:
    client, k = setup
    hr = client.post("/api/presets", json={"name": "hr answers", "system_prompt": "只答人事问题。", "visibility": "group", "group": "hr"}, headers=k["carol"]).json()
    assert (hr["visibility"], hr["group_name"]) == ("group", "hr")
    assert hr["id"] in ids(client, k["dave"]) and hr["id"] in ids(client, k["alice"])  # a member; an admin sees every group's
    conv = client.post("/api/conversations", json={"preset": hr["id"]}, headers=k["dave"])
    assert conv.status_code == 201 and conv.json()["system_prompt"] == "只答人事问题。"
    assert hr["id"] not in ids(client, k["bob"])
    for method, path, body in (("GET", f"/api/presets/{hr['id']}", None), ("PATCH", f"/api/presets/{hr['id']}", {"name": "x"}), ("POST", "/api/conversations", {"preset": hr["id"]})):
        assert client.request(method, path, json=body, headers=k["bob"]).status_code == 404, (method, path)
    assert client.patch(f"/api/presets/{hr['id']}", json={"name": "dave's now"}, headers=k["dave"]).status_code == 403  # a member uses it
    # Bad sharing is a JSON 4xx; moving it to another group or to everyone is the owner's.
    bad = client.post("/api/presets", json={"name": "x", "visibility": "group"}, headers=k["carol"])
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_visibility"
    bad = client.patch(f"/api/presets/{hr['id']}", json={"visibility": "team"}, headers=k["carol"])
    assert bad.status_code in (400, 422) and "error" in bad.json()
    moved = client.patch(f"/api/presets/{hr['id']}", json={"group": "ops"}, headers=k["carol"]).json()
    assert (moved["visibility"], moved["group_name"]) == ("group", "ops")
    assert client.get(f"/api/presets/{hr['id']}", headers=k["carol"]).status_code == 200  # the owner keeps it outside the group
    everyone = client.patch(f"/api/presets/{hr['id']}", json={"visibility": "everyone"}, headers=k["carol"]).json()
    assert (everyone["visibility"], everyone["group_name"]) == ("shared", None)
    assert client.post("/api/conversations", json={"preset": hr["id"]}, headers=k["bob"]).status_code == 201
    bad = client.patch(f"/api/presets/{hr['id']}", json={"group": "hr"}, headers=k["carol"])  # a group for a preset everyone uses
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_visibility"

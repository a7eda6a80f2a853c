"""Two users over the HTTP API with ``--auth accounts``, on a real SQLite file and on a real
PostgreSQL: neither can list, read, change, search, export, regenerate, edit, stop or delete the
other's conversations, by id or by search. Also: logging in and out, the cookie's attributes, the
Origin rule for cookie changes, the login throttle (with an injected clock), personal API keys
(hashed at rest, revocable) and the admin routes."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient

from xiaoq.api.app import create_app
from xiaoq.auth.accounts import Accounts
from xiaoq.engine.fake import FakeEngine
from xiaoq.store import open_store
from xiaoq.store.users import UserStore

from tests.api.helpers import make_settings, parse_sse, wait_ready

ORIGIN = {"Origin": "http://testserver"}
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22"}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    where = tmp_path / "xiaoq.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = open_store(where)
    accounts = Accounts(UserStore(s.db))
    accounts.create("alice", PASSWORDS["alice"], "admin")
    accounts.create("bob", PASSWORDS["bob"], "user", ["sales"])
    yield s
    s.close()


@pytest.fixture
def client(store) -> Iterator[TestClient]:
    settings = make_settings(auth="accounts", user_rpm=0)
    app = create_app(settings, FakeEngine(settings, delay=0.0), store=store, web_dir=None)
    with TestClient(app) as c:
        wait_ready(c)
        yield c


def login(client: TestClient, name: str) -> dict[str, str]:
    """Headers acting as ``name`` (the session cookie and the page's Origin); the jar stays empty."""
    r = client.post("/api/auth/login", json={"username": name, "password": PASSWORDS[name]})
    assert r.status_code == 200, r.text
    token = r.cookies["xiaoq_session"]
    client.cookies.clear()
    return {"Cookie": f"xiaoq_session={token}", **ORIGIN}


def chat(client: TestClient, headers: dict[str, str], cid: str, text: str) -> list[Any]:
    r = client.post(f"/api/conversations/{cid}/messages", json={"content": text}, headers=headers)
    assert r.status_code == 200, r.text
    return parse_sse(r.text)


def test_nothing_without_a_login(client):
    for method, path in (("GET", "/api/conversations"), ("GET", "/api/search?q=x"), ("GET", "/api/auth/me"), ("POST", "/chat"), ("POST", "/v1/chat/completions")):
        r = client.request(method, path, headers=ORIGIN, json={})
        assert r.status_code == 401, (path, r.text)
        assert r.json()["error"]["code"] == "login_required"
    assert client.get("/health").status_code == 200


def test_login_cookie_me_and_logout(client):
    r = client.post("/api/auth/login", json={"username": "Alice", "password": PASSWORDS["alice"]})
    assert r.status_code == 200 and r.json()["user"]["username"] == "alice" and r.json()["user"]["role"] == "admin"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    token = r.cookies["xiaoq_session"]
    client.cookies.clear()
    me = client.get("/api/auth/me", headers={"Cookie": f"xiaoq_session={token}"})
    assert me.json()["user"]["username"] == "alice"
    assert client.post("/api/auth/logout", headers={"Cookie": f"xiaoq_session={token}", **ORIGIN}).status_code == 204
    assert client.get("/api/auth/me", headers={"Cookie": f"xiaoq_session={token}"}).status_code == 401
    for body in ({"username": "alice", "password": "wrong-password"}, {"username": "nobody", "password": "whatever-pw"}):
        r = client.post("/api/auth/login", json=body)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_credentials"
    assert client.post("/api/auth/login", json={"username": "alice"}).status_code == 422


def test_cookie_changes_need_the_pages_origin(client):
    headers = login(client, "alice")
    no_origin = {"Cookie": headers["Cookie"]}
    r = client.post("/api/conversations", json={}, headers=no_origin)
    assert r.status_code == 403 and r.json()["error"]["code"] == "invalid_origin"
    r = client.post("/api/conversations", json={}, headers={**no_origin, "Origin": "http://evil.example"})
    assert r.status_code == 403
    assert client.post("/api/conversations", json={}, headers=headers).status_code == 201
    assert client.get("/api/conversations", headers=no_origin).status_code == 200  # reading needs no Origin


def test_two_users_cannot_touch_each_others_conversations(client):
    """Every route a conversation id reaches, tried by Bob on Alice's conversation: the same 404
    as a made-up id, and Alice's conversation is unchanged afterwards."""
    alice, bob = login(client, "alice"), login(client, "bob")
    cid = client.post("/api/conversations", json={"title": "alice plans"}, headers=alice).json()["id"]
    chat(client, alice, cid, "alice's 蓝莓 secret plan")
    mine = client.post("/api/conversations", json={"title": "bob plans"}, headers=bob).json()["id"]
    chat(client, bob, mine, "bob's own question")
    msg_id = client.get(f"/api/conversations/{cid}", headers=alice).json()["messages"][0]["id"]
    before = client.get(f"/api/conversations/{cid}", headers=alice).json()

    attempts = [
        ("GET", f"/api/conversations/{cid}", None),
        ("PATCH", f"/api/conversations/{cid}", {"title": "bob was here"}),
        ("POST", f"/api/conversations/{cid}/messages", {"content": "injected"}),
        ("POST", f"/api/conversations/{cid}/regenerate", {}),
        ("POST", f"/api/conversations/{cid}/continue", {}),
        ("POST", f"/api/conversations/{cid}/messages/{msg_id}/edit", {"content": "rewritten"}),
        ("POST", f"/api/conversations/{cid}/stop", None),
        ("GET", f"/api/conversations/{cid}/export?format=md", None),
        ("GET", f"/api/conversations/{cid}/export?format=json", None),
        ("POST", "/chat", {"prompt": "continue", "conversation_id": cid}),
        ("DELETE", f"/api/conversations/{cid}", None),
    ]
    made_up = "0" * 32
    for method, path, body in attempts:
        r = client.request(method, path, json=body, headers=bob)
        ghost = client.request(method, path.replace(cid, made_up), json=body, headers=bob)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"] == ghost.json()["error"]["code"], path

    listed = client.get("/api/conversations", headers=bob).json()["data"]
    assert [c["id"] for c in listed] == [mine]
    for q in ("secret", "蓝莓", "alice"):
        assert client.get("/api/search", params={"q": q}, headers=bob).json()["data"] == [], q
        assert client.get("/api/suggestions", params={"q": q}, headers=bob).json()["data"] == [], q
    assert client.get("/api/search", params={"q": "蓝莓"}, headers=alice).json()["data"]
    after = client.get(f"/api/conversations/{cid}", headers=alice).json()
    assert after == before


def test_personal_api_keys_hashed_shown_once_revocable(client, store):
    bob = login(client, "bob")
    made = client.post("/api/auth/keys", json={"name": "script"}, headers=bob)
    assert made.status_code == 201
    key, kid = made.json()["key"], made.json()["id"]
    assert key.startswith("xq_") and made.json()["prefix"] == key[:10]
    listed = client.get("/api/auth/keys", headers=bob).json()["data"]
    assert [k["id"] for k in listed] == [kid] and "key" not in listed[0]
    stored = [tuple(r) for r in store.db.query("SELECT * FROM api_keys")]
    assert not any(key in str(v) for row in stored for v in row)  # only its digest is kept

    by_key = {"Authorization": f"Bearer {key}"}
    cid = client.post("/api/conversations", json={"title": "by script"}, headers=by_key).json()["id"]
    assert [c["id"] for c in client.get("/api/conversations", headers=bob).json()["data"]] == [cid]
    alice = login(client, "alice")
    assert client.get(f"/api/conversations/{cid}", headers=alice).status_code == 404
    assert client.delete(f"/api/auth/keys/{kid}", headers=alice).status_code == 404  # not hers
    assert client.delete(f"/api/auth/keys/{kid}", headers=bob).status_code == 204
    r = client.get("/api/conversations", headers=by_key)
    assert r.status_code == 401
    assert client.get("/api/conversations", headers={"Authorization": "Bearer xq_made-up"}).status_code == 401


def test_login_throttle_slows_a_guessing_loop(client):
    """Twenty wrong passwords in a row with the clock standing still: after the free tries the
    answers are 429 with Retry-After, and even the right password waits; time passing lets it in."""
    throttle = client.app.state.accounts.throttle
    now = [5000.0]
    throttle.clock = lambda: now[0]
    codes = [client.post("/api/auth/login", json={"username": "bob", "password": f"guess-{i:04d}"}).status_code for i in range(20)]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
    r = client.post("/api/auth/login", json={"username": "bob", "password": PASSWORDS["bob"]})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and r.json()["error"]["code"] == "login_throttled"
    now[0] += 3
    assert client.post("/api/auth/login", json={"username": "bob", "password": PASSWORDS["bob"]}).status_code == 200


def test_admin_routes_are_for_admins(client):
    alice, bob = login(client, "alice"), login(client, "bob")
    assert client.get("/api/admin/users", headers=bob).status_code == 403
    r = client.post("/api/admin/users", json={"username": "carol", "password": "carol-password", "groups": ["hr"]}, headers=alice)
    assert r.status_code == 201 and r.json() == {"id": r.json()["id"], "username": "carol", "role": "user", "groups": ["hr"]}
    assert client.post("/api/admin/users", json={"username": "carol", "password": "carol-password"}, headers=alice).status_code == 409
    assert client.post("/api/admin/users", json={"username": "bad name", "password": "carol-password"}, headers=alice).status_code == 400
    assert client.post("/api/admin/users", json={"username": "dave", "password": "short"}, headers=alice).status_code == 400
    names = [u["username"] for u in client.get("/api/admin/users", headers=alice).json()["data"]]
    assert names == ["alice", "bob", "carol"]
    assert client.patch("/api/admin/users/carol", json={"groups": ["hr", "sales"]}, headers=alice).json()["groups"] == ["hr", "sales"]
    assert client.delete("/api/admin/users/alice", headers=alice).status_code == 400
    assert client.delete("/api/admin/users/carol", headers=alice).status_code == 204
    assert client.delete("/api/admin/users/carol", headers=alice).status_code == 404


def test_single_user_modes_have_no_account_routes(tmp_path):
    settings = make_settings()
    s = open_store(tmp_path / "x.db")
    app = create_app(settings, FakeEngine(settings), store=s, web_dir=None)
    with TestClient(app) as c:
        wait_ready(c)
        assert c.post("/api/auth/login", json={"username": "a", "password": "b"}).status_code == 404
        assert c.post("/api/conversations", json={}).status_code == 201
    s.close()


def test_attached_files_are_the_conversation_owners_alone(client):
    """A conversation's files (its own knowledge base) answer its owner; another user gets the
    404 an unknown conversation gets, for listing, attaching and removing."""
    alice, bob = login(client, "alice"), login(client, "bob")
    cid = client.post("/api/conversations", json={"title": "mine"}, headers=alice).json()["id"]
    r = client.post(f"/api/conversations/{cid}/files", files=[("files", ("n.md", "# 通知\n\n墨盒在前台。".encode()))], headers=alice)
    assert r.status_code == 202, r.text
    for _ in range(500):
        if client.get(f"/api/kb/jobs/{r.json()['id']}", headers=alice).json()["status"] in ("done", "error"):
            break
        __import__("time").sleep(0.02)
    files = client.get(f"/api/conversations/{cid}/files", headers=alice).json()["data"]
    assert [f["source"] for f in files] == ["n.md"]
    for method, path in (("GET", f"/api/conversations/{cid}/files"), ("DELETE", f"/api/conversations/{cid}/files/{files[0]['id']}")):
        r = client.request(method, path, headers=bob)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    r = client.post(f"/api/conversations/{cid}/files", files=[("files", ("x.md", b"# x"))], headers=bob)
    assert r.status_code == 404, r.text
    assert [f["source"] for f in client.get(f"/api/conversations/{cid}/files", headers=alice).json()["data"]] == ["n.md"]

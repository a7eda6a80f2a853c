"""Accounts over real uvicorn servers on 127.0.0.1: the trusted-header mode believes the proxy's
user header only from a listed address; one user's running reply cannot be stopped by another,
and the per-user stream limit refuses a second stream of the same user but not another user's."""

from __future__ import annotations

import threading
import time
from typing import Iterator

import httpx
import pytest

from xiaoq.api.app import create_app
from xiaoq.auth.accounts import Accounts
from xiaoq.engine.fake import FakeEngine
from xiaoq.store import Store
from xiaoq.store.users import UserStore

from tests.api.helpers import make_settings
from tests.api.server import serve, wait_health

HEADER = "X-Remote-User"


def header_server(tmp_path, proxies: list[str]) -> Iterator[str]:
    settings = make_settings(auth=f"trusted-header {HEADER}", trusted_proxies=proxies, allowed_hosts=[])
    store = Store(tmp_path / "x.db")
    with serve(create_app(settings, FakeEngine(settings), store=store, web_dir=None)) as url:
        wait_health(url)
        yield url
    store.close()


def test_trusted_header_from_a_listed_proxy_names_the_user(tmp_path):
    with httpx.Client(timeout=10) as http:
        for url in header_server(tmp_path, ["127.0.0.1"]):
            me = http.get(url + "/api/auth/me", headers={HEADER: "erin@example.com"})
            assert me.status_code == 200 and me.json()["user"]["username"] == "erin@example.com"
            cid = http.post(url + "/api/conversations", json={}, headers={HEADER: "erin@example.com"}).json()["id"]
            other = http.get(url + f"/api/conversations/{cid}", headers={HEADER: "frank"})
            assert other.status_code == 404
            assert http.get(url + "/api/conversations", headers={HEADER: "frank"}).json()["data"] == []
            assert http.get(url + "/api/conversations").status_code == 401  # no header: nobody
            r = http.post(url + "/api/auth/login", json={"username": "erin@example.com", "password": "anything-at-all"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "login_not_available"


def test_trusted_header_from_another_address_is_ignored(tmp_path):
    """The server is reached from 127.0.0.1, which is not the listed proxy: the header counts for
    nothing, whoever it names (an admin included)."""
    with httpx.Client(timeout=10) as http:
        for url in header_server(tmp_path, ["10.0.0.5", "192.168.0.0/16"]):
            for name in ("erin", "admin"):
                r = http.get(url + "/api/conversations", headers={HEADER: name})
                assert r.status_code == 401 and r.json()["error"]["code"] == "login_required"
                assert http.post(url + "/api/conversations", json={}, headers={HEADER: name}).status_code == 401


@pytest.fixture
def accounts_server(tmp_path) -> Iterator[tuple[str, dict[str, str]]]:
    """A server with two users and a slow fake engine; their API keys."""
    settings = make_settings(auth="accounts", user_streams=1, user_rpm=0, allowed_hosts=[])
    store = Store(tmp_path / "x.db")
    accounts = Accounts(UserStore(store.db))
    keys = {}
    for name in ("alice", "bob"):
        keys[name] = accounts.new_key(accounts.create(name, f"{name}-password"))[1]
    engine = FakeEngine(settings, ["一二三四五六七八九十" * 30] * 10, delay=0.02)
    with serve(create_app(settings, engine, store=store, web_dir=None)) as url:
        wait_health(url)
        yield url, keys
    store.close()


def test_another_user_cannot_stop_a_running_reply_and_streams_are_limited_per_user(accounts_server):
    url, keys = accounts_server
    alice, bob = ({"Authorization": f"Bearer {keys[n]}"} for n in ("alice", "bob"))
    with httpx.Client(timeout=30) as http:
        a_cid = http.post(url + "/api/conversations", json={}, headers=alice).json()["id"]
        b_cid = http.post(url + "/api/conversations", json={}, headers=bob).json()["id"]
        events: list[str] = []
        started = threading.Event()

        def alice_streams() -> None:
            with http.stream("POST", url + f"/api/conversations/{a_cid}/messages", json={"content": "long one"}, headers=alice) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        events.append(line)
                        started.set()

        t = threading.Thread(target=alice_streams)
        t.start()
        assert started.wait(10)
        r = http.post(url + f"/api/conversations/{a_cid}/stop", headers=bob)
        assert r.status_code == 404
        second = http.post(url + f"/api/conversations/{a_cid}/messages", json={"content": "again"}, headers=alice)
        assert second.status_code == 429 and second.json()["error"]["code"] == "user_streams_limited"
        assert "Retry-After" in second.headers
        with http.stream("POST", url + f"/api/conversations/{b_cid}/messages", json={"content": "mine"}, headers=bob) as r:
            assert r.status_code == 200  # bob's own stream is not limited by alice's
            r.read()
        t.join(60)
        assert not t.is_alive()
        done = http.get(url + f"/api/conversations/{a_cid}", headers=alice).json()["messages"][-1]
        assert done["status"] == "complete" and done["finish_reason"] == "stop", done

"""Two users in Debian's Chromium against a server with ``--auth accounts`` (FakeEngine, real
SQLite, uvicorn on 127.0.0.1): each logs in through the page; neither sees, opens, searches or
deletes the other's conversation, by the sidebar, by a guessed URL or by fetch with their own
session; logging out ends the session; only the admin gets the user page, which adds a user and
shares a knowledge base (bob can open it only while it is shared with him)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect

from xiaoq.auth.accounts import Accounts
from xiaoq.engine.fake import FakeEngine
from xiaoq.kb.ingest import Ingestor
from xiaoq.store import Store
from xiaoq.store.kb import KnowledgeStore
from xiaoq.store.users import UserStore

from tests.web.conftest import conversation_id, open_page, screenshot, send, wait_answer_done, xiaoq_server

pytestmark = pytest.mark.browser

PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("web-accounts") / "xiaoq.db"
    store = Store(db)
    accounts = Accounts(UserStore(store.db))
    alice = accounts.create("alice", PASSWORDS["alice"], "admin")
    accounts.create("bob", PASSWORDS["bob"], "user")
    ks = KnowledgeStore(store.db).for_viewer(alice)
    Ingestor(ks).add_bytes(ks.ensure_kb("hr")["id"], "leave.md", "# 年假\n\n正式员工每年享有年假十五天。\n".encode())
    store.close()
    with xiaoq_server(lambda s: FakeEngine(s, ["收到。"] * 20), db, auth="accounts", allowed_hosts=[]) as url:
        yield url


def log_in(page: Any, base: str, name: str, password: str | None = None) -> None:
    page.goto(base + "/")
    dialog = page.get_by_test_id("login")
    dialog.locator("input[name=username]").fill(name)
    dialog.locator("input[name=password]").fill(password or PASSWORDS[name])
    dialog.locator("button[type=submit]").click()
    expect(page.get_by_test_id("whoami")).to_have_text(name)


def ask(page: Any, text: str) -> str:
    page.get_by_test_id("new-chat").click()
    send(page, text)
    wait_answer_done(page)
    return conversation_id(page)


def fetch_status(page: Any, method: str, path: str) -> int:
    return int(page.evaluate("([m, p]) => fetch(p, {method: m, headers: {'Content-Type': 'application/json'}, body: m === 'GET' ? undefined : '{}'}).then(r => r.status)", [method, path]))


def poll_status(page: Any, path: str, status: int, tries: int = 50) -> bool:
    """Whether GET ``path`` answers ``status`` within a bounded number of tries (a click's PATCH
    may still be on its way)."""
    for _ in range(tries):
        if fetch_status(page, "GET", path) == status:
            return True
        page.wait_for_timeout(100)
    return False


def test_two_users_in_the_browser_are_isolated(browser: Any, server: str) -> None:
    with open_page(browser, server) as (alice, watch_a), open_page(browser, server) as (bob, watch_b):
        log_in(alice, server, "alice")
        a_cid = ask(alice, "alice 的蓝莓计划")
        log_in(bob, server, "bob")
        b_cid = ask(bob, "bob 的问题")
        screenshot(bob, "accounts-bob")

        bob.reload()
        expect(bob.get_by_test_id("whoami")).to_have_text("bob")
        expect(bob.locator(".conv")).to_have_count(1)
        assert bob.locator(".conv").get_attribute("data-id") == b_cid
        bob.goto(f"{server}/#/c/{a_cid}")
        bob.wait_for_timeout(500)
        assert "蓝莓" not in bob.locator("main").inner_text()
        bob.locator(".search input").fill("蓝莓")
        expect(bob.locator(".search-results .empty-note")).to_be_visible()
        for method, path in (("GET", f"/api/conversations/{a_cid}"), ("GET", f"/api/conversations/{a_cid}/export?format=md"),
                             ("POST", f"/api/conversations/{a_cid}/regenerate"), ("DELETE", f"/api/conversations/{a_cid}")):
            assert fetch_status(bob, method, path) == 404, (method, path)
        assert bob.get_by_test_id("admin-open").count() == 0

        alice.reload()
        expect(alice.locator(f'.conv[data-id="{a_cid}"]')).to_have_count(1)
        expect(alice.locator(".conv")).to_have_count(1)
        alice.locator(f'.conv[data-id="{a_cid}"] .conv-title').click()
        expect(alice.locator(".msg-user").first).to_contain_text("蓝莓")

        alice.get_by_test_id("admin-open").click()
        admin = alice.get_by_test_id("admin")
        admin.locator("input[name=new-username]").fill("carol")
        admin.locator("input[name=new-password]").fill("carol-password")
        admin.locator("button[type=submit]").click()
        expect(admin.get_by_test_id("user-carol")).to_be_visible()
        assert fetch_status(bob, "GET", "/api/kb/hr/documents") == 404  # alice's, private
        row = admin.get_by_test_id("kb-hr")
        row.locator("select").select_option("everyone")
        row.get_by_test_id("kb-save").click()
        expect(row.locator(".muted")).to_have_text("alice")
        assert poll_status(bob, "/api/kb/hr/documents", 200)
        row.locator("select").select_option("group")
        row.locator("input").fill("hr")
        row.get_by_test_id("kb-save").click()
        assert poll_status(bob, "/api/kb/hr/documents", 404)  # bob is in no group
        screenshot(alice, "accounts-admin")

        bob.get_by_test_id("logout").click()
        expect(bob.get_by_test_id("login")).to_be_visible()
        assert fetch_status(bob, "GET", "/api/conversations") == 401
        watch_a.assert_clean()
        watch_b.assert_clean()


def test_a_wrong_password_is_said_in_the_dialog(browser: Any, server: str) -> None:
    with open_page(browser, server) as (page, watch):
        page.goto(server + "/")
        dialog = page.get_by_test_id("login")
        dialog.locator("input[name=username]").fill("bob")
        dialog.locator("input[name=password]").fill("not-the-password")
        dialog.locator("button[type=submit]").click()
        expect(page.get_by_test_id("login-error")).to_be_visible()
        assert page.get_by_test_id("whoami").count() == 0
        assert page.locator("#key-title").count() == 0  # no API-key dialog on top of it
        watch.assert_clean()

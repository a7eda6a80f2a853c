"""Conversations owned by users, scoped in the store itself, on SQLite and on PostgreSQL: one
user's view cannot list, read, change, search, export or delete another's conversation or
messages, whatever id it tries; the unscoped store refuses once accounts are on; migrating a
single-user database gives its conversations to the first admin."""

from __future__ import annotations

import sqlite3

import pytest

from xiaoq.errors import Conflict, NotFound
from xiaoq.store import Store, open_store
from xiaoq.store.migrations import migrate
from xiaoq.store.users import UserStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    where = tmp_path / "xiaoq.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = open_store(where)
    yield s
    s.close()


@pytest.fixture
def two(store):
    """Alice's and Bob's views, each with one conversation holding a question and a reply."""
    users = UserStore(store.db)
    alice, bob = users.add_user("alice", None, "admin"), users.add_user("bob", None)
    views = {}
    for user, secret in ((alice, "alice's 蓝莓 secret plan"), (bob, "bob's 草莓 secret plan")):
        view = store.for_owner(user.id)
        conv = view.create_conversation(title=f"{user.username} title")
        q = view.add_message(conv["id"], "user", secret)
        a = view.add_message(conv["id"], "assistant", "noted: " + secret)
        view.set_summary(conv["id"], "summary of " + secret, a["id"], 5)
        views[user.username] = (view, conv, q, a)
    store.tenanted = True
    return views


def test_each_view_lists_only_its_own(two):
    for name, (view, conv, _, _) in two.items():
        assert [c["id"] for c in view.list_conversations()] == [conv["id"]], name


def test_another_users_ids_are_not_found_for_every_method(two):
    """Bob's view given Alice's conversation and message ids: every method answers as for a
    made-up id, and nothing of Alice's changes."""
    bob = two["bob"][0]
    _, conv, q, a = two["alice"]
    cid = conv["id"]
    attempts = {
        "get_conversation": lambda: bob.get_conversation(cid, messages=True),
        "update_conversation": lambda: bob.update_conversation(cid, title="mine now"),
        "delete_conversation": lambda: bob.delete_conversation(cid),
        "add_message": lambda: bob.add_message(cid, "user", "injected"),
        "get_message": lambda: bob.get_message(q["id"]),
        "update_message": lambda: bob.update_message(a["id"], content="overwritten"),
        "set_summary": lambda: bob.set_summary(cid, "mine", None, None),
        "get_summary": lambda: bob.get_summary(cid),
        "export_json": lambda: bob.export_json(cid),
        "export_markdown": lambda: bob.export_markdown(cid),
    }
    for name, attempt in attempts.items():
        with pytest.raises(NotFound):
            attempt()
    assert bob.get_messages(cid) == []
    assert bob.token_counts(cid, "k") == {}
    bob.delete_messages(cid, [q["id"], a["id"]])
    bob.set_token_counts("k", [(q["id"], q["content"], 99)])
    bob.restore_message({**a, "content": "rewritten by bob"})
    alice = two["alice"][0]
    kept = alice.get_conversation(cid, messages=True)
    assert kept["title"] == "alice title" and [m["content"] for m in kept["messages"]] == [q["content"], a["content"]]
    assert alice.get_summary(cid)["summary"].startswith("summary of alice")
    assert alice.token_counts(cid, "k") == {}


def test_search_and_suggestions_see_only_own_messages(two):
    bob = two["bob"][0]
    for q in ("secret plan", "noted", "se"):  # in both users' messages: trigram index and short LIKE
        hits = bob.search(q)
        assert hits and {h["conversation_id"] for h in hits} == {two["bob"][1]["id"]}, q
    assert bob.search("蓝莓") == [] and two["alice"][0].search("蓝莓")  # two characters: the LIKE path
    assert bob.search("alice's") == [] and two["alice"][0].search("alice's")
    assert bob.suggestions("alice") == [] and bob.suggestions("bob") == [two["bob"][2]["content"]]


def test_the_unscoped_store_refuses_once_tenanted(two, store):
    with pytest.raises(PermissionError):
        store.list_conversations()
    with pytest.raises(PermissionError):
        store.get_conversation(two["alice"][1]["id"])
    with pytest.raises(PermissionError):
        store.search("secret")


def test_removing_a_user_removes_their_conversations_only(two, store):
    users = UserStore(store.db)
    users.remove_user(users.by_name("bob").id)
    alice = two["alice"][0]
    assert len(alice.list_conversations()) == 1
    with pytest.raises(NotFound):
        two["bob"][0].get_conversation(two["bob"][1]["id"])


def test_usernames_are_unique_whatever_their_case(store):
    users = UserStore(store.db)
    users.add_user("Carol", None)
    with pytest.raises(Conflict):
        users.add_user("carol", None)
    assert users.find("CAROL")[0].username == "Carol"


def test_first_admin_receives_the_single_user_conversations(tmp_path):
    """A database from before accounts (m005, with data), migrated: its conversations belong to
    nobody until the first admin is created, then to that admin only."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, upto="m005_reply_finish_reason_citations")
    conn.close()
    old = Store(path)
    conv = old.create_conversation(title="from the single-user days")
    old.add_message(conv["id"], "user", "hello")
    old.close()

    store = Store(path)  # migrates to the latest
    users = UserStore(store.db)
    plain = users.add_user("first_user", None, "user")
    assert store.for_owner(plain.id).list_conversations() == []
    admin = users.add_user("boss", None, "admin")
    assert [c["id"] for c in store.for_owner(admin.id).list_conversations()] == [conv["id"]]
    later_admin = users.add_user("boss2", None, "admin")
    assert store.for_owner(later_admin.id).list_conversations() == []
    store.close()

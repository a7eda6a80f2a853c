"""Who may use which knowledge base, with accounts: an HR knowledge base shared with the group
``hr``, one shared with everyone, one kept private. Checked in the store (listing, lookup,
passages, search, the vector cache shared by everyone) and over HTTP through what an answer
cites: a user outside the group gets no passage of it, by name, by passage id or by search. On
SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from xiaoq.api.app import create_app
from xiaoq.auth.accounts import Accounts
from xiaoq.engine.fake import FakeEngine
from xiaoq.errors import Conflict, Forbidden, NotFound
from xiaoq.kb.ingest import Ingestor
from xiaoq.kb.service import KnowledgeBases
from xiaoq.store import open_store
from xiaoq.store.kb import knowledge_store
from xiaoq.store.users import UserStore

from tests.api.helpers import make_settings, parse_sse, wait_ready

HR_TEXT = "# 年假制度\n\n正式员工每年享有年假十五天，由人事部门审批。\n"
PUBLIC_TEXT = "# 打印机\n\n打印机墨盒在前台领取，年假期间前台照常开放。\n"
BOB_TEXT = "# 私人笔记\n\n我的年假计划是去海边。\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The same world on a SQLite file and on a real PostgreSQL."""
    store = open_store(tmp_path / "x.db" if request.param == "sqlite" else request.getfixturevalue("pg_url"))
    accounts = Accounts(UserStore(store.db))
    users = {
        "alice": accounts.create("alice", None, "admin"),
        "hana": accounts.create("hana", None, "user", ["hr"]),
        "bob": accounts.create("bob", None, "user"),
    }
    ks = knowledge_store(store.db)
    ids = {}
    for owner, name, text, sharing in (("alice", "hr", HR_TEXT, ("group", "hr")), ("alice", "public", PUBLIC_TEXT, ("everyone", None)), ("bob", "bobs", BOB_TEXT, None)):
        view = ks.for_viewer(users[owner])
        kb = view.ensure_kb(name)
        Ingestor(view).add_bytes(kb["id"], f"{name}.md", text.encode())
        if sharing:
            view.share(name, *sharing)
        ids[name] = kb["id"]
    ks.tenanted = True
    keys = {n: accounts.new_key(u)[1] for n, u in users.items()}
    yield {"store": store, "ks": ks, "users": users, "ids": ids, "keys": keys}
    store.close()


def test_each_user_sees_what_is_shared_with_them(world):
    ks, users = world["ks"], world["users"]
    names = {n: [k["name"] for k in ks.for_viewer(u).list_kbs()] for n, u in users.items()}
    assert names == {"alice": ["hr", "public"], "hana": ["hr", "public"], "bob": ["bobs", "public"]}
    bob, hana = ks.for_viewer(users["bob"]), ks.for_viewer(users["hana"])
    with pytest.raises(NotFound):
        bob.get_kb("hr")
    with pytest.raises(NotFound):
        hana.get_kb("bobs")
    with pytest.raises(Forbidden):
        hana.writable("hr")  # hers to use, not to change
    with pytest.raises(NotFound):
        bob.delete_kb("hr")
    with pytest.raises(Conflict):
        bob.ensure_kb("hr")  # the name is taken, though he cannot see by whom
    with pytest.raises(PermissionError):
        ks.list_kbs()  # accounts on: the store itself does not look


def test_passages_and_search_are_cut_to_the_visible(world):
    ks, users, ids = world["ks"], world["users"], world["ids"]
    hr_chunks = ks.for_viewer(users["hana"]).document_chunks(ks.for_viewer(users["hana"]).list_documents(ids["hr"])[0]["id"])
    assert hr_chunks
    bob = ks.for_viewer(users["bob"])
    assert bob.get_chunks([c["id"] for c in hr_chunks]) == {}
    assert bob.list_documents(ids["hr"]) == []
    assert bob.visible_ids([ids["hr"], ids["public"], ids["bobs"]]) == [ids["public"], ids["bobs"]]
    settings = make_settings(kb_dense=False)
    kbs = KnowledgeBases(ks, settings, embedder=None)
    every = [ids["hr"], ids["public"], ids["bobs"]]
    alice_hits = kbs.for_viewer(users["alice"]).retriever.search(every, "年假", k=10)
    assert {h.chunk["kb"] for h in alice_hits} == {"hr", "public"}  # bob's private notes: not even the admin's
    bob_hits = kbs.for_viewer(users["bob"]).retriever.search(every, "年假", k=10)
    assert {h.chunk["kb"] for h in bob_hits} == {"public", "bobs"}


def test_the_vector_cache_never_hands_one_users_scope_to_another(world):
    """Dense retrieval caches each scope's vectors; asking for the same ids after someone who
    could see more must not return what only they could see."""
    ks, users, ids = world["ks"], world["users"], world["ids"]

    class Unit:
        """Every text the same unit vector: dense ranking finds every passage of the scope."""

        name = "unit"

        def embed_passages(self, texts: Any) -> Any:
            return np.ones((len(texts), 2), dtype=np.float32) / 2**0.5

        def embed_query(self, text: str) -> Any:
            return np.ones(2, dtype=np.float32) / 2**0.5

    kbs = KnowledgeBases(ks, make_settings(kb_dense=True), embedder=Unit())  # type: ignore[arg-type]
    for owner, name, text in (("alice", "hr", HR_TEXT), ("alice", "public", PUBLIC_TEXT)):
        view = kbs.for_viewer(users[owner])
        Ingestor(view.store, view.embedder).add_bytes(ids[name], f"{name}-v.md", (text + "\n更多。\n").encode())
    scope = [ids["hr"], ids["public"]]
    hana = kbs.for_viewer(users["hana"]).retriever.search(scope, "年假", k=20, mode="dense")
    assert {h.chunk["kb"] for h in hana} == {"hr", "public"}
    bob = kbs.for_viewer(users["bob"]).retriever.search(scope, "年假", k=20, mode="dense")
    assert bob and {h.chunk["kb"] for h in bob} == {"public"}


@pytest.fixture
def client(world) -> Iterator[TestClient]:
    settings = make_settings(auth="accounts", kb_dense=False, user_rpm=0)
    app = create_app(settings, FakeEngine(settings, ["好的。"] * 20), store=world["store"], web_dir=None)
    with TestClient(app) as c:
        wait_ready(c)
        yield c


def as_(world: dict[str, Any], name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world['keys'][name]}"}


def cited(client: TestClient, headers: dict[str, str], kb: str) -> Any:
    r = client.post("/chat", json={"prompt": "年假有几天？", "kb": kb, "max_tokens": 4}, headers=headers)
    if r.status_code != 200:
        return r
    return {c["source"] for c in parse_sse(r.text)[-1]["citations"]}


def test_answers_cite_only_what_the_asker_may_see(client, world):
    hana, bob, alice = as_(world, "hana"), as_(world, "bob"), as_(world, "alice")
    assert cited(client, hana, "hr") == {"hr.md"}
    r = cited(client, bob, "hr")
    assert r.status_code == 404 and r.json()["error"]["code"] == "kb_not_found"
    assert cited(client, bob, "public") == {"public.md"}
    r = client.post("/v1/chat/completions", json={"model": "x", "messages": [{"role": "user", "content": "年假有几天？"}], "kb": "hr"}, headers=bob)
    assert r.status_code == 404
    r = client.post("/v1/chat/completions", json={"model": "x", "messages": [{"role": "user", "content": "年假有几天？"}], "kb": "hr", "max_tokens": 4}, headers=hana)
    assert r.status_code == 200 and {c["source"] for c in r.json()["citations"]} == {"hr.md"}

    hr_chunk = client.get("/api/kb/hr/search", params={"q": "年假"}, headers=hana).json()["data"][0]["chunk_id"]
    assert client.get(f"/api/kb/chunks/{hr_chunk}", headers=hana).status_code == 200
    assert client.get(f"/api/kb/chunks/{hr_chunk}", headers=bob).status_code == 404
    assert client.get("/api/kb/hr/search", params={"q": "年假"}, headers=bob).status_code == 404
    assert client.get("/api/kb/hr/documents", headers=bob).status_code == 404
    assert [k["name"] for k in client.get("/api/kb", headers=bob).json()["data"]] == ["bobs", "public"]
    upload = {"files": ("x.md", b"# x\n\nnew text\n", "text/markdown")}
    assert client.post("/api/kb/hr/documents", files=upload, headers=hana).status_code == 403
    assert client.post("/api/kb/hr/documents", files=upload, headers=bob).status_code == 409
    assert client.delete("/api/kb/hr", headers=hana).status_code == 403

    r = client.patch("/api/kb/hr", json={"visibility": "private"}, headers=hana)
    assert r.status_code == 403
    r = client.patch("/api/kb/hr", json={"visibility": "private"}, headers=alice)
    assert r.status_code == 200 and r.json()["visibility"] == "private" and r.json()["owner"] == "alice"
    assert cited(client, hana, "hr").status_code == 404  # no longer shared with her group
    assert client.patch("/api/kb/hr", json={"visibility": "group"}, headers=alice).status_code == 400
    made = client.post("/api/kb", json={"name": "bob-new"}, headers=bob).json()
    assert made["owner"] == "bob" and made["visibility"] == "private"


def test_conversations_answer_from_a_knowledge_base_only_while_it_is_shared(client, world):
    hana, bob, alice = as_(world, "hana"), as_(world, "bob"), as_(world, "alice")
    r = client.post("/api/conversations", json={"kb": "hr"}, headers=bob)
    assert r.status_code == 404 and r.json()["error"]["code"] == "kb_not_found"
    cid = client.post("/api/conversations", json={"kb": "hr"}, headers=hana).json()["id"]
    r = client.post(f"/api/conversations/{cid}/messages", json={"content": "年假有几天？", "max_tokens": 4}, headers=hana)
    assert {c["source"] for c in parse_sse(r.text)[-1]["citations"]} == {"hr.md"}
    mine = client.post("/api/conversations", json={}, headers=bob).json()["id"]
    r = client.post(f"/api/conversations/{mine}/messages", json={"content": "年假有几天？", "kb": "hr", "max_tokens": 4}, headers=bob)
    assert r.status_code == 404
    assert client.patch("/api/kb/hr", json={"visibility": "private"}, headers=alice).status_code == 200
    r = client.post(f"/api/conversations/{cid}/messages", json={"content": "年假有几天？", "max_tokens": 4}, headers=hana)
    assert r.status_code == 404 and r.json()["error"]["code"] == "kb_not_found"  # her conversation's knowledge base is no longer hers to use

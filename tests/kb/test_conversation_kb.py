"""Knowledge bases in stored conversations: the ``kb`` column (and a turn's override), citations
and what was retrieved stored with the reply, files attached to one conversation, and the
map-reduce summary of an attached file larger than the budget."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import make_settings, parse_sse, wait_ready
from tests.api.server import serve, wait_health
from tests.kb import docs
from xiaoq.api.app import create_app
from xiaoq.engine.fake import FakeEngine
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.types import Generation, GenerationRequest
from xiaoq.kb.answer import RULES, example_turns
from xiaoq.kb.ingest import Ingestor
from xiaoq.store import Store
from xiaoq.store.kb import KnowledgeStore


def _wait_job(get: Any, job_id: str) -> dict[str, Any]:
    for _ in range(1000):
        job = get(f"/api/kb/jobs/{job_id}").json()
        if job["status"] in ("done", "error"):
            return job
        time.sleep(0.02)
    raise AssertionError("job never finished")


@pytest.fixture(scope="module")
def real(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = make_settings(ctx=4096, parallel=1, queue=2, threads=1, kv_cache_mb=16, kb_dense=False)
    store = Store(tmp_path_factory.mktemp("conv-kb") / "x.db")
    ks = KnowledgeStore(store.db)
    Ingestor(ks).add_bytes(ks.ensure_kb("office")["id"], "admin.md", docs.MARKDOWN.encode())
    with serve(create_app(settings, LlamaEngine(tiny_gguf, settings), store=store, web_dir=None)) as url:
        wait_health(url)
        yield url
    store.close()


def test_conversation_kb_column_citations_stored_and_turn_override(real: str) -> None:
    c = httpx.Client(base_url=real, timeout=60)
    conv = c.post("/api/conversations", json={"kb": "office"}).json()
    assert conv["kb"] == "office"
    events = parse_sse(c.post(f"/api/conversations/{conv['id']}/messages", json={"content": "停车证几点发放？", "max_tokens": 3}).text)
    done = events[-1]
    assert done["citations"][0]["source"] == "admin.md" and done["citations"][0]["anchor"] == "停车-规定"
    stored = c.get(f"/api/conversations/{conv['id']}").json()["messages"]
    assert stored[0]["content"] == "停车证几点发放？"  # the question as asked, never the passages
    assert stored[1]["citations"] == done["citations"]
    assert stored[1]["retrieval"][0]["score"] > 0 and stored[1]["retrieval"][0]["n"] == 1
    plain = parse_sse(c.post(f"/api/conversations/{conv['id']}/messages", json={"content": "停车证几点发放？", "kb": "", "max_tokens": 2}).text)
    assert "citations" not in plain[-1]
    assert c.patch(f"/api/conversations/{conv['id']}", json={"kb": None}).json()["kb"] is None
    assert c.patch(f"/api/conversations/{conv['id']}", json={"kb": "missing"}).status_code == 404
    assert c.post("/api/conversations", json={"kb": "Bad!"}).json()["error"]["code"] == "invalid_kb_name"


def test_files_attached_to_one_conversation(real: str) -> None:
    c = httpx.Client(base_url=real, timeout=60)
    conv = c.post("/api/conversations", json={}).json()
    other = c.post("/api/conversations", json={}).json()
    r = c.post(f"/api/conversations/{conv['id']}/files", files=[("files", ("notice.md", "# 通知\n\n打印机墨盒在前台领取。".encode()))])
    assert r.status_code == 202 and _wait_job(c.get, r.json()["id"])["progress"]["added"] == 1
    assert [d["source"] for d in c.get(f"/api/conversations/{conv['id']}/files").json()["data"]] == ["notice.md"]
    done = parse_sse(c.post(f"/api/conversations/{conv['id']}/messages", json={"content": "墨盒在哪里领取？", "max_tokens": 2}).text)[-1]
    assert [x["source"] for x in done["citations"]] == ["notice.md"]
    elsewhere = parse_sse(c.post(f"/api/conversations/{other['id']}/messages", json={"content": "墨盒在哪里领取？", "max_tokens": 2}).text)[-1]
    assert "citations" not in elsewhere  # another conversation does not see them
    assert all(k["name"] for k in c.get("/api/kb").json()["data"]) and "@" not in str(c.get("/api/kb").json())
    assert c.delete(f"/api/conversations/{conv['id']}").status_code == 204
    assert c.post(f"/api/conversations/{conv['id']}/files", files=[("files", ("a.md", b"x"))]).status_code == 404


def test_summary_of_a_large_attached_file_is_map_reduce_with_progress(tmp_path: Path) -> None:
    settings = make_settings(kb_dense=False, kb_passage_tokens=60)
    engine = FakeEngine(settings)
    store = Store(tmp_path / "x.db")
    with TestClient(create_app(settings, engine, store=store, web_dir=None)) as c:
        wait_ready(c)
        conv = c.post("/api/conversations", json={}).json()
        text = "\n\n".join(f"## 第{i}章\n第{i}章规定了编号为{i}的事项，内容较长需要完整阅读。" * 3 for i in range(40))
        job = c.post(f"/api/conversations/{conv['id']}/files", files=[("files", ("rules.md", text.encode()))]).json()
        _wait_job(c.get, job["id"])
        n_before = len(engine.requests)
        events = parse_sse(c.post(f"/api/conversations/{conv['id']}/messages", json={"content": "总结这份文件"}).text)
        progress = [e["progress"] for e in events if e.get("status") == "reading_document"]
        assert progress[0] == {"done": 0, "total": progress[-1]["total"]} and progress[-1]["done"] == progress[-1]["total"] > 1
        maps, reply = engine.requests[n_before:-1], engine.requests[-1]
        assert len(maps) == progress[-1]["total"] and all(r.priority == -1 for r in maps)
        assert reply.messages[-1]["content"].startswith('<data label="summaries of the document parts"')
        assert reply.messages[-1]["content"].endswith("总结这份文件")
        assert events[-1]["citations"][0]["source"] == "rules.md"
    store.close()


def test_a_conversation_turn_from_a_knowledge_base_gets_the_answer_rules_in_its_system_message(tmp_path: Path) -> None:
    settings = make_settings(kb_dense=False)
    engine = FakeEngine(settings)
    store = Store(tmp_path / "x.db")
    ks = KnowledgeStore(store.db)
    Ingestor(ks).add_bytes(ks.ensure_kb("office")["id"], "admin.md", docs.MARKDOWN.encode())
    with TestClient(create_app(settings, engine, store=store, web_dir=None)) as c:
        wait_ready(c)
        conv = c.post("/api/conversations", json={"kb": "office", "system_prompt": "OPERATOR"}).json()
        parse_sse(c.post(f"/api/conversations/{conv['id']}/messages", json={"content": "停车证几点发放？"}).text)
        grounded = engine.requests[-1].messages
        parse_sse(c.post(f"/api/conversations/{conv['id']}/messages", json={"content": "停车证几点发放？", "kb": ""}).text)
        plain = engine.requests[-1].messages
    store.close()
    assert grounded[0]["content"] == "OPERATOR\n\n" + RULES["zh"] and grounded[-1]["content"].startswith("<data ")
    assert plain[0]["content"] == "OPERATOR"  # a turn without the knowledge base: the prompt as it is


class RecordingEngine(LlamaEngine):
    """The real engine, keeping the messages of every request it was given."""

    requests: list[GenerationRequest]

    async def submit(self, request: GenerationRequest) -> Generation:
        self.requests = [*getattr(self, "requests", []), request]
        return await super().submit(request)


def test_a_conversation_turn_from_a_knowledge_base_gets_the_worked_turns_before_its_history(tiny_gguf: Path, tmp_path: Path) -> None:
    settings = make_settings(ctx=4096, parallel=1, queue=2, threads=1, kv_cache_mb=16, kb_dense=False, max_tokens=4)
    engine = RecordingEngine(tiny_gguf, settings)
    store = Store(tmp_path / "x.db")
    ks = KnowledgeStore(store.db)
    Ingestor(ks).add_bytes(ks.ensure_kb("office")["id"], "admin.md", docs.MARKDOWN.encode())
    with TestClient(create_app(settings, engine, store=store, web_dir=None)) as c:
        wait_ready(c, timeout=60)
        conv = c.post("/api/conversations", json={"kb": "office", "system_prompt": "OPERATOR"}).json()
        first = parse_sse(c.post(f"/api/conversations/{conv['id']}/messages", json={"content": "停车证几点发放？"}).text)
        second = parse_sse(c.post(f"/api/conversations/{conv['id']}/messages", json={"content": "访客在哪里登记停车？"}).text)
    store.close()
    assert "done" in first[-1] and "done" in second[-1]  # the real engine answered both turns
    sent = engine.requests[-1].messages
    worked = example_turns("zh")
    assert sent[0]["content"] == "OPERATOR\n\n" + RULES["zh"]
    assert [dict(role=m["role"], content=m["content"]) for m in sent[1 : 1 + len(worked)]] == [dict(m) for m in worked]
    history = sent[1 + len(worked) : -1]
    assert [m["role"] for m in history] == ["user", "assistant"] and history[0]["content"] == "停车证几点发放？"
    passage = "停车证每日九点发放"
    assert passage in sent[-1]["content"] and sent[-1]["content"].endswith("访客在哪里登记停车？")
    assert [m for m in sent[:-1] if passage in m["content"]] == []  # the passages only in the last user message

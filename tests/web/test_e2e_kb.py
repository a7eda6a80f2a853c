"""The knowledge-base parts of the web UI in Debian's Chromium, over the real engine on the tiny
GGUF and a real SQLite file, with an API key: pick a knowledge base for a conversation, ask, see
the references, open a passage (fetched with the key in fetch, not a link), see what was
retrieved with its scores, and attach a file to the conversation with progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from playwright.sync_api import expect

from tests.kb import docs
from tests.web.conftest import open_page, screenshot, send, wait_answer_done, xiaoq_server
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.kb.ingest import Ingestor
from xiaoq.store.db import Database
from xiaoq.store.kb import KnowledgeStore

pytestmark = pytest.mark.browser
KEY = "kb-ui-key-0123"


@pytest.fixture(scope="module")
def server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("web-kb") / "xiaoq.db"
    with Database(db) as d:
        ks = KnowledgeStore(d)
        Ingestor(ks).add_bytes(ks.ensure_kb("office")["id"], "admin.md", docs.MARKDOWN.encode())
    with xiaoq_server(lambda s: LlamaEngine(tiny_gguf, s), db, default_max_tokens=4, max_tokens=16, api_key=KEY, kb_dense=False) as url:
        yield url


def enter_key(page: Any, server: str) -> None:
    page.goto(server)
    dialog = page.locator(".modal input")
    dialog.fill(KEY)
    dialog.press("Enter")
    expect(page.get_by_test_id("kb-select")).to_be_visible()


def test_pick_a_knowledge_base_ask_and_open_the_cited_passage(browser: Any, server: str) -> None:
    with open_page(browser, server) as (page, watch):
        enter_key(page, server)
        page.get_by_test_id("kb-select").select_option("office")
        expect(page.get_by_test_id("kb-select")).to_have_value("office")
        send(page, "停车证几点发放？")
        wait_answer_done(page)
        answer = page.locator(".msg-assistant").last
        ref = answer.locator(".citation").first
        expect(ref).to_contain_text("admin.md#停车-规定")
        chunk_requests: list[Any] = []
        page.on("request", lambda r: chunk_requests.append(r) if "/api/kb/chunks/" in r.url else None)
        ref.click()
        expect(answer.locator(".passage-text")).to_contain_text("停车证每日九点发放")
        assert chunk_requests and chunk_requests[0].headers.get("authorization") == f"Bearer {KEY}"
        answer.locator(".retrieved-toggle").click()
        expect(answer.locator("table.retrieved tr.used")).to_have_count(answer.locator(".citation").count())
        screenshot(page, "kb-citations")
        page.reload()
        expect(page.locator(".msg-assistant").last.locator(".citation").first).to_contain_text("admin.md")
        watch.assert_clean()


def test_attach_a_file_to_the_conversation(browser: Any, server: str, tmp_path: Path) -> None:
    note = tmp_path / "notice.md"
    note.write_text("# 通知\n\n打印机墨盒在前台领取。", encoding="utf-8")
    with open_page(browser, server) as (page, watch):
        enter_key(page, server)
        page.get_by_test_id("attach-input").set_input_files(str(note))
        expect(page.locator(".kb-file")).to_have_text("notice.md", timeout=60_000)
        send(page, "墨盒在哪里领取？")
        wait_answer_done(page)
        expect(page.locator(".msg-assistant").last.locator(".citation").first).to_contain_text("notice.md")
        cid = page.url.rsplit("/", 1)[-1]
        files = httpx.get(f"{server}/api/conversations/{cid}/files", headers={"Authorization": f"Bearer {KEY}"}).json()["data"]
        assert [f["source"] for f in files] == ["notice.md"]
        watch.assert_clean()

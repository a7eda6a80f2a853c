"""The web UI over the REAL llama.cpp engine (tiny GGUF): ask and watch the answer stream, reload and
find it again, stop mid-answer and keep the partial reply, regenerate, edit, switch, delete (with
undo), search, export, and a Chinese IME that must not send on Enter.

The tiny model's weights are random: its answers are gibberish that runs to max_tokens, which is
what makes "stop mid-answer" reliable."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from playwright.sync_api import expect

from xiaoq.engine.llama_engine import LlamaEngine

from tests.web.conftest import ask_in_new_chat, conversation_id, open_page, screenshot, send, wait_answer_done, xiaoq_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("web-real") / "xiaoq.db"
    with xiaoq_server(lambda s: LlamaEngine(tiny_gguf, s), db, default_max_tokens=1500, max_tokens=8000) as url:
        yield url


RECORD_LENGTHS = """() => {
  window.__lengths = [];
  const chat = document.querySelector('.chat');
  new MutationObserver(() => {
    const md = document.querySelector('.msg-assistant:last-child .md');
    if (md) window.__lengths.push(md.textContent.length);
  }).observe(chat, { subtree: true, childList: true, characterData: true });
}"""


def last_answer(page: Any) -> Any:
    return page.locator(".msg-assistant").last


def stored(server: str, cid: str) -> list[dict[str, Any]]:
    return httpx.get(f"{server}/api/conversations/{cid}").json()["messages"]


def eventually(get: Any, ok: Any, timeout: float = 10.0) -> Any:
    """Polls ``get()`` until ``ok(value)`` (bounded), returning the last value."""
    deadline = time.monotonic() + timeout
    value = get()
    while not ok(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = get()
    return value


def test_ask_streams_the_answer_and_reload_keeps_it(browser: Any, server: str) -> None:
    with open_page(browser, server) as (page, watch):
        page.goto(server + "/")
        expect(page.locator(".empty .starter-group")).to_have_count(3)  # FAQ, programming, writing
        screenshot(page, "01-empty-chat")
        page.evaluate(RECORD_LENGTHS)
        send(page, "你好，小Q！请介绍一下你自己。")
        expect(page.get_by_test_id("stop")).to_be_visible()
        wait_answer_done(page)
        answer = last_answer(page)
        expect(answer).to_have_attribute("data-status", "complete")
        text = answer.locator(".md").inner_text()
        assert text.strip()
        lengths = page.evaluate("window.__lengths")
        # Streamed: the answer grew through several distinct lengths, not one final paint.
        assert len(set(n for n in lengths if n > 0)) >= 3, lengths
        expect(answer.locator(".stats")).to_contain_text("ms")
        expect(page.locator(".msg-user .user-text")).to_have_text("你好，小Q！请介绍一下你自己。")
        cid = conversation_id(page)
        expect(page.locator(f".conv[data-id='{cid}']")).to_have_class("conv current")
        screenshot(page, "02-answer")

        page.reload()
        expect(page.locator(".msg-user .user-text")).to_have_text("你好，小Q！请介绍一下你自己。")
        assert last_answer(page).locator(".md").inner_text() == text
        assert conversation_id(page) == cid
        watch.assert_clean()


def test_stop_keeps_the_partial_reply_after_reload(browser: Any, server: str) -> None:
    # A conversation whose replies may be long (its own max_tokens), opened through the URL hash.
    conv = httpx.post(server + "/api/conversations", json={"settings": {"max_tokens": 3500}}).json()
    with open_page(browser, server) as (page, watch):
        page.goto(f"{server}/#/c/{conv['id']}")
        expect(page.locator(".empty")).to_be_visible()
        send(page, "写一篇很长的文章")
        page.wait_for_function("() => (document.querySelector('.msg-assistant:last-child .md')?.textContent.length ?? 0) > 30")
        page.get_by_test_id("stop").click()
        wait_answer_done(page)
        expect(page.get_by_test_id("send")).to_be_visible()
        answer = last_answer(page)
        expect(answer).to_have_attribute("data-status", "incomplete")
        expect(answer.locator(".notice")).to_contain_text("回答未完成")
        partial = answer.locator(".md").inner_text()
        assert partial.strip()

        # The server writes the stopped reply as it finishes cancelling, just after our stream ends
        # (a periodic save before it has text too, but no finish reason: wait for the final row).
        reply = eventually(lambda: stored(server, conv["id"])[-1], lambda m: m.get("finish_reason") == "cancelled")
        assert reply["role"] == "assistant" and reply["status"] == "incomplete"

        page.reload()
        answer = last_answer(page)
        expect(answer).to_have_attribute("data-status", "incomplete")
        after = " ".join(answer.locator(".md").inner_text().split())
        partial = " ".join(partial.split())  # a soft line break may lay out as a space once rendered whole
        # The same reply (the server may have produced a few more tokens before it saw the stop).
        assert after[:20] == partial[:20] and len(after) >= len(partial) * 0.9
        watch.assert_clean()


def test_regenerate_and_edit(browser: Any, server: str) -> None:
    with open_page(browser, server) as (page, watch):
        page.goto(server + "/")
        cid = ask_in_new_chat(page, "第一个问题")
        first = stored(server, cid)
        assert [m["role"] for m in first] == ["user", "assistant"]

        last_answer(page).hover()
        # The action bar's button (a repetition notice may offer a second one in the text).
        last_answer(page).locator(".msg-actions").get_by_role("button", name="重新生成").click()
        wait_answer_done(page)
        again = stored(server, cid)
        assert [m["role"] for m in again] == ["user", "assistant"]
        assert again[1]["id"] != first[1]["id"] and again[1]["status"] == "complete"

        user = page.locator(".msg-user").first
        user.hover()
        user.get_by_role("button", name="编辑").click()
        user.locator("textarea").fill("改过的问题")
        user.get_by_role("button", name="保存并发送").click()
        wait_answer_done(page)
        expect(page.locator(".msg-user .user-text")).to_have_text("改过的问题")
        edited = stored(server, cid)
        assert [(m["role"], m["content"] if m["role"] == "user" else "") for m in edited] == [("user", "改过的问题"), ("assistant", "")]
        watch.assert_clean()


def test_switch_rename_delete_with_undo_search_and_export(browser: Any, server: str) -> None:
    with open_page(browser, server) as (page, watch):
        page.goto(server + "/")
        apple = ask_in_new_chat(page, "关于苹果的问题")
        banana = ask_in_new_chat(page, "关于香蕉的问题")
        assert apple != banana

        # Switch back and forth.
        page.locator(f".conv[data-id='{apple}'] .conv-title").click()
        expect(page.locator(".msg-user .user-text")).to_have_text("关于苹果的问题")
        page.locator(f".conv[data-id='{banana}'] .conv-title").click()
        expect(page.locator(".msg-user .user-text")).to_have_text("关于香蕉的问题")

        # Rename (kept on the server).
        page.locator(f".conv[data-id='{apple}'] .conv-more").click()
        page.get_by_role("menuitem", name="重命名").click()
        rename = page.locator(f".conv[data-id='{apple}'] input.rename-input")
        rename.fill("水果：苹果")
        rename.press("Enter")
        expect(page.locator(f".conv[data-id='{apple}'] .conv-title")).to_have_text("水果：苹果")
        assert httpx.get(f"{server}/api/conversations/{apple}").json()["title"] == "水果：苹果"

        # Search finds the other conversation and opens it.
        page.locator(".search input").fill("苹果的问")
        hit = page.locator(".hit").first
        expect(hit).to_contain_text("苹果")
        hit.click()
        expect(page.locator(".msg-user .user-text")).to_have_text("关于苹果的问题")
        page.locator(".search input").fill("")

        # Export as Markdown: a download with the question in it.
        page.locator(f".conv[data-id='{apple}'] .conv-more").click()
        with page.expect_download() as dl:
            page.get_by_role("menuitem", name="导出 Markdown").click()
        assert "关于苹果的问题" in Path(dl.value.path()).read_text(encoding="utf-8")

        # Delete, undo, delete for real.
        row = page.locator(f".conv[data-id='{banana}']")
        row.locator(".conv-more").click()
        page.get_by_role("menuitem", name="删除").click()
        expect(row).to_have_count(0)
        page.get_by_test_id("undo").click()
        expect(row).to_have_count(1)
        row.locator(".conv-more").click()
        page.get_by_role("menuitem", name="删除").click()
        expect(page.get_by_test_id("undo")).to_have_count(0, timeout=15_000)  # the undo window closed
        ids = [c["id"] for c in httpx.get(server + "/api/conversations").json()["data"]]
        assert banana not in ids and apple in ids
        page.reload()
        expect(page.locator(f".conv[data-id='{banana}']")).to_have_count(0)
        expect(page.locator(f".conv[data-id='{apple}']")).to_have_count(1)
        watch.assert_clean()


def test_enter_while_ime_composes_does_not_send(browser: Any, server: str) -> None:
    with open_page(browser, server) as (page, watch):
        page.goto(server + "/")
        page.get_by_test_id("new-chat").click()
        box = page.locator("textarea.composer-input")
        box.click()
        cdp = page.context.new_cdp_session(page)
        # Some text is already committed, then a pinyin IME composes the next word and the user
        # presses Enter to confirm the candidate: that Enter must not send "你好".
        cdp.send("Input.insertText", {"text": "你好"})
        cdp.send("Input.imeSetComposition", {"text": "ma", "selectionStart": 2, "selectionEnd": 2})
        page.keyboard.press("Enter")
        cdp.send("Input.insertText", {"text": "吗"})
        page.wait_for_timeout(300)
        expect(page.locator(".msg")).to_have_count(0)
        # (CDP's synthetic Enter also reaches the textarea as a newline; a real IME swallows it.)
        assert box.input_value().replace("\n", "") == "你好吗"
        box.fill("你好吗")
        box.press("Enter")
        expect(page.locator(".msg-user .user-text")).to_have_text("你好吗")
        wait_answer_done(page)
        watch.assert_clean()

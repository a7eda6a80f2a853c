"""Continue in the browser (Debian's Chromium, the real llama.cpp engine on the tiny GGUF, which
never ends on its own, so every reply is cut by max_tokens): the reply says it reached its length
limit and offers Continue; Continue goes on in the same message, and a reload shows one reply with
the whole text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from xiaoq.engine.llama_engine import LlamaEngine

from tests.web.conftest import open_page, screenshot, send, wait_answer_done, xiaoq_server

pytestmark = pytest.mark.browser


def test_continue_a_cut_reply_then_reload_keeps_one_reply(browser: Any, tiny_gguf: Path, tmp_path: Path) -> None:
    with xiaoq_server(lambda s: LlamaEngine(tiny_gguf, s), tmp_path / "c.db", default_max_tokens=8) as url:
        with open_page(browser, url) as (page, watch):
            page.goto(url + "/")
            send(page, "写一段话")
            wait_answer_done(page)
            answer = page.locator(".msg-assistant").last
            notice = answer.locator(".notice-length")
            expect(notice).to_contain_text("回答达到了长度上限")
            first = answer.locator(".md").inner_text()
            screenshot(page, "continue-length-notice")
            notice.locator("button.continue").click()
            expect(answer.locator(".md")).not_to_have_text(first)
            expect(answer).to_have_attribute("data-status", "complete")
            expect(answer.locator(".notice-length button.continue")).to_be_visible()  # cut again at 8 more tokens
            grown = answer.locator(".md").inner_text()
            assert len(grown) > len(first)
            expect(page.locator(".msg-assistant")).to_have_count(1)
            screenshot(page, "continue-after")
            page.reload()
            reloaded = page.locator(".msg-assistant")
            expect(reloaded).to_have_count(1)
            expect(reloaded.locator(".md")).to_have_text(grown)
            expect(reloaded.locator(".notice-length")).to_be_visible()
            watch.assert_clean()

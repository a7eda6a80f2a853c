"""The loop guard in the browser (Debian's Chromium; a FakeEngine that runs the real guard over
its characters, since the reply must loop on cue): the repeated copies the page had shown are
dropped, and the reply says it was stopped because it was repeating itself, with Continue and
Regenerate; Continue goes on in the same reply (kept after a reload), Regenerate answers again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from xiaoq.engine.fake import FakeEngine

from tests.web.conftest import open_page, screenshot, send, xiaoq_server

pytestmark = pytest.mark.browser

HEAD = "下面是答案。\n\n"
LINE = "这一行会一遍又一遍地出现在回答里。\n\n"
LOOPED = HEAD + LINE * 15


def test_a_looping_reply_is_cut_and_says_why(browser: Any, tmp_path: Path) -> None:
    replies = [LOOPED, "后面还有新的一句。", "换一种说法的新回答。"]
    with xiaoq_server(lambda s: FakeEngine(s, replies=replies, delay=0.002), tmp_path / "g.db", loop_guard=True) as url:
        with open_page(browser, url) as (page, watch):
            page.goto(url + "/")
            send(page, "讲点什么")
            answer = page.locator(".msg-assistant").last
            notice = answer.locator(".notice-repetition")
            expect(notice).to_contain_text("已停止：回答在不断重复", timeout=60_000)
            expect(answer).to_have_attribute("data-status", "complete")
            expect(answer.locator(".md")).to_contain_text("这一行会一遍又一遍地出现在回答里。")
            assert answer.locator(".md p").count() == 2  # the head and one copy of the line
            screenshot(page, "loop-guard-notice")
            notice.locator("button.continue").click()  # goes on in the same reply
            expect(answer.locator(".md")).to_contain_text("后面还有新的一句。")
            expect(page.locator(".msg-assistant")).to_have_count(1)
            expect(page.locator(".notice-repetition")).to_have_count(0)
            page.reload()  # stored as one reply
            reloaded = page.locator(".msg-assistant").last.locator(".md")
            expect(reloaded).to_contain_text("后面还有新的一句。")
            assert reloaded.inner_text().count("这一行会一遍又一遍地出现在回答里。") == 1
            page.locator(".msg-assistant").last.get_by_role("button", name="重新生成").click()
            expect(page.locator(".msg-assistant").last.locator(".md")).to_have_text("换一种说法的新回答。")
            expect(page.locator(".notice-repetition")).to_have_count(0)
            watch.assert_clean()

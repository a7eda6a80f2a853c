"""The web UI when things go wrong or the model is hostile, with a scripted FakeEngine (the one place
a test must control what the model says or how slow it is): the hostile corpus renders as text
(no dialog, no script, no request to another host, no CSP violation), model loading, a full
queue (503 + Retry-After, retried automatically), the server going away, the API key prompt, and
the phone layout with the dark theme and the English switch."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from xiaoq.engine.fake import FakeEngine

from tests.web.conftest import open_page, screenshot, send, wait_answer_done, xiaoq_server

pytestmark = pytest.mark.browser

HOSTILE = json.loads((Path(__file__).resolve().parents[2] / "frontend/src/__tests__/hostile.json").read_text(encoding="utf-8"))

SHOWCASE = """# 冒泡排序

下面是 **Python** 实现，时间复杂度 $O(n^2)$：

```python
def bubble_sort(a: list[int]) -> list[int]:
    for i in range(len(a)):
        for j in range(len(a) - 1 - i):
            if a[j] > a[j + 1]:
                a[j], a[j + 1] = a[j + 1], a[j]
    return a
```

| 算法 | 平均 | 稳定 |
|:--|:--:|--:|
| 冒泡 | $O(n^2)$ | 是 |
| 快速 | $O(n \\log n)$ | 否 |

参考：[维基百科](https://zh.wikipedia.org/wiki/冒泡排序)
"""


def test_hostile_model_output_renders_as_harmless_text(browser: Any, tmp_path: Path) -> None:
    reply = "\n\n".join(h["text"] for h in HOSTILE)
    # The fake's tokens are characters: let the whole corpus through.
    big = dict(ctx=32768, default_max_tokens=16000, max_tokens=16000)
    with xiaoq_server(lambda s: FakeEngine(s, replies=[reply, SHOWCASE]), tmp_path / "h.db", **big) as url:
        with open_page(browser, url) as (page, watch):
            page.goto(url + "/")
            send(page, "say something nasty")
            wait_answer_done(page)
            md = page.locator(".msg-assistant .md").last
            # The text is there, as text.
            expect(md).to_contain_text("<img src=x onerror=alert(1)>")
            expect(md).to_contain_text("<script>alert(1)</script>")
            expect(md).to_contain_text("javascript:alert(1)")
            expect(md).to_contain_text('<meta http-equiv="refresh"')
            expect(md.locator("pre code").last).to_contain_text("<script>alert(1)</script>")  # the last item
            expect(page.locator(".msg-assistant").last).to_have_attribute("data-status", "complete")
            bad = page.evaluate(
                """() => {
                  // The rendered answers only (the page's own icons are SVG).
                  const root = document.querySelector('.messages');
                  const bodies = [...root.querySelectorAll('.msg-body')];
                  const out = [];
                  const all = (sel) => bodies.flatMap((b) => [...b.querySelectorAll(sel)]);
                  for (const el of all('script,iframe,object,embed,svg,style,form,meta,link,base,input'))
                    out.push('element ' + el.tagName);
                  for (const el of all('*')) {
                    for (const a of el.attributes) {
                      if (a.name.startsWith('on') || a.name === 'style') out.push(el.tagName + ' ' + a.name);
                    }
                  }
                  for (const a of all('a[href]'))
                    if (!/^(https?:|mailto:)/i.test(a.getAttribute('href'))) out.push('href ' + a.getAttribute('href'));
                  for (const img of all('img[src]')) out.push('img ' + img.getAttribute('src'));
                  return bodies.length ? out : ['no rendered messages'];
                }"""
            )
            assert bad == []
            page.wait_for_timeout(500)  # let any lazy image or handler fire if one slipped through
            screenshot(page, "05-hostile-output")

            # A well-behaved answer: highlighting, a table, math and a safe link.
            send(page, "冒泡排序")
            wait_answer_done(page)
            answer = page.locator(".msg-assistant").last
            expect(answer.locator(".code-block .code-lang")).to_have_text("python")
            expect(answer.locator(".code-block .hljs-keyword").first).to_be_visible()  # grammar loaded lazily
            expect(answer.locator("math").first).to_be_attached()  # KaTeX loaded lazily
            link = answer.locator("a[href^='https://zh.wikipedia.org']")
            expect(link).to_have_attribute("target", "_blank")
            expect(link).to_have_attribute("rel", "noopener noreferrer")
            answer.locator(".code-copy").click()
            expect(answer.locator(".code-copy")).to_have_text("已复制")
            screenshot(page, "03-markdown-answer")
            watch.assert_clean()


def test_model_loading_then_ready(browser: Any, tmp_path: Path) -> None:
    with xiaoq_server(lambda s: FakeEngine(s, load_delay=4.0, replies=["准备好了"]), tmp_path / "l.db", wait_ready=False) as url:
        with open_page(browser, url) as (page, watch):
            page.goto(url + "/")
            expect(page.get_by_test_id("banner-loading")).to_be_visible()
            send(page, "在吗？")  # answered once the model is ready (503 model_loading -> wait -> retry)
            expect(page.get_by_test_id("banner-loading")).to_have_count(0, timeout=20_000)
            wait_answer_done(page)
            expect(page.locator(".msg-assistant .md").last).to_have_text("准备好了")
            watch.assert_clean()


def test_busy_server_is_retried_after_retry_after(browser: Any, tmp_path: Path) -> None:
    with xiaoq_server(lambda s: FakeEngine(s, delay=0.05), tmp_path / "b.db", parallel=1, queue=0) as url:
        # Another client holds the only slot for ~3 s.
        hog = threading.Thread(target=lambda: httpx.post(url + "/chat", json={"prompt": "x" * 60}, timeout=30), daemon=True)
        hog.start()
        with open_page(browser, url) as (page, watch):
            page.goto(url + "/")
            page.wait_for_function("() => true")
            send(page, "排队")
            banner = page.get_by_test_id("banner-busy")
            expect(banner).to_be_visible(timeout=10_000)
            expect(banner).to_contain_text("服务器繁忙")
            expect(banner).to_contain_text("秒后重试")
            wait_answer_done(page)
            expect(page.locator(".msg-assistant").last).to_have_attribute("data-status", "complete")
            expect(page.locator(".msg-assistant .md").last).to_have_text("排队")  # the fake echoes
            expect(banner).to_have_count(0)
            # 503s are "failed to load resource" console errors, not CSP ones: still clean.
            watch.assert_clean()
        hog.join(30)


def test_server_down_is_reported(browser: Any, tmp_path: Path) -> None:
    with open_page(browser, "http://127.0.0.1") as (page, _watch):
        with xiaoq_server(lambda s: FakeEngine(s), tmp_path / "d.db") as url:
            page.goto(url + "/")
            expect(page.locator(".empty")).to_be_visible()
        send(page, "还在吗？")
        expect(page.get_by_test_id("banner-down")).to_be_visible(timeout=15_000)
        expect(page.locator(".msg-assistant .notice-error")).to_contain_text("无法连接服务器")


def test_api_key_is_asked_once_and_kept(browser: Any, tmp_path: Path) -> None:
    with xiaoq_server(lambda s: FakeEngine(s, replies=["ok"]), tmp_path / "k.db", api_key="s3cret-key") as url:
        with open_page(browser, url) as (page, watch):
            page.goto(url + "/")
            dialog = page.get_by_role("dialog")
            expect(dialog).to_be_visible()
            dialog.locator("input").fill("wrong")
            dialog.get_by_role("button", name="保存").click()
            expect(dialog).to_contain_text("密钥不正确")
            dialog.locator("input").fill("s3cret-key")
            dialog.get_by_role("button", name="保存").click()
            expect(dialog).to_have_count(0)
            send(page, "hello")
            wait_answer_done(page)
            expect(page.locator(".msg-assistant .md").last).to_have_text("ok")
            page.reload()
            expect(page.locator(".msg-user .user-text")).to_have_text("hello")
            expect(page.get_by_role("dialog")).to_have_count(0)
            assert page.evaluate("localStorage.getItem('xiaoq.apiKey')") == "s3cret-key"


def test_phone_layout_dark_theme_and_english(browser: Any, tmp_path: Path) -> None:
    with xiaoq_server(lambda s: FakeEngine(s, replies=[SHOWCASE]), tmp_path / "m.db") as url:
        with open_page(browser, url, viewport={"width": 390, "height": 800}, color_scheme="dark", is_mobile=True, has_touch=True) as (page, watch):
            page.goto(url + "/")
            sidebar = page.locator(".sidebar")
            assert sidebar.bounding_box()["x"] < 0  # the drawer is closed on a phone
            send(page, "冒泡排序")
            wait_answer_done(page)
            bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert bg == "rgb(13, 17, 23)"  # dark theme from prefers-color-scheme
            screenshot(page, "04-phone-dark")
            page.locator(".menu-btn").click()
            expect(sidebar.locator(".conv")).to_have_count(1)
            page.wait_for_timeout(300)  # the drawer slides in
            assert sidebar.bounding_box()["x"] >= 0
            screenshot(page, "06-phone-drawer")
            sidebar.locator(".conv-title").click()  # picking a chat closes the drawer
            page.wait_for_timeout(300)
            assert sidebar.bounding_box()["x"] < 0

            page.get_by_test_id("lang").click()
            expect(page.locator("textarea.composer-input")).to_have_attribute("placeholder", "Ask anything (Enter to send)")
            assert page.evaluate("document.documentElement.lang") == "en"
            page.get_by_test_id("theme").click()  # auto -> light
            assert page.evaluate("document.documentElement.dataset.theme") == "light"
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
            page.reload()
            expect(page.locator("textarea.composer-input")).to_have_attribute("placeholder", "Ask anything (Enter to send)")
            assert page.evaluate("document.documentElement.dataset.theme") == "light"
            watch.assert_clean()


def test_autoscroll_stops_when_scrolled_up_and_suggestions(browser: Any, tmp_path: Path) -> None:
    # Tall but short (the fake streams one character per token): 150 one-line paragraphs.
    long_reply = "\n\n".join(f"第{i}段" for i in range(150))
    big = dict(ctx=32768, default_max_tokens=16000, max_tokens=16000)
    with xiaoq_server(lambda s: FakeEngine(s, replies=["短回答", long_reply], delay=0.005), tmp_path / "s.db", **big) as url:
        with open_page(browser, url, viewport={"width": 1000, "height": 700}) as (page, watch):
            page.goto(url + "/")
            send(page, "如何给列表排序")
            wait_answer_done(page)

            # Input suggestions from past questions (debounced).
            box = page.locator("textarea.composer-input")
            box.fill("")
            box.press_sequentially("如何", delay=50)
            option = page.get_by_role("option", name="如何给列表排序")
            expect(option).to_be_visible()
            option.click()
            assert box.input_value() == "如何给列表排序"
            box.fill("")

            send(page, "写很长的回答")
            chat = page.locator(".chat")
            # Following the stream: stays at the bottom while text grows.
            paragraphs = "() => document.querySelectorAll('.msg-assistant:last-child .md p').length"
            page.wait_for_function(f"() => ({paragraphs})() > 40")
            assert page.evaluate("(() => { const c = document.querySelector('.chat'); return c.scrollHeight - c.scrollTop - c.clientHeight; })()") < 80
            # The user scrolls up: the view stays put and offers a way back.
            chat.hover()
            page.mouse.wheel(0, -600)
            expect(page.get_by_test_id("jump")).to_be_visible()
            top = page.evaluate("document.querySelector('.chat').scrollTop")
            page.wait_for_function(f"() => ({paragraphs})() > 90")
            assert abs(page.evaluate("document.querySelector('.chat').scrollTop") - top) < 2
            page.get_by_test_id("jump").click()
            page.wait_for_function("(() => { const c = document.querySelector('.chat'); return c.scrollHeight - c.scrollTop - c.clientHeight < 80; })")
            wait_answer_done(page)
            expect(page.get_by_test_id("jump")).to_have_count(0)
            watch.assert_clean()

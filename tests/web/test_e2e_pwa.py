"""XiaoQ as an installable app on a phone (Debian's Chromium at 390 x 844, touch, mobile): Chromium
finds the manifest installable, the service worker caches the app shell but never an API answer,
the offline page answers a page load once the server is gone, every main control is at least
44 x 44 px, and the composer stays above the on-screen keyboard.

Headless Chromium has no on-screen keyboard, so the keyboard test replaces ``window.visualViewport``
before the page loads with one whose height the test sets, as a phone's keyboard does, and fires
its ``resize`` event: what is checked is the page's own handling of that event, in a real layout.
"""

from __future__ import annotations

import struct
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from xiaoq.api.app import create_app
from xiaoq.engine.fake import FakeEngine
from xiaoq.store import Store

from tests.api.helpers import make_settings
from tests.api.server import serve, wait_health
from tests.web.conftest import open_page, send

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
KEYBOARD_PX = 336  # a typical phone keyboard's height in CSS px
ANSWER = "一段回答。\n\n```python\nprint(1)\n```\n"

FAKE_VIEWPORT = """
(() => {
  const target = new EventTarget();
  let height = window.innerHeight;
  Object.defineProperties(target, {
    height: { get: () => height },
    width: { get: () => window.innerWidth },
    offsetTop: { get: () => 0 }, offsetLeft: { get: () => 0 }, pageTop: { get: () => 0 }, scale: { get: () => 1 },
  });
  window.__keyboard = (px) => { height = window.innerHeight - px; target.dispatchEvent(new Event('resize')); };
  Object.defineProperty(window, 'visualViewport', { get: () => target, configurable: true });
})();
"""


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def start(stack: ExitStack, tmp_path: Path) -> tuple[str, FakeEngine]:
    settings = make_settings(threads=1, ctx=4096, db=str(tmp_path / "p.db"))
    engine = FakeEngine(settings, delay=0.001)
    store = Store(tmp_path / "p.db")
    stack.callback(store.close)
    url = stack.enter_context(serve(create_app(settings, engine, store=store)))
    wait_health(url)
    return url, engine


def wait_controlled(page: Any) -> None:
    """Until the service worker is active and controls the page (it claims open pages)."""
    page.evaluate("navigator.serviceWorker.ready")
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=30_000)


def test_installable_with_an_offline_page_and_no_cached_api_answers(browser: Any, tmp_path: Path) -> None:
    # A persistent profile: Chromium never offers to install from an incognito one, which is what
    # a plain browser context is.
    from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS

    with ExitStack() as stack:
        ctx = browser.browser_type.launch_persistent_context(str(tmp_path / "profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, **PHONE)
        stack.callback(ctx.close)
        ctx.set_default_timeout(20_000)
        url, engine = start(stack, tmp_path)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        manifest = httpx.get(url + "/manifest.webmanifest")
        assert manifest.headers["content-type"].startswith("application/manifest+json")
        m = manifest.json()
        assert m["display"] == "standalone" and m["start_url"] == "/" and m["scope"] == "/" and m["name"] and m["short_name"]
        sizes = {}
        for icon in m["icons"]:
            r = httpx.get(url + icon["src"])
            assert r.status_code == 200 and r.headers["content-type"] == "image/png" and len(r.content) < 16_000
            sizes[icon["purpose"], png_size(r.content)] = icon["sizes"]
        assert {("any", (192, 192)), ("any", (512, 512)), ("maskable", (512, 512))} <= set(sizes)
        cdp = page.context.new_cdp_session(page)
        assert cdp.send("Page.getAppManifest")["errors"] == []
        assert cdp.send("Page.getInstallabilityErrors")["installabilityErrors"] == []

        wait_controlled(page)
        engine.enqueue(ANSWER)
        send(page, "你好")
        expect(page.locator(".msg-assistant").last).to_have_attribute("data-status", "complete", timeout=30_000)
        page.reload()  # the app's API calls now pass the controlling worker
        expect(page.locator(".msg-assistant")).to_have_count(1)
        cached = page.evaluate(
            """async () => { const out = [];
               for (const name of await caches.keys()) for (const r of await (await caches.open(name)).keys()) out.push(new URL(r.url).pathname);
               return out; }"""
        )
        assert "/offline.html" in cached and any(p.startswith("/assets/index-") for p in cached), cached
        assert not [p for p in cached if p.startswith(("/api", "/v1", "/chat", "/health", "/metrics", "/pyodide", "/runner")) or p == "/"], cached
        assert errors == []


def test_the_offline_page_answers_when_the_server_is_gone(browser: Any, tmp_path: Path) -> None:
    ctx = browser.new_context(**PHONE)
    try:
        page = ctx.new_page()
        with ExitStack() as server:
            url, _ = start(server, tmp_path)
            page.goto(url + "/")
            wait_controlled(page)
        page.reload()
        offline = page.get_by_test_id("offline")
        expect(offline).to_be_visible()
        expect(offline).to_contain_text("无法连接小Q服务器")
        box = page.locator("#retry").bounding_box()
        assert box and box["width"] >= 44 and box["height"] >= 44
        page.screenshot(path="/tmp/xiaoq-pwa-offline-phone.png")
    finally:
        ctx.close()


def test_touch_targets_and_the_keyboard(browser: Any, tmp_path: Path) -> None:
    with ExitStack() as stack:
        url, engine = start(stack, tmp_path)
        page, watch = stack.enter_context(open_page(browser, url, **PHONE))
        page.add_init_script(FAKE_VIEWPORT)
        page.goto(url + "/")
        engine.enqueue(ANSWER)
        send(page, "你好")
        answer = page.locator(".msg-assistant").last
        expect(answer).to_have_attribute("data-status", "complete", timeout=30_000)
        controls = {
            "menu": page.locator(".menu-btn"),
            "theme": page.get_by_test_id("theme"),
            "language": page.get_by_test_id("lang"),
            "send": page.get_by_test_id("send"),
            "mic": page.get_by_test_id("mic"),
            "speaker": page.get_by_test_id("speaker"),
            "message box": page.locator("textarea.composer-input"),
            "copy code": answer.locator(".code-copy"),
            "run code": answer.locator(".code-run"),
        }
        for i in range(answer.locator(".msg-actions button").count()):
            controls[f"answer action {i}"] = answer.locator(".msg-actions button").nth(i)
        small = {}
        for name, loc in controls.items():
            if loc.count() == 0:
                continue
            box = loc.first.bounding_box()
            assert box, name
            if box["width"] < 44 or box["height"] < 44:
                small[name] = (round(box["width"]), round(box["height"]))
        assert small == {}, f"controls smaller than 44 x 44 px: {small}"
        assert {"menu", "send", "message box", "run code"} <= {n for n, l in controls.items() if l.count()}
        page.locator(".menu-btn").click()
        new_chat = page.get_by_test_id("new-chat")
        expect(new_chat).to_be_visible()
        box = new_chat.bounding_box()
        assert box and box["height"] >= 44
        page.locator(".drawer-backdrop").click(position={"x": 380, "y": 400})
        expect(page.locator(".drawer-backdrop")).to_have_count(0)

        box = page.locator("textarea.composer-input")
        box.focus()
        page.evaluate(f"window.__keyboard({KEYBOARD_PX})")
        visible = 844 - KEYBOARD_PX
        page.wait_for_function(f"document.querySelector('textarea.composer-input').getBoundingClientRect().bottom <= {visible}")
        rect = page.evaluate("(() => { const r = document.querySelector('form.composer').getBoundingClientRect(); return [r.top, r.bottom]; })()")
        assert 0 <= rect[0] and rect[1] <= visible, rect
        page.screenshot(path="/tmp/xiaoq-pwa-keyboard-phone.png")
        page.evaluate("window.__keyboard(0)")
        page.wait_for_function("document.querySelector('form.composer').getBoundingClientRect().bottom > 800")
        page.screenshot(path="/tmp/xiaoq-pwa-phone.png")
        watch.assert_clean()

"""Browser end-to-end tests of the web UI: the built page (``src/xiaoq/web``) in Debian's headless
Chromium, driven by Playwright with that executable (never a downloaded browser), against a real
XiaoQ server on 127.0.0.1 (real llama.cpp on the tiny GGUF; a FakeEngine only where a test must
script what the model says: the hostile corpus, a slow load, a full queue).

Screenshots of the main screens go to ``test-artifacts/web/``.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import urlparse

import pytest

from xiaoq.api.app import create_app
from xiaoq.api.web import WEB_DIR
from xiaoq.store import Store

from tests.api.helpers import make_settings
from tests.api.server import serve, wait_health

CHROMIUM = Path(os.environ.get("XIAOQ_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (./setup.sh does) to run browser tests")
    if not (WEB_DIR / "index.html").is_file():
        pytest.fail("no built UI in src/xiaoq/web: run `npm run build` in frontend/")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Watch:
    """What a page did that it must not: dialogs (alert = script ran), uncaught errors, CSP
    violations, requests to any host but the XiaoQ server."""

    base: str
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        host = urlparse(self.base).netloc

        def on_dialog(d: Any) -> None:
            self.dialogs.append(f"{d.type}: {d.message}")
            d.dismiss()

        def on_console(m: Any) -> None:
            if "Content Security Policy" in m.text or "Refused to" in m.text:
                self.csp.append(m.text)

        def on_request(r: Any) -> None:
            u = urlparse(r.url)
            if u.scheme in ("http", "https", "ws", "wss") and u.netloc != host:
                self.foreign.append(r.url)

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", on_console)
        page.on("request", on_request)

    def assert_clean(self) -> None:
        assert self.dialogs == [], f"dialogs opened: {self.dialogs}"
        assert self.errors == [], f"page errors: {self.errors}"
        assert self.csp == [], f"CSP violations: {self.csp}"
        assert self.foreign == [], f"requests to other hosts: {self.foreign}"


@contextmanager
def open_page(browser: Any, base: str, *, viewport: Optional[dict[str, int]] = None, **context_args: Any) -> Iterator[tuple[Any, Watch]]:
    ctx = browser.new_context(viewport=viewport or {"width": 1200, "height": 820}, accept_downloads=True, **context_args)
    ctx.set_default_timeout(20_000)
    page = ctx.new_page()
    watch = Watch(base)
    watch.attach(page)
    try:
        yield page, watch
    finally:
        ctx.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


@contextmanager
def xiaoq_server(engine_factory: Any, db: Path, *, wait_ready: bool = True, **overrides: Any) -> Iterator[str]:
    """A XiaoQ app (API + the built UI) on a free port; ``engine_factory(settings)`` makes its engine."""
    base: dict[str, Any] = dict(threads=1, parallel=2, queue=4, ctx=4096, batch=64, kv_cache_mb=32, seed=1, temperature=0.0)
    base.update(overrides)
    settings = make_settings(**base)
    store = Store(db)
    try:
        with serve(create_app(settings, engine_factory(settings), store=store)) as url:
            if wait_ready:
                wait_health(url, timeout=120)
            yield url
    finally:
        store.close()


def conversation_id(page: Any) -> str:
    m = re.search(r"#/c/([0-9a-zA-Z_-]+)$", page.url)
    assert m, f"no conversation id in {page.url}"
    return m.group(1)


def send(page: Any, text: str) -> None:
    """Types ``text`` in the message box and presses Enter."""
    box = page.locator("textarea.composer-input")
    box.fill(text)
    box.press("Enter")


def wait_answer_done(page: Any, timeout: float = 60_000) -> None:
    page.wait_for_selector(".msg-assistant:last-child:not([data-status=streaming])", timeout=timeout)


def ask_in_new_chat(page: Any, text: str) -> str:
    """New chat, ask ``text``, wait for the whole answer; returns the conversation id."""
    page.get_by_test_id("new-chat").click()
    send(page, text)
    wait_answer_done(page)
    return conversation_id(page)

"""The code runner in the browser (Debian's Chromium): ▶ Run on the Python and JavaScript blocks of
an answer runs them in the `/runner` sandbox (Pyodide from XiaoQ's own disk for Python), shows the
output under the block, stops a loop at the time limit, sends a traceback to the composer, and
keeps hostile code away from the page, the network and the API.

A FakeEngine scripts the answers (the code must be exactly this code); everything else is real:
uvicorn on 127.0.0.1, the built UI, the sandbox page, Pyodide's files from src/xiaoq/pyodide.
A recorder around the app logs every request the server receives, so "never reached the API" is
checked on the server's side, not only in the page.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from playwright.sync_api import expect

from xiaoq.api.app import create_app
from xiaoq.api.routes_sandbox import Pyodide
from xiaoq.engine.fake import FakeEngine
from xiaoq.store import Store

from tests.api.helpers import make_settings
from tests.api.server import serve, wait_health
from tests.web.conftest import open_page, screenshot, send

pytestmark = pytest.mark.browser

BUBBLE_SORT = """下面是冒泡排序：

```python
def bubble_sort(items):
    items = list(items)
    n = len(items)
    for i in range(n):
        for j in range(n - 1 - i):
            if items[j] > items[j + 1]:
                items[j], items[j + 1] = items[j + 1], items[j]
    return items

print(bubble_sort([5, 2, 9, 1, 5, 6]))
```
"""

FAILING = """```python
def average(xs):
    return sum(xs) / len(xs)

print(average([]))
```
"""

ASKS = """```python
name = input("你叫什么名字？")
print("你好", name)
```
"""

LOOP = """```python
n = 0
while True:
    n += 1
```
"""

JS_BLOCK = """```javascript
const xs = [3, 1, 2].map((x) => x * 10).sort((a, b) => a - b)
console.log('sorted', xs)
console.error('to stderr')
```
"""

# A developer without Pyodide skips; CI (set up by ./setup.sh --test, which installs it) never does.
needs_pyodide = pytest.mark.skipif(
    Pyodide().version is None and not os.environ.get("CI"),
    reason="Pyodide is not installed: `npm ci` in frontend/ copies it to src/xiaoq/pyodide",
)


@dataclass
class Recorder:
    """Every request the server received (method, path, query), kept across threads."""

    seen: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, app: Any) -> Any:
        async def recorded(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] in ("http", "websocket"):
                with self.lock:
                    self.seen.append((scope.get("method", "WEBSOCKET"), scope["path"], scope.get("query_string", b"").decode()))
            await app(scope, receive, send)

        return recorded

    def since(self, n: int) -> list[tuple[str, str, str]]:
        with self.lock:
            return list(self.seen[n:])


@contextmanager
def runner_server(tmp_path: Path, **app_args: Any) -> Iterator[tuple[str, FakeEngine, Recorder]]:
    settings = make_settings(threads=1, parallel=2, queue=4, ctx=8192, seed=1, temperature=0.0, default_max_tokens=4096, max_tokens=4096, db=str(tmp_path / "r.db"))
    engine = FakeEngine(settings, delay=0.001)
    store = Store(tmp_path / "r.db")
    recorder = Recorder()
    try:
        with serve(recorder.wrap(create_app(settings, engine, store=store, **app_args))) as url:
            wait_health(url, timeout=60)
            yield url, engine, recorder
    finally:
        store.close()


def open_app(page: Any, url: str) -> None:
    page.goto(url + "/")
    page.wait_for_load_state("networkidle")


def answer_with(page: Any, engine: FakeEngine, reply: str) -> Any:
    engine.enqueue(reply)
    send(page, "写一段代码")
    answer = page.locator(".msg-assistant").last
    expect(answer).to_have_attribute("data-status", "complete", timeout=30_000)
    return answer


@needs_pyodide
def test_python_runs_in_the_sandbox_and_a_traceback_goes_to_the_composer(browser: Any, tmp_path: Path) -> None:
    with runner_server(tmp_path) as (url, engine, recorder), open_page(browser, url, viewport={"width": 390, "height": 844}) as (page, watch):
        open_app(page, url)
        answer = answer_with(page, engine, BUBBLE_SORT)
        assert not any(p.startswith("/pyodide/pyodide") for _, p, _ in recorder.since(0)), "Pyodide loaded before the first Run"
        run = answer.locator(".code-run")
        expect(run).to_be_enabled()
        run.click()
        output = answer.locator(".run-output")
        expect(output.locator(".run-stdout")).to_have_text("[1, 2, 5, 5, 6, 9]\n", timeout=120_000)
        expect(output).to_have_class("run-output run-done")
        screenshot(page, "runner-python-phone")
        page.screenshot(path="/tmp/xiaoq-runner-python-phone.png")
        fetched = {p for _, p, _ in recorder.seen if p.startswith("/pyodide/")}
        assert {"/pyodide/pyodide.asm.wasm", "/pyodide/python_stdlib.zip"} <= fetched

        failing = answer_with(page, engine, FAILING)
        failing.locator(".code-run").click()
        error = failing.locator(".run-error")
        expect(error).to_contain_text("ZeroDivisionError: division by zero", timeout=60_000)
        expect(error).to_contain_text('File "<code>", line 2, in average')
        assert "_pyodide" not in error.inner_text()
        failing.locator(".code-explain").click()
        box = page.locator("textarea.composer-input")
        value = box.input_value()
        assert "ZeroDivisionError: division by zero" in value and "return sum(xs) / len(xs)" in value

        # No keyboard reaches the sandbox: input() ends with a plain EOFError.
        asks = answer_with(page, engine, ASKS)
        asks.locator(".code-run").click()
        expect(asks.locator(".run-error")).to_contain_text("EOFError: EOF when reading a line", timeout=60_000)
        watch.assert_clean()


@needs_pyodide
def test_an_endless_loop_is_stopped_by_the_time_limit(browser: Any, tmp_path: Path) -> None:
    with runner_server(tmp_path) as (url, engine, _), open_page(browser, url) as (page, watch):
        open_app(page, url)
        answer = answer_with(page, engine, LOOP)
        answer.locator(".code-run").click()
        expect(answer.locator(".code-run-stop")).to_be_visible(timeout=10_000)
        status = answer.locator(".run-status")
        expect(status).to_contain_text("超时", timeout=150_000)
        expect(answer.locator(".code-run")).to_be_enabled()
        # The page stayed responsive and a new run works after the worker was killed.
        again = answer_with(page, engine, JS_BLOCK)
        again.locator(".code-run").click()
        expect(again.locator(".run-stdout")).to_have_text('sorted [10,20,30]\n', timeout=20_000)
        watch.assert_clean()


def hostile_python(base: str) -> str:
    return f'''```python
import js
def attempt(name, f):
    try:
        r = f()
        print(name, "REACHED", r)
    except BaseException as e:
        print(name, "blocked", type(e).__name__)

async def main():
    for name, url, method in [("fetch", "{base}/api/conversations", "GET"), ("delete", "{base}/api/conversations/x-hostile", "DELETE")]:
        try:
            r = await js.fetch(url, js.Object.fromEntries([["method", method]]))
            print(name, "REACHED", r.status)
        except BaseException as e:
            print(name, "blocked", type(e).__name__)
    attempt("importScripts", lambda: js.importScripts("{base}/api/hostile-import"))
    attempt("worker", lambda: js.Worker.new("{base}/api/hostile-worker"))
    attempt("xhr", lambda: (lambda x: (x.open("GET", "{base}/api/hostile-xhr", False), x.send()))(js.XMLHttpRequest.new()))
    attempt("indexedDB", lambda: js.indexedDB.open("hostile"))
    attempt("caches", lambda: js.caches.keys())
    attempt("parent", lambda: js.parent.document)
    attempt("localStorage", lambda: js.localStorage.getItem("xiaoq.apiKey"))
    print("hostile done")

await main()
```
'''


def hostile_js(base: str) -> str:
    return f'''```javascript
const tries = {{
  fetch: () => fetch('{base}/api/conversations').then(() => 'REACHED'),
  del: () => fetch('{base}/api/conversations/x-hostile', {{ method: 'DELETE' }}).then(() => 'REACHED'),
  importScripts: () => importScripts('{base}/api/hostile-import'),
  worker: () => new Worker('{base}/api/hostile-worker'),
  blobWorker: () => new Worker(URL.createObjectURL(new Blob(["fetch('{base}/api/hostile-nested').catch(() => 0)"]))),
  xhr: () => {{ const x = new XMLHttpRequest(); x.open('GET', '{base}/api/hostile-xhr', false); x.send(); return 'REACHED' }},
  ws: () => new WebSocket('{base.replace("http", "ws")}/api/hostile-ws'),
  beacon: () => navigator.sendBeacon('{base}/api/hostile-beacon', 'x') && 'REACHED',
  indexedDB: () => indexedDB.open('hostile'),
  caches: () => caches.keys(),
  parent: () => parent.document,
}}
for (const [name, f] of Object.entries(tries)) {{
  try {{
    const r = await Promise.resolve(f())
    console.log(name, 'returned', String(r))
  }} catch (e) {{
    console.log(name, 'blocked', e.name)
  }}
}}
await new Promise((r) => setTimeout(r, 500))
console.log('hostile done')
```
'''


def assert_never_reached(recorder: Recorder, start: int) -> None:
    after = recorder.since(start)
    assert not [r for r in after if "hostile" in r[1] or r[0] != "GET"], after
    assert not [r for r in after if r[1].startswith("/api/")], after


@needs_pyodide
def test_hostile_code_reaches_neither_the_page_nor_the_network_nor_the_api(browser: Any, tmp_path: Path) -> None:
    with runner_server(tmp_path) as (url, engine, recorder), open_page(browser, url) as (page, watch):
        open_app(page, url)
        answer = answer_with(page, engine, hostile_js(url))
        count = len(httpx.get(url + "/api/conversations").json()["data"])
        start = len(recorder.seen)
        answer.locator(".code-run").click()
        out = answer.locator(".run-output")
        expect(out).to_contain_text("hostile done", timeout=20_000)
        text = out.inner_text()
        for name in ("fetch", "del", "importScripts", "worker", "xhr", "indexedDB", "caches", "parent"):
            assert f"{name} blocked" in text, text
        assert "REACHED" not in text, text
        page.wait_for_timeout(1000)  # anything a nested worker or a socket might still send
        assert_never_reached(recorder, start)
        assert len(httpx.get(url + "/api/conversations").json()["data"]) == count

        py = answer_with(page, engine, hostile_python(url))
        count = len(httpx.get(url + "/api/conversations").json()["data"])
        start = len(recorder.seen)
        py.locator(".code-run").click()
        out = py.locator(".run-output")
        expect(out).to_contain_text("hostile done", timeout=120_000)
        text = out.inner_text()
        for name in ("fetch", "delete", "importScripts", "worker", "xhr", "indexedDB", "caches", "parent", "localStorage"):
            assert f"{name} blocked" in text, text
        assert "REACHED" not in text, text
        page.wait_for_timeout(1000)
        assert_never_reached(recorder, start)
        assert len(httpx.get(url + "/api/conversations").json()["data"]) == count
        assert page.evaluate("document.title") and page.locator(".msg").count() == 4
        screenshot(page, "runner-hostile")
        # The sandbox's refusals are CSP reports in its own console; the app page has none.
        assert watch.dialogs == [] and watch.errors == [] and watch.foreign == []
        assert not [c for c in watch.csp if "/runner" not in c and "blob:" not in c], watch.csp


def test_without_pyodide_python_cannot_run_and_says_how_to_add_it(browser: Any, tmp_path: Path) -> None:
    with runner_server(tmp_path, pyodide_dir=tmp_path / "no-pyodide") as (url, engine, _), open_page(browser, url) as (page, watch):
        open_app(page, url)
        answer = answer_with(page, engine, BUBBLE_SORT + "\n" + JS_BLOCK)
        py, js = answer.locator(".code-block").nth(0), answer.locator(".code-block").nth(1)
        expect(py.locator(".code-run")).to_be_disabled()
        expect(py.locator(".run-missing")).to_contain_text("npm ci")
        js.locator(".code-run").click()
        expect(js.locator(".run-stdout")).to_have_text("sorted [10,20,30]\n", timeout=20_000)
        expect(js.locator(".run-stderr")).to_have_text("to stderr\n")
        screenshot(page, "runner-no-pyodide")
        watch.assert_clean()

"""A client that goes away cancels its generation at once, and the engine serves the next request.

Raw ASGI messages (as encode/starlette's tests/test_responses.py does) show the mechanism
exactly; a real uvicorn socket shows it end to end.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from xiaoq.api.app import create_app
from xiaoq.engine.fake import FakeEngine

from tests.api.helpers import make_settings, parse_sse
from tests.api.server import serve, wait_health

LONG = "这是一个很长的回答。" * 50


class RawClient:
    """Drives one ASGI request: sends the body, records what the app sends, disconnects on demand."""

    def __init__(self, app: Any, path: str, body: dict, spec_version: str = "2.3"):
        self.app = app
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": spec_version},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"host", b"localhost")],
            "client": ("127.0.0.1", 1234),
            "server": ("test", 80),
        }
        self.body = json.dumps(body).encode()
        self.sent: list[dict] = []
        self.disconnect = asyncio.Event()
        self.body_sent = False

    async def receive(self) -> dict:
        if not self.body_sent:
            self.body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    def events(self) -> list[Any]:
        text = b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body").decode()
        return parse_sse(text) if text.endswith("\n\n") else []

    def status(self) -> int:
        return next(m["status"] for m in self.sent if m["type"] == "http.response.start")

    async def run(self) -> None:
        await self.app(self.scope, self.receive, self.send)


async def _until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.002)


async def test_disconnect_mid_stream_cancels_generation() -> None:
    settings = make_settings(parallel=1, queue=1)
    engine = FakeEngine(settings, replies=[LONG], delay=0.01)
    app = create_app(settings, engine, web_dir=None)
    await engine.start()
    client = RawClient(app, "/chat", {"prompt": "hi"})
    task = asyncio.create_task(client.run())
    await _until(lambda: len(client.events()) >= 3)
    client.disconnect.set()
    await asyncio.wait_for(task, 5)  # the response ends at once, not after the long answer
    gen = engine.generations[0]
    assert gen.cancelled
    await _until(lambda: gen.done)
    assert gen.result is not None and gen.result.finish_reason == "cancelled"
    # Stopped within two tokens of the disconnect; nowhere near the full answer.
    tokens_seen = len(client.events())
    assert gen.result.usage.completion_tokens <= tokens_seen + 2 < len(LONG)
    assert client.status() == 200 and not any(m.get("more_body") is False for m in client.sent[1:])


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_disconnect_while_queued_frees_the_queue_place(spec_version: str) -> None:
    # With ASGI spec 2.4 Starlette's StreamingResponse stops listening for disconnects and would
    # only notice on a failed write, which never comes while the request waits in the queue.
    settings = make_settings(parallel=1, queue=1)
    engine = FakeEngine(settings, replies=[LONG, "never", "next"], delay=0.01)
    app = create_app(settings, engine, web_dir=None)
    await engine.start()
    first = RawClient(app, "/chat", {"prompt": "a"})
    queued = RawClient(app, "/v1/chat/completions", {"messages": [{"role": "user", "content": "b"}], "stream": True}, spec_version)
    t1 = asyncio.create_task(first.run())
    await _until(lambda: len(first.events()) >= 1)
    t2 = asyncio.create_task(queued.run())
    await _until(lambda: len(engine.generations) == 2)
    assert engine.stats()["queue_depth"] == 1
    queued.disconnect.set()  # gone before its first token
    await asyncio.wait_for(t2, 5)
    assert engine.generations[1].cancelled
    await _until(lambda: engine.stats()["queue_depth"] == 0)
    assert engine.generations[1].result.usage.completion_tokens == 0
    # The place is free again: a third request is admitted (not 503) while the first still runs.
    third = RawClient(app, "/chat", {"prompt": "c"})
    t3 = asyncio.create_task(third.run())
    await _until(lambda: len(engine.generations) == 3)
    first.disconnect.set()
    await asyncio.wait_for(t1, 5)
    await asyncio.wait_for(t3, 5)
    assert "".join(e.get("token", "") for e in third.events()) == "next"


async def test_disconnect_during_non_stream_completion_cancels() -> None:
    settings = make_settings()
    engine = FakeEngine(settings, replies=[LONG], delay=0.01)
    app = create_app(settings, engine, web_dir=None)
    await engine.start()
    client = RawClient(app, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})
    task = asyncio.create_task(client.run())
    await _until(lambda: engine.generations and engine.generations[0].result is None and engine._active == 1)
    await asyncio.sleep(0.05)
    client.disconnect.set()
    await asyncio.wait_for(task, 5)
    gen = engine.generations[0]
    await _until(lambda: gen.done)
    assert gen.result.finish_reason == "cancelled" and gen.result.usage.completion_tokens < len(LONG)


def test_closing_the_socket_cancels_over_real_uvicorn() -> None:
    settings = make_settings(parallel=1, queue=1)
    engine = FakeEngine(settings, replies=[LONG, "下一个"], delay=0.01)
    with serve(create_app(settings, engine, web_dir=None)) as url:
        wait_health(url)
        seen = 0
        with httpx.Client(base_url=url, timeout=10) as http:
            with http.stream("POST", "/chat", json={"prompt": "hi"}) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        seen += 1
                        if seen == 3:
                            break
            # Leaving the block closes the unfinished response's connection.
        gen = engine.generations[0]
        assert gen.wait_done(5), "generation did not stop after the client left"
        assert gen.result is not None and gen.result.finish_reason == "cancelled"
        assert gen.result.usage.completion_tokens < len(LONG)
        # The slot is free: the next request streams to the end.
        r = httpx.post(url + "/chat", json={"prompt": "again"}, timeout=10)
        events = parse_sse(r.text)
        assert "".join(e.get("token", "") for e in events) == "下一个" and events[-1]["done"]


def test_each_token_is_flushed_before_the_answer_ends_over_uvicorn() -> None:
    settings = make_settings()
    engine = FakeEngine(settings, replies=["一二三四五六七八九十"], delay=0.05)
    with serve(create_app(settings, engine, web_dir=None)) as url:
        wait_health(url)
        with httpx.stream("POST", url + "/chat", json={"prompt": "hi"}, timeout=10) as r:
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert json.loads(first[len("data: "):]) == {"token": "一"}
            # The first token reached the client while the engine was still producing the rest.
            assert not engine.generations[0].done
            rest = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
        assert "".join(e.get("token", "") for e in rest) == "二三四五六七八九十" and rest[-1]["done"]

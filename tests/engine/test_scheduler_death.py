"""When the scheduler thread dies, nothing waits for ever.

An exception in a step (or in the warm-up) leaves llama.cpp's state unknown, so the scheduler
stops: every running and queued request ends with an error, new ones are refused with a JSON
error, ``/health`` turns 500 and the app's ``on_fatal`` hook fires (``xiaoq serve`` exits on it;
see tests/cli/test_serve_engine_death.py). Real llama.cpp on the tiny GGUF; the failure is
injected by replacing ``Scheduler._step`` in this process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import make_settings, parse_sse
from tests.api.server import serve, wait_health
from xiaoq.api.app import create_app
from xiaoq.engine import scheduler as scheduler_module
from xiaoq.engine.context import LlamaModel
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.types import GenerationRequest, SamplingParams
from xiaoq.errors import EngineError, ModelError


class StepFault:
    """Makes ``Scheduler._step`` raise once :attr:`armed` is set (from any thread)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.armed = threading.Event()
        step = scheduler_module.Scheduler._step

        def failing_step(sched: scheduler_module.Scheduler) -> None:
            if self.armed.is_set():
                raise RuntimeError("injected step failure")
            step(sched)

        monkeypatch.setattr(scheduler_module.Scheduler, "_step", failing_step)


def _settings():  # type: ignore[no-untyped-def]
    return make_settings(ctx=4096, max_tokens=4000, parallel=1, queue=2, threads=1, kv_cache_mb=0)


def _request(max_tokens: int = 3000) -> GenerationRequest:
    return GenerationRequest(messages=[{"role": "user", "content": "hello"}], sampling=SamplingParams(temperature=0, max_tokens=max_tokens))


async def test_a_failing_step_fails_running_and_queued_requests_and_refuses_new_ones(tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fault = StepFault(monkeypatch)
    engine = LlamaEngine(tiny_gguf, _settings())
    await engine.start()
    try:
        running = await engine.submit(_request())
        queued = await engine.submit(_request())
        pieces = running.__aiter__()
        await asyncio.wait_for(pieces.__anext__(), 10)  # running is decoding, queued is waiting
        fault.armed.set()
        failure = await asyncio.wait_for(engine.wait_failure(), 10)
        assert "injected step failure" in failure
        for gen in (running, queued):
            await asyncio.wait_for(gen.text(), 10)  # the streams end instead of hanging
            assert gen.result is not None and gen.result.finish_reason == "error"
            assert "injected step failure" in (gen.result.error or "")
        assert not engine.ready and engine.failure == failure
        with pytest.raises(EngineError):
            await engine.submit(_request())
    finally:
        await asyncio.wait_for(engine.close(), 30)


async def test_a_failing_warm_up_fails_the_start(tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_warmup(self: LlamaModel) -> None:
        raise RuntimeError("injected warm-up failure")

    monkeypatch.setattr(LlamaModel, "warmup", broken_warmup)
    engine = LlamaEngine(tiny_gguf, _settings())
    with pytest.raises(ModelError, match="injected warm-up failure"):
        await asyncio.wait_for(engine.start(), 30)
    assert not engine.ready
    await engine.close()


def _stream_events(url: str, out: list) -> None:  # type: ignore[type-arg]
    with httpx.stream("POST", url + "/chat", json={"prompt": "hello", "max_tokens": 3000}, timeout=30) as r:
        out.append(r.status_code)
        out.append(parse_sse("".join(r.iter_text())))


def test_over_http_streams_get_an_error_event_health_turns_500_and_on_fatal_fires(tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fault = StepFault(monkeypatch)
    settings = _settings()
    fatal: list[str] = []
    app = create_app(settings, LlamaEngine(tiny_gguf, settings), web_dir=None, on_fatal=fatal.append)
    with serve(app) as url:
        wait_health(url)
        results: list[list] = [[], []]  # type: ignore[type-arg]
        threads = [threading.Thread(target=_stream_events, args=(url, out), daemon=True) for out in results]
        for t in threads:
            t.start()
            time.sleep(0.2)  # the first one runs, the second one waits in the queue
        deadline = time.monotonic() + 10
        while "xiaoq_queue_depth 1" not in httpx.get(url + "/metrics").text and time.monotonic() < deadline:
            time.sleep(0.02)
        fault.armed.set()
        for t in threads:
            t.join(15)
            assert not t.is_alive(), "a stream hung after the engine died"
        for status, events in results:
            assert status == 200
            assert events[-1]["error"]["code"] == "engine_error", events[-1]
        r = httpx.get(url + "/health")
        assert r.status_code == 500 and r.json()["status"] == "error"
        r = httpx.post(url + "/chat", json={"prompt": "again"}, timeout=10)
        assert r.status_code == 500 and r.json()["error"]["code"] == "engine_error"
        r = httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}, timeout=10)
        assert r.status_code == 500 and set(r.json()["error"]) >= {"message", "type", "code"}
        assert len(fatal) == 1 and "injected step failure" in fatal[0]

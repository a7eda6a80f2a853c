"""The HTTP API over the REAL llama.cpp engine (``LlamaEngine`` on the tiny generated GGUF), behind
a real uvicorn server on 127.0.0.1: streaming, the openai client, and a disconnect that frees the
engine for the next queued request.

The tiny model's weights are random, so what it says is gibberish, and it never ends on its own:
every answer runs to ``max_tokens``. That makes lengths exact and lets an answer run long enough
to be interrupted.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest

from xiaoq.api.app import create_app
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.types import Generation, GenerationRequest

from tests.api.helpers import make_settings, parse_sse
from tests.api.server import serve, wait_health


class RecordingEngine:
    """Wraps the real engine to keep each submitted Generation and, at the moment the API cancels
    one, the engine's generated-token counter, so a test can count tokens produced after cancel."""

    def __init__(self, inner: LlamaEngine):
        self.inner = inner
        self.generations: list[Generation] = []
        self.tokens_at_cancel: dict[int, int] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def ready(self) -> bool:
        return self.inner.ready

    async def submit(self, request: GenerationRequest) -> Generation:
        gen = await self.inner.submit(request)
        cancel = gen.cancel

        def recording_cancel() -> None:
            if not gen.done and gen.id not in self.tokens_at_cancel:
                self.tokens_at_cancel[gen.id] = self.inner.stats()["tokens_generated_total"]
            cancel()

        gen.cancel = recording_cancel  # type: ignore[method-assign]
        self.generations.append(gen)
        return gen


@pytest.fixture(scope="module")
def server(tiny_gguf: Path) -> Iterator[tuple[str, RecordingEngine]]:
    # One slot and one queue place: the disconnect test needs a request waiting behind another.
    settings = make_settings(ctx=16384, max_tokens=16000, parallel=1, queue=1, threads=1, kv_cache_mb=16)
    engine = RecordingEngine(LlamaEngine(tiny_gguf, settings))
    with serve(create_app(settings, engine, web_dir=None)) as url:  # type: ignore[arg-type]
        wait_health(url)
        yield url, engine


def test_health_and_models_name_the_model(server) -> None:
    url, _ = server
    assert httpx.get(url + "/health").json() == {"status": "ok"}
    assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == "xiaoq-tiny-qwen2"


def test_chat_streams_tokens_then_done(server) -> None:
    url, _ = server
    body = {"prompt": "你好", "history": [{"user": "我叫李雷", "bot": "你好，李雷"}], "max_tokens": 24, "temperature": 0}
    pieces: list[str] = []
    events: list[Any] = []
    with httpx.stream("POST", url + "/chat", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    events = parse_sse(text)
    pieces = [e["token"] for e in events[:-1]]
    done = events[-1]
    assert done["done"] is True and done["finish_reason"] == "length"
    assert done["usage"]["completion_tokens"] == 24
    assert 1 <= len(pieces) <= 24 and "".join(pieces).strip()
    assert "<|im_end|>" not in "".join(pieces) and "<|im_start|>" not in "".join(pieces)
    assert done["usage"]["prompt_tokens"] > 20 and done["timings"]["ttft_ms"] > 0

    # The same conversation again: the engine reuses the cached prompt prefix and says so.
    again = parse_sse(httpx.post(url + "/chat", json=body, timeout=60).text)[-1]
    assert again["usage"]["prompt_tokens"] == done["usage"]["prompt_tokens"]
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    # Greedy decoding: the same answer.
    assert "".join(e["token"] for e in parse_sse(httpx.post(url + "/chat", json=body, timeout=60).text)[:-1]) == "".join(pieces)


def test_metrics_show_the_prefill_chunk_and_its_step_fit(server) -> None:
    url, _ = server
    httpx.post(url + "/chat", json={"prompt": "hello", "max_tokens": 4}, timeout=60)
    metrics = httpx.get(url + "/metrics").text
    assert "# TYPE xiaoq_prefill_chunk_tokens gauge" in metrics
    chunk = int(next(line for line in metrics.splitlines() if line.startswith("xiaoq_prefill_chunk_tokens ")).split()[1])
    assert 16 <= chunk <= 128  # within the floor and --batch
    for name in ("xiaoq_step_fit_base_ms", "xiaoq_step_fit_token_ms"):
        assert f"# TYPE {name} gauge" in metrics


def test_context_length_exceeded_from_the_real_tokenizer(server) -> None:
    url, _ = server
    r = httpx.post(url + "/chat", json={"prompt": "hello " * 1000, "max_tokens": 16000}, timeout=30)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "context_length_exceeded" and err["max_tokens"] == 16000 and err["prompt_tokens"] >= 1000


def test_openai_client_streams_and_completes(server) -> None:
    url, _ = server
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
    stream = client.chat.completions.create(
        model="whatever",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "写一首诗"}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16

    completion = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}], max_tokens=8, temperature=0)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 8
    assert completion.model == "xiaoq-tiny-qwen2" and completion.id.startswith("chatcmpl-")


def test_openai_logit_bias_and_ignore_eos_reach_the_sampler(server) -> None:
    """OpenAI's logit_bias steers llama.cpp's sampler (+100 on <|im_end|> ends the reply at once);
    llama-server's ignore_eos overrides even that and runs to max_tokens (what the bench relies on)."""
    from tests.tinymodel import IM_END_ID

    url, _ = server
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
    msgs = [{"role": "user", "content": "hi"}]
    ended = client.chat.completions.create(model="x", messages=msgs, max_tokens=12, logit_bias={str(IM_END_ID): 100})
    assert ended.choices[0].finish_reason == "stop" and ended.usage.completion_tokens == 0
    forced = client.chat.completions.create(model="x", messages=msgs, max_tokens=12, logit_bias={str(IM_END_ID): 100},
                                            extra_body={"ignore_eos": True})
    assert forced.choices[0].finish_reason == "length" and forced.usage.completion_tokens == 12
    bad = httpx.post(url + "/v1/chat/completions", json={"messages": msgs, "logit_bias": {"5": 500}}, timeout=30)
    assert bad.status_code == 422 and "logit_bias" in bad.json()["error"]["message"]


def test_disconnect_frees_the_engine_for_the_queued_request(server) -> None:
    url, engine = server
    first = len(engine.generations)
    result_b: dict[str, Any] = {}

    def run_b() -> None:
        r = httpx.post(url + "/chat", json={"prompt": "B", "max_tokens": 8}, timeout=60)
        result_b["status"] = r.status_code
        result_b["events"] = parse_sse(r.text)

    seen = 0
    with httpx.Client(base_url=url, timeout=60) as http:
        with http.stream("POST", "/chat", json={"prompt": "A", "max_tokens": 15000}) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            for line in lines:
                if line.startswith("data: "):
                    seen += 1
                    if seen == 3:
                        break
            b = threading.Thread(target=run_b, daemon=True)
            b.start()
            deadline = time.monotonic() + 10
            while engine.inner.stats()["queue_depth"] < 1:  # B waits behind A (one slot)
                assert time.monotonic() < deadline, "B was never queued"
                time.sleep(0.002)
            assert engine.generations[first].result is None, "A finished before the disconnect"
        # Leaving the block closed A's connection mid-answer.
    b.join(60)
    assert not b.is_alive()

    gen_a, gen_b = engine.generations[first], engine.generations[first + 1]
    assert gen_a.wait_done(10)
    assert gen_a.result is not None and gen_a.result.finish_reason == "cancelled"
    assert gen_a.result.usage.completion_tokens < 15000
    # Tokens generated for A after the API cancelled it: B (8 tokens) ran only after A stopped.
    stats = engine.inner.stats()
    after_cancel = stats["tokens_generated_total"] - 8 - engine.tokens_at_cancel[gen_a.id]
    assert 0 <= after_cancel <= 2, after_cancel
    assert stats["requests_finished_total"]["cancelled"] >= 1

    assert result_b["status"] == 200
    done = result_b["events"][-1]
    assert done["done"] is True and done["finish_reason"] == "length" and done["usage"]["completion_tokens"] == 8
    assert gen_b.result is not None and gen_b.result.finish_reason == "length"
    # /metrics shows the cancellation too.
    metrics = httpx.get(url + "/metrics").text
    assert 'xiaoq_http_generations_total{route="/chat",finish_reason="cancelled"}' in metrics


def test_health_reports_a_model_that_fails_to_load(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)  # the magic, then nothing llama.cpp can load
    settings = make_settings(ctx=512, parallel=1, threads=1, kv_cache_mb=0, api_key="k3y")
    auth = {"Authorization": "Bearer k3y"}
    with serve(create_app(settings, LlamaEngine(bad, settings), web_dir=None)) as url:
        deadline = time.monotonic() + 30
        r = httpx.get(url + "/health")
        while r.status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.02)
            r = httpx.get(url + "/health")
        # The public probe says only the status: the load error holds file paths.
        assert r.status_code == 500 and r.json() == {"status": "error"}
        assert str(tmp_path) not in r.text and "broken" not in r.text
        # Behind the key, requests get that error as JSON (not "still loading" forever, not a traceback).
        assert httpx.post(url + "/chat", json={"prompt": "hi"}, timeout=10).status_code == 401
        r = httpx.post(url + "/chat", json={"prompt": "hi"}, headers=auth, timeout=10)
        assert r.status_code == 500 and r.json()["error"]["code"] == "model_error"
        assert "broken.gguf" in r.json()["error"]["message"]
        assert "broken.gguf" in httpx.get(url + "/api/config", headers=auth).json()["error"]["message"]
        assert "xiaoq_ready 0" in httpx.get(url + "/metrics", headers=auth).text


def test_repeat_penalty_and_min_p_reach_llama_cpp(server) -> None:
    """Greedy decoding of the tiny model repeats its tokens; repeat_penalty changes what it picks,
    min_p (applied after temperature 0 chooses greedily) changes nothing there but is accepted."""
    url, _ = server

    def reply(**fields: Any) -> str:
        body = {"prompt": "hi", "max_tokens": 24, "temperature": 0, **fields}
        events = parse_sse(httpx.post(url + "/chat", json=body, timeout=60).text)
        assert events[-1]["done"] is True
        return "".join(e.get("token", "") for e in events)

    plain = reply()
    assert reply(repeat_penalty=1.0) == plain and reply(min_p=0.5) == plain
    assert reply(repeat_penalty=2.0) != plain


def test_loop_guard_ends_a_forced_loop_over_http(server) -> None:
    """logit_bias forces the tiny model to say " hello" for ever: the guard ends the reply soon
    with native_finish_reason "repetition" and one copy; without it the reply runs to max_tokens."""
    from tests.tinymodel import TOKENS

    url, _ = server
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 120, "logit_bias": {str(TOKENS.index("Ġhello")): 100}, "loop_guard": True}
    guarded = httpx.post(url + "/v1/chat/completions", json=body, timeout=60).json()
    choice = guarded["choices"][0]
    assert (choice["finish_reason"], choice.get("native_finish_reason"), choice["message"]["content"]) == ("stop", "repetition", " hello")
    assert guarded["usage"]["completion_tokens"] < 60
    plain = httpx.post(url + "/v1/chat/completions", json={**body, "loop_guard": False}, timeout=60).json()
    assert plain["choices"][0]["finish_reason"] == "length" and plain["usage"]["completion_tokens"] == 120

"""The upstream engine behind a real XiaoQ app on 127.0.0.1: two real OpenAI-compatible upstreams
(llama-cpp-python's server on the tiny GGUF), a XiaoQ upstream for cached tokens, and stub servers
only for the faults (HTTP 500, a hang, death mid-stream)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from xiaoq.api.app import create_app
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.upstream import UpstreamEngine
from xiaoq.engine.upstream_pool import UpstreamPool, affinity_key
from xiaoq.store import Store

from tests.api.helpers import make_settings, parse_sse
from tests.api.server import serve, wait_health
from tests.engine.upstreams import StubUpstream, free_port, start_llama_cpp_server

SYSTEM = "Be brief."


@pytest.fixture(scope="module")
def upstreams(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    logs = tmp_path_factory.mktemp("upstreams")
    procs, urls = [], []
    try:
        for i in range(2):
            proc, url = start_llama_cpp_server(tiny_gguf, logs / f"upstream{i}.log")
            procs.append(proc)
            urls.append(url)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def front(urls: list[str], tmp_path: Path, vocab: Path | None, **overrides):
    settings = make_settings(upstream=urls, ctx=1024, max_tokens=64, **overrides)
    engine = UpstreamEngine(settings, vocab_path=vocab)
    return serve(create_app(settings, engine, store=Store(tmp_path / "front.db"), web_dir=None)), engine


def metric(text: str, name: str, url: str) -> float:
    m = re.search(rf'^xiaoq_{name}{{upstream="{re.escape(url)}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def ask(base: str, user: str, max_tokens: int = 6) -> list:
    body = {"model": "x", "stream": True, "max_tokens": max_tokens, "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]}
    r = httpx.post(base + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return [e for e in parse_sse(r.text) if e != "[DONE]"]


def user_ranking_first(url: str, urls: list[str]) -> str:
    """A user message whose stateless affinity key puts ``url`` first."""
    pool = UpstreamPool(urls)
    for i in range(1000):
        user = f"问题{i}"
        if pool.order(affinity_key(None, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]))[0].url == url:
            return user
    raise AssertionError("no key found")


def test_conversations_stick_to_their_upstream(upstreams: list[str], tiny_gguf: Path, tmp_path: Path) -> None:
    server, engine = front(upstreams, tmp_path, tiny_gguf)
    with server as base:
        assert wait_health(base)["status"] == "ok"
        expected = {u: 0 for u in upstreams}
        for n in range(6):
            cid = httpx.post(base + "/api/conversations", json={"title": f"c{n}"}).json()["id"]
            target = UpstreamPool(upstreams).order(f"c:{cid}")[0].url
            for turn in range(2):
                r = httpx.post(f"{base}/api/conversations/{cid}/messages", json={"content": f"第{turn}轮", "max_tokens": 4}, timeout=60)
                done = parse_sse(r.text)[-1]
                assert done["done"] and done["finish_reason"] in ("stop", "length"), done
                expected[target] += 1
        metrics = httpx.get(base + "/metrics").text
    got = {u: metric(metrics, "upstream_requests_total", u) for u in upstreams}
    print("requests per upstream:", got)
    assert got == {u: float(n) for u, n in expected.items()}
    assert engine.model_name == "xiaoq-tiny-qwen2" and engine.n_ctx == 1024


def test_usage_and_cached_tokens_pass_through_from_a_xiaoq_upstream(tiny_gguf: Path, tmp_path: Path) -> None:
    up_settings = make_settings(ctx=1024, parallel=1, threads=1, kv_cache_mb=16)
    with serve(create_app(up_settings, LlamaEngine(tiny_gguf, up_settings), web_dir=None)) as upstream:
        wait_health(upstream)
        server, _ = front([upstream], tmp_path, None)  # no vocab: the upstream's ctx and tokenizer are used
        with server as base:
            wait_health(base)
            first = ask(base, "你好，请介绍一下你自己", max_tokens=4)[-1]
            second = ask(base, "你好，请介绍一下你自己", max_tokens=4)[-1]
            metrics = httpx.get(base + "/metrics").text
    assert first["usage"]["prompt_tokens"] > 10
    assert second["usage"]["prompt_tokens"] == first["usage"]["prompt_tokens"]
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    assert metric(metrics, "upstream_cached_tokens_total", upstream) == second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert metric(metrics, "upstream_prompt_tokens_total", upstream) == 2 * first["usage"]["prompt_tokens"]


@pytest.mark.parametrize("mode", ["500", "hang"])
def test_a_failing_upstream_is_retried_on_the_next_before_the_first_token(mode: str, upstreams: list[str], tiny_gguf: Path, tmp_path: Path) -> None:
    with StubUpstream(mode) as stub:
        urls = [stub.url, upstreams[0]]
        server, _ = front(urls, tmp_path, tiny_gguf, upstream_timeout=4.0)  # the real one answers well within it, even on a loaded machine
        with server as base:
            wait_health(base)
            t0 = time.monotonic()
            events = ask(base, user_ranking_first(stub.url, urls))
            elapsed = time.monotonic() - t0
            metrics = httpx.get(base + "/metrics").text
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c.get("choices"))
    assert text and "error" not in events[-1], events[-1]
    assert stub.requests == 1
    assert metric(metrics, "upstream_retries_from_total", stub.url) == 1
    assert metric(metrics, "upstream_requests_total", upstreams[0]) == 1
    print(f"{mode}: answered by the next upstream after {elapsed:.2f} s")
    assert elapsed < 40


def test_death_after_the_first_token_is_an_error_not_a_retry(upstreams: list[str], tiny_gguf: Path, tmp_path: Path) -> None:
    with StubUpstream("die", tokens=3) as stub:
        urls = [stub.url, upstreams[1]]
        server, _ = front(urls, tmp_path, tiny_gguf)
        with server as base:
            wait_health(base)
            events = ask(base, user_ranking_first(stub.url, urls), max_tokens=20)
            metrics = httpx.get(base + "/metrics").text
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c.get("choices"))
    assert text == "片0片1片2"
    assert "error" in events[-1], events[-1]
    assert metric(metrics, "upstream_requests_total", upstreams[1]) == 0


def test_cancelling_closes_the_upstream_stream(tiny_gguf: Path, tmp_path: Path) -> None:
    with StubUpstream("slow") as stub:
        server, engine = front([stub.url], tmp_path, tiny_gguf)
        with server as base:
            wait_health(base)
            body = {"model": "x", "stream": True, "max_tokens": 60, "messages": [{"role": "user", "content": "长回答"}]}
            with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=30) as r:
                seen = 0
                for line in r.iter_lines():
                    seen += line.startswith("data: {") and '"content"' in line
                    if seen >= 3:
                        break
            left = time.monotonic()
            deadline = left + 5
            while stub.hung_up_at is None and time.monotonic() < deadline:
                time.sleep(0.05)
            stats = engine.stats()
    assert stub.hung_up_at is not None, "the upstream stream stayed open"
    print(f"upstream stream closed {stub.hung_up_at - left:.2f} s after the client left; {stub.pieces_sent} pieces sent")
    assert stub.pieces_sent < 60
    assert stats["requests_finished_total"]["cancelled"] == 1 and stats["upstream_in_flight"][stub.url] == 0


def test_a_dead_upstream_is_skipped_and_reported(upstreams: list[str], tiny_gguf: Path, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    server, _ = front([dead, upstreams[0]], tmp_path, tiny_gguf)
    with server as base:
        wait_health(base)
        for i in range(4):
            events = ask(base, f"问{i}", max_tokens=3)
            assert "error" not in events[-1]
        metrics = httpx.get(base + "/metrics").text
    assert metric(metrics, "upstream_up", dead) == 0 and metric(metrics, "upstream_up", upstreams[0]) == 1
    assert metric(metrics, "upstream_requests_total", dead) == 0  # the probe saw it down first


def test_health_waits_for_an_upstream(tiny_gguf: Path, tmp_path: Path) -> None:
    server, _ = front([f"http://127.0.0.1:{free_port()}"], tmp_path, tiny_gguf)
    with server as base:
        time.sleep(0.3)
        r = httpx.get(base + "/health")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        err = httpx.post(base + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}).json()["error"]
        assert err["code"] == "model_loading"


def test_token_counts_without_a_local_model(upstreams: list[str], tiny_gguf: Path) -> None:
    from xiaoq.engine.vocab import Vocab

    vocab = Vocab(tiny_gguf)
    settings = make_settings(ctx=512, threads=1, parallel=1, kv_cache_mb=0)
    engine = LlamaEngine(tiny_gguf, settings)
    import asyncio

    asyncio.run(engine.start())
    try:
        msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "你好，世界 hello"}]
        assert vocab.count_prompt(msgs) == engine.count_prompt_tokens(msgs)
        assert vocab.tokenize("春眠不觉晓") == engine.tokenize("春眠不觉晓")
        remote = httpx.post(upstreams[0] + "/extras/tokenize", json={"input": "春眠不觉晓"}).json()["tokens"]
        assert remote == vocab.tokenize("春眠不觉晓")
    finally:
        asyncio.run(engine.close())
        vocab.close()


def test_remote_counting_of_a_long_text_goes_in_pieces(tiny_gguf: Path) -> None:
    """Without a model file, a text longer than one tokenize request allows is counted in pieces
    through a real XiaoQ upstream's /tokenize, within a token per piece of the exact count."""
    import asyncio

    from xiaoq.engine.upstream_tokens import PIECE_CHARS, RemoteTokenizer
    from xiaoq.engine.vocab import Vocab

    settings = make_settings(ctx=512, parallel=1, threads=1, kv_cache_mb=0)
    with serve(create_app(settings, LlamaEngine(tiny_gguf, settings), web_dir=None)) as upstream:
        wait_health(upstream)
        remote = asyncio.run(RemoteTokenizer.find(upstream, {}))
        text = "春眠不觉晓，处处闻啼鸟。" * (PIECE_CHARS // 4)
        got = len(remote.tokenize(text))
        remote.close()
    vocab = Vocab(tiny_gguf)
    exact = len(vocab.tokenize(text))
    vocab.close()
    assert exact <= got <= exact + len(text) // PIECE_CHARS + 1

"""Continuing the last assistant message (``continue_last``) through a real llama-server upstream on
the tiny GGUF: llama-server's chat endpoint leaves a final assistant message open ("assistant
prefill"), so the reply goes on from its last character, exactly as the same server continues the
rendered prompt itself; over a conversation, the stored reply grows in place. A server that
answers a final assistant message with a new reply (llama-cpp-python's) gets a 501 instead.

llama-server comes from bench/build_llama.sh (as the bench uses it); where it was never built these
tests skip, like the bench's own smoke test."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from xiaoq.engine.types import GenerationRequest, SamplingParams
from xiaoq.engine.upstream import UpstreamEngine
from xiaoq.api.app import create_app
from xiaoq.store import Store

from tests.api.helpers import make_settings, parse_sse
from tests.api.server import serve, wait_health
from tests.engine.upstreams import free_port, start_llama_cpp_server

ROOT = Path(__file__).resolve().parents[2]
PARTIAL = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "Hello, wor"}]


def llama_server_binary() -> Path | None:
    """The llama-server bench/build_llama.sh built (never builds here), or None."""
    out = subprocess.run(["bash", str(ROOT / "bench" / "build_llama.sh")], env={**os.environ, "BENCH_NO_BUILD": "1"}, capture_output=True, text=True)
    binary = Path(out.stdout.strip() or "/nonexistent") / "llama-server"
    return binary if binary.is_file() else None


def _start(tiny_gguf: Path, log: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    binary = llama_server_binary()
    if binary is None:
        pytest.skip("llama-server is not built (bench/build_llama.sh)")
    port = free_port()
    argv = [str(binary), "-m", str(tiny_gguf), "--host", "127.0.0.1", "--port", str(port), "-c", "1024", "-t", "1", "-np", "1", *extra]
    proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not _healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(log.read_text()[-2000:])
        time.sleep(0.2)
    return proc, url


@pytest.fixture(scope="module")
def llama_server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = _start(tiny_gguf, tmp_path_factory.mktemp("llama-server") / "log")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _server_continuation(url: str, messages: list[dict[str, str]], n: int) -> tuple[str, str]:
    """The server's own chat-template rendering of ``messages`` and its greedy continuation of it."""
    prompt = httpx.post(url + "/apply-template", json={"messages": messages}, timeout=30).json()["prompt"]
    done = httpx.post(url + "/completion", json={"prompt": prompt, "n_predict": n, "temperature": 0, "cache_prompt": False}, timeout=60).json()
    return prompt, done["content"]


async def _continue(url: str, vocab: Path, n: int) -> tuple[str, int]:
    engine = UpstreamEngine(make_settings(upstream=[url], ctx=1024, max_tokens=64), vocab_path=vocab)
    await engine.start()
    try:
        sampling = SamplingParams(temperature=0.0, max_tokens=n)
        gen = await engine.submit(GenerationRequest(messages=list(PARTIAL), sampling=sampling, continue_last=True))  # type: ignore[arg-type]
        text = await gen.text()
        assert gen.result is not None and gen.result.finish_reason == "length"
        return text, gen.result.usage.prompt_tokens
    finally:
        await engine.close()


def test_continue_last_goes_on_from_the_last_character(llama_server: str, tiny_gguf: Path) -> None:
    prompt, expected = _server_continuation(llama_server, PARTIAL, 6)
    assert prompt.endswith("<|im_start|>assistant\nHello, wor")  # left open: no end of turn, no new cue
    text, prompt_tokens = asyncio.run(_continue(llama_server, tiny_gguf, 6))
    assert text == expected and text
    from xiaoq.engine.vocab import Vocab

    vocab = Vocab(tiny_gguf)
    try:
        assert prompt_tokens == len(vocab.tokenize(prompt, parse_special=True))  # the open prompt, not a new turn
    finally:
        vocab.close()


def _cut_then_continue(url: str, tiny_gguf: Path, tmp_path: Path) -> tuple[dict, list, list]:
    """A conversation over ``url`` whose first reply is cut by max_tokens, then continued: the
    reply before, the continue's events, the messages after."""
    settings = make_settings(upstream=[url], ctx=1024, max_tokens=64, temperature=0.0)
    store = Store(tmp_path / "front.db")
    try:
        with serve(create_app(settings, UpstreamEngine(settings, vocab_path=tiny_gguf), store=store, web_dir=None)) as base:
            wait_health(base, timeout=60)
            cid = httpx.post(base + "/api/conversations", json={}).json()["id"]
            first = parse_sse(httpx.post(f"{base}/api/conversations/{cid}/messages", json={"content": "你好", "max_tokens": 4}, timeout=60).text)[-1]
            assert first["finish_reason"] == "length"
            before = httpx.get(f"{base}/api/conversations/{cid}").json()["messages"][-1]
            events = parse_sse(httpx.post(f"{base}/api/conversations/{cid}/continue", json={"max_tokens": 4}, timeout=60).text)
            return before, events, httpx.get(f"{base}/api/conversations/{cid}").json()["messages"]
    finally:
        store.close()


def test_a_conversation_reply_cut_by_max_tokens_grows_in_place(llama_server: str, tiny_gguf: Path, tmp_path: Path) -> None:
    before, events, after = _cut_then_continue(llama_server, tiny_gguf, tmp_path)
    added = "".join(e.get("token", "") for e in events if isinstance(e, dict))
    assert events[-1]["done"] is True and events[-1]["finish_reason"] == "length"
    assert len(after) == 2 and after[-1]["id"] == before["id"]
    assert added and after[-1]["content"] == before["content"] + added


def test_an_upstream_that_starts_a_new_reply_instead_is_refused_and_the_reply_stays(tiny_gguf: Path, tmp_path: Path) -> None:
    """llama-cpp-python's server closes a final assistant message and answers anew (its prompt is
    longer by an end of turn and a new assistant cue): continue is a 501 saying so, before any
    token, and the stored reply is left as it was."""
    proc, url = start_llama_cpp_server(tiny_gguf, tmp_path / "llama_cpp.log")
    settings = make_settings(upstream=[url], ctx=1024, max_tokens=64, temperature=0.0)
    store = Store(tmp_path / "front.db")
    try:
        with serve(create_app(settings, UpstreamEngine(settings, vocab_path=tiny_gguf), store=store, web_dir=None)) as base:
            wait_health(base, timeout=60)
            cid = httpx.post(base + "/api/conversations", json={}).json()["id"]
            store.add_message(cid, "user", "你好")
            store.add_message(cid, "assistant", "Hello, wor", "complete", finish_reason="length")
            before = httpx.get(f"{base}/api/conversations/{cid}").json()["messages"]
            r = httpx.post(f"{base}/api/conversations/{cid}/continue", json={"max_tokens": 4}, timeout=60)
            assert r.status_code == 501, r.text
            assert r.json()["error"]["code"] == "continue_unsupported" and url in r.json()["error"]["message"]
            assert httpx.get(f"{base}/api/conversations/{cid}").json()["messages"] == before
            # an ordinary turn still works there
            done = parse_sse(httpx.post(f"{base}/api/conversations/{cid}/messages", json={"content": "再见", "max_tokens": 2}, timeout=60).text)[-1]
            assert done["done"] is True
    finally:
        store.close()
        proc.terminate()
        proc.wait(timeout=10)

"""A 300,000-character prompt must not freeze the other streams of a real ``xiaoq serve``.

Tokenizing and counting such a prompt takes a noticeable time; done on the event loop it stops
token delivery to every other client for that long. The test streams one reply, posts the huge
prompt (which does not fit: ``context_length_exceeded``), and measures the largest gap between
two token events of the running stream while the huge prompt is handled.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx

from tests.cli.procs import free_port, start_server, wait_healthy

#: A paste a user might make: mixed Chinese, English, digits and punctuation.
PARAGRAPH = "小Q在本地运行，hello world, the model is fast on a CPU. 这是第1234段文字；numbers 56789 and more words. "
BIG_CHARS = 300_000
#: Generous: a healthy stream's gaps here are a few tens of milliseconds.
MAX_GAP_S = 1.0


def _stream(url: str, arrivals: list[float], stop: threading.Event, outcome: dict) -> None:
    body = {"prompt": "keep talking", "max_tokens": 7000, "temperature": 0}
    with httpx.stream("POST", url + "/chat", json=body, timeout=60) as r:
        outcome["status"] = r.status_code
        for line in r.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.perf_counter())
                if "done" in json.loads(line[6:]):
                    outcome["finished_early"] = True
            if stop.is_set():
                return


def test_huge_prompt_is_refused_without_freezing_a_running_stream(cli_env: dict[str, str], tiny_gguf: Path, serve_proc: list) -> None:
    port = free_port()
    args = ["--model", str(tiny_gguf), "--port", str(port), "--ctx", "8192", "--max-tokens", "8000", "--parallel", "2", "--max-body-bytes", "4000000"]
    proc = start_server(args, cli_env, serve_proc)
    wait_healthy(proc, port)
    url = f"http://127.0.0.1:{port}"

    arrivals: list[float] = []
    stop, outcome = threading.Event(), {}
    reader = threading.Thread(target=_stream, args=(url, arrivals, stop, outcome), daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while len(arrivals) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(arrivals) >= 30, "the first stream did not start"

    prompt = (PARAGRAPH * (BIG_CHARS // len(PARAGRAPH) + 1))[:BIG_CHARS]
    t0 = time.perf_counter()
    r = httpx.post(url + "/chat", json={"prompt": prompt}, timeout=120)
    t1 = time.perf_counter()
    time.sleep(0.3)  # a freeze right after the response would show here
    stop.set()
    reader.join(30)

    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"]["code"] == "context_length_exceeded"
    assert not outcome.get("finished_early"), "the running stream ended before the huge prompt was handled"
    during = [b - a for a, b in zip(arrivals, arrivals[1:]) if b >= t0]
    assert during, "no token arrived while the huge prompt was handled"
    largest = max(during)
    print(f"\n300,000-character prompt refused in {t1 - t0:.2f} s; largest gap of the running stream meanwhile: {largest * 1000:.0f} ms")
    assert largest < MAX_GAP_S, f"the running stream froze for {largest:.2f} s"

"""Durability end to end: the real server (``python -m xiaoq serve``, real llama.cpp on the tiny GGUF,
a real SQLite file) is SIGKILLed while a reply streams; after a restart on the same database every
committed message is there, the reply is ``incomplete`` and no longer than what the client received
(but not empty: it was saved while streaming), and ``PRAGMA integrity_check`` is ok.

SIGTERM while replies stream on every surface: each stream ends at once with a
``server_shutting_down`` error event (an error chunk on the OpenAI stream, no ``[DONE]``), the
conversation's partial reply is stored exactly as sent, and the process exits 0 within uvicorn's
grace period."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.api.server import free_port


#: uvicorn's timeout_graceful_shutdown in ``xiaoq serve``: open responses are cut after it.
GRACE_S = 5.0


def start_server(model: Path, db: Path, log: Path, parallel: int = 1) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XIAOQ_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["XIAOQ_LOOP_GUARD"] = "false"  # the tiny model's gibberish repeats; the reply must run long
    cmd = [
        sys.executable, "-m", "xiaoq", "serve", "--model", str(model), "--db", str(db), "--port", str(port),
        "--parallel", str(parallel), "--threads", "1", "--ctx", "8192", "--max-tokens", "6000", "--kv-cache-mb", "16",
    ]
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("server never became ready")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("data: "):
            try:
                yield json.loads(line[6:])
            except ValueError:  # a line cut by the kill
                return


@pytest.mark.slow
def test_sigkill_mid_reply_keeps_committed_messages_and_partial_reply(tiny_gguf: Path, tmp_path: Path) -> None:
    db, log = tmp_path / "xiaoq.db", tmp_path / "server.log"
    proc, url = start_server(tiny_gguf, db, log)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            cid = http.post("/api/conversations", json={"title": "会被杀掉"}).json()["id"]
            committed: list[tuple[str, str]] = []
            for q in ("你好", "第二个问题"):
                r = http.post(f"/api/conversations/{cid}/messages", json={"content": q, "max_tokens": 8, "temperature": 0})
                events = list(sse(iter(r.text.splitlines())))
                assert events[-1]["done"] is True
                committed += [("user", q), ("assistant", "".join(e["token"] for e in events if "token" in e))]

            received = ""
            with http.stream("POST", f"/api/conversations/{cid}/messages", json={"content": "写一篇很长的文章", "max_tokens": 5000}) as resp:
                lines = resp.iter_lines()
                events = sse(lines)
                start = next(events)
                for event in events:
                    received += event.get("token", "")
                    if len(received) >= 20:
                        break
                time.sleep(1.6)  # the server keeps streaming and saves the reply at least once a second
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
                try:  # whatever the dead server had already written to the socket
                    for event in events:
                        assert "done" not in event, "the reply finished before the kill: make it longer"
                        received += event.get("token", "")
                except httpx.HTTPError:
                    pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    proc, url = start_server(tiny_gguf, db, log)
    try:
        conv = httpx.get(f"{url}/api/conversations/{cid}", timeout=30).json()
    finally:
        stop(proc)
    msgs = conv["messages"]
    lost = [c for c in committed if c not in [(m["role"], m["content"]) for m in msgs]]
    print(f"SIGKILL mid-reply: {len(committed) + 1} committed messages, {len(lost)} lost; reply kept {len(msgs[-1]['content'])} of {len(received)} chars sent")
    assert [(m["role"], m["content"]) for m in msgs[:4]] == committed
    assert all(m["status"] == "complete" for m in msgs[:4])
    user, reply = msgs[4], msgs[5]
    assert (user["role"], user["content"], user["status"]) == ("user", "写一篇很长的文章", "complete")
    assert reply["id"] == start["message_id"] and reply["role"] == "assistant" and reply["status"] == "incomplete"
    assert reply["content"], "the reply was never saved while it streamed"
    assert len(reply["content"]) <= len(received) and received.startswith(reply["content"])
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


class Reader(threading.Thread):
    """Reads one SSE stream to its end; ``flowing`` is set once a few tokens have arrived."""

    def __init__(self, url: str, path: str, body: dict[str, Any], text_of: Any):
        super().__init__(daemon=True)
        self.url, self.path, self.body, self.text_of = url, path, body, text_of
        self.flowing = threading.Event()
        self.events: list[Any] = []
        self.text = ""
        self.error: Any = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=60) as http, http.stream("POST", self.path, json=self.body) as r:
                assert r.status_code == 200, r.read()
                for line in r.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    event = line[6:] if line == "data: [DONE]" else json.loads(line[6:])
                    self.events.append(event)
                    self.text += self.text_of(event) if isinstance(event, dict) else ""
                    if len(self.text) >= 10:
                        self.flowing.set()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            self.flowing.set()


def openai_text(event: dict[str, Any]) -> str:
    choices = event.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""


@pytest.mark.slow
def test_sigterm_mid_stream_ends_each_stream_with_server_shutting_down(tiny_gguf: Path, tmp_path: Path) -> None:
    db, log = tmp_path / "xiaoq.db", tmp_path / "server.log"
    proc, url = start_server(tiny_gguf, db, log, parallel=3)
    try:
        cid = httpx.post(f"{url}/api/conversations", json={"title": "被停掉"}, timeout=30).json()["id"]
        long = {"max_tokens": 5000}
        readers = {
            "chat": Reader(url, "/chat", {"prompt": "写一篇很长的文章", **long}, lambda e: e.get("token", "")),
            "openai": Reader(url, "/v1/chat/completions", {"messages": [{"role": "user", "content": "长文"}], "stream": True, **long}, openai_text),
            "conversation": Reader(url, f"/api/conversations/{cid}/messages", {"content": "写一篇很长的文章", **long}, lambda e: e.get("token", "")),
        }
        for r in readers.values():
            r.start()
        for r in readers.values():
            assert r.flowing.wait(60) and r.error is None, r.error
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for r in readers.values():
            r.join(30)
        code = proc.wait(30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    print(f"SIGTERM -> exit {code} in {took:.2f} s (grace {GRACE_S} s); tokens sent: " + ", ".join(f"{k} {len(r.text)} chars" for k, r in readers.items()))
    for name, r in readers.items():
        assert r.error is None, (name, r.error)
        last = r.events[-1]
        assert isinstance(last, dict) and last.get("error", {}).get("code") == "server_shutting_down", (name, r.events[-3:])
        assert not any(isinstance(e, dict) and (e.get("done") or (e.get("choices") or [{}])[0].get("finish_reason")) for e in r.events), name
    assert "[DONE]" not in readers["openai"].events
    assert code == 0, log.read_text(errors="replace")[-2000:]
    assert took < GRACE_S, f"the server took {took:.2f} s to stop"

    proc, url = start_server(tiny_gguf, db, log)
    try:
        conv = httpx.get(f"{url}/api/conversations/{cid}", timeout=30).json()
    finally:
        stop(proc)
    user, reply = conv["messages"]
    assert (user["role"], user["status"]) == ("user", "complete")
    assert reply["id"] == readers["conversation"].events[-1]["message_id"]
    assert (reply["status"], reply["content"]) == ("incomplete", readers["conversation"].text)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

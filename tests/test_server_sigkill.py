"""Durability end to end: the real server (``python -m xiaoq serve``, real llama.cpp on the tiny GGUF,
a real SQLite file) is SIGKILLed while a reply streams; after a restart on the same database every
committed message is there, the reply is ``incomplete`` and no longer than what the client received
(but not empty: it was saved while streaming), and ``PRAGMA integrity_check`` is ok."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.api.server import free_port


def start_server(model: Path, db: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XIAOQ_")}
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [
        sys.executable, "-m", "xiaoq", "serve", "--model", str(model), "--db", str(db), "--port", str(port),
        "--parallel", "1", "--threads", "1", "--ctx", "8192", "--max-tokens", "6000", "--kv-cache-mb", "16",
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
    assert [(m["role"], m["content"]) for m in msgs[:4]] == committed
    assert all(m["status"] == "complete" for m in msgs[:4])
    user, reply = msgs[4], msgs[5]
    assert (user["role"], user["content"], user["status"]) == ("user", "写一篇很长的文章", "complete")
    assert reply["id"] == start["message_id"] and reply["role"] == "assistant" and reply["status"] == "incomplete"
    assert reply["content"], "the reply was never saved while it streamed"
    assert len(reply["content"]) <= len(received) and received.startswith(reply["content"])
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

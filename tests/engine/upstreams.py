"""Upstreams for the upstream engine's tests: real OpenAI-compatible servers (llama-cpp-python's own
``python -m llama_cpp.server`` on the tiny GGUF) and stub servers that fail on purpose."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_llama_cpp_server(model: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", "2048", "--n_threads", "1", "--n_batch", "128"]
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("llama_cpp.server did not start within 60 s")


class StubUpstream:
    """An OpenAI-compatible lookalike that fails in one chosen way.

    ``mode``: ``"500"`` answers every completion with HTTP 500; ``"hang"`` reads the request and
    never answers; ``"die"`` streams ``tokens`` pieces, then drops the connection; ``"slow"``
    streams a piece every 0.1 s (up to 300) and records when the client hung up.
    """

    def __init__(self, mode: str, tokens: int = 3):
        self.mode, self.tokens = mode, tokens
        self.requests = 0
        self.hung_up_at: Optional[float] = None
        self.pieces_sent = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._json(200, {"object": "list", "data": [{"id": f"stub-{stub.mode}", "object": "model"}]})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                stub.requests += 1
                if stub.mode == "500":
                    return self._json(500, {"error": {"message": "stub failure"}})
                if stub.mode == "hang":
                    time.sleep(30)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                n = stub.tokens if stub.mode == "die" else 300
                try:
                    for i in range(n):
                        chunk = {"choices": [{"index": 0, "delta": {"content": f"片{i}"}, "finish_reason": None}]}
                        self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
                        self.wfile.flush()
                        stub.pieces_sent += 1
                        if stub.mode == "slow":
                            time.sleep(0.1)
                except (BrokenPipeError, ConnectionResetError):
                    stub.hung_up_at = time.monotonic()
                    return
                self.close_connection = True  # "die": gone without finish_reason or [DONE]

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "StubUpstream":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

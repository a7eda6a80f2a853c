"""Run an app behind a real uvicorn server on 127.0.0.1 (free port) in a thread, with bounded waits.

Real sockets matter for what in-process transports cannot show: tokens flushed one by one, and a
client that closes its connection mid-answer.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import uvicorn
from fastapi import FastAPI


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(app: FastAPI, *, startup_timeout: float = 30.0) -> Iterator[str]:
    """Yield the base URL of a running server; stop it (bounded) on exit."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "uvicorn did not stop"


def wait_health(base_url: str, timeout: float = 60.0) -> dict:
    """Poll /health until 200 (the model loads in the background); fail on an error status."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(base_url + "/health", timeout=5)
        if r.status_code == 200:
            return r.json()
        if r.status_code != 503:
            raise AssertionError(f"/health: {r.status_code} {r.text}")
        time.sleep(0.05)
    raise AssertionError("model never became ready")

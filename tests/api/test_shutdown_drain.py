"""The drain that SIGTERM starts (``app.state.draining.begin()``, called by ``DrainingServer`` on the
event loop): a non-streaming OpenAI request waiting for its answer gets a 503 JSON error with code
``server_shutting_down``, and a request that arrives while draining never starts generating.
(The streaming surfaces, over a real ``xiaoq serve`` and SIGTERM: tests/test_server_sigkill.py.)"""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi.testclient import TestClient

from tests.api.helpers import parse_sse, wait_ready

MSG = [{"role": "user", "content": "x"}]


def test_a_waiting_non_streaming_answer_is_503_server_shutting_down(app_factory: Any) -> None:
    app, engine = app_factory(engine_kwargs={"delay": 0.02})
    engine.enqueue("一" * 2000)
    with TestClient(app) as client:
        wait_ready(client)
        out: dict[str, Any] = {}
        t = threading.Thread(target=lambda: out.update(r=client.post("/v1/chat/completions", json={"messages": MSG})))
        t.start()
        deadline = time.monotonic() + 10
        while not app.state.draining.live and time.monotonic() < deadline:
            time.sleep(0.01)
        client.portal.call(app.state.draining.begin)
        t.join(10)
        r = out["r"]
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "server_shutting_down" and r.headers["retry-after"]
        # While draining, a stream that starts ends at once with the same error.
        events = parse_sse(client.post("/chat", json={"prompt": "hi"}).text)
        assert events[-1]["error"]["code"] == "server_shutting_down" and not any("done" in e for e in events)
        assert app.state.draining.live == set()

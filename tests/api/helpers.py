"""Helpers shared by the API tests (settings isolated from the environment, SSE parsing)."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi.testclient import TestClient

from xiaoq.config import Settings


def make_settings(**overrides: Any) -> Settings:
    """Settings from defaults + overrides only (XIAOQ_* variables in the environment are ignored).
    ``testserver`` is the Host header Starlette's TestClient sends. The loop guard is off: scripted
    fake replies and the tiny model's gibberish often repeat themselves on purpose; the guard's own
    tests turn it on."""
    base: dict[str, Any] = {"threads": 1, "parallel": 2, "queue": 4, "system_prompt": "SYS", "allowed_hosts": ["testserver"], "loop_guard": False}
    base.update(overrides)
    return Settings.model_validate(_Isolated(**base).model_dump())


class _Isolated(Settings):
    """Validates like the real model but reads only the values given (no XIAOQ_* from the env)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, *args, **kwargs):  # type: ignore[override]
        return (init_settings,)


def wait_ready(client: TestClient, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/health").status_code == 200:
            return
        time.sleep(0.01)
    raise AssertionError("app never became ready")


def parse_sse(text: str) -> list[Any]:
    """The ``data:`` payloads of an event stream, JSON-decoded (``[DONE]`` stays a string).
    Also checks the framing: every event is one ``data:`` line followed by a blank line."""
    events = []
    assert text.endswith("\n\n"), repr(text[-50:])
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block, repr(block)
        payload = block[len("data: "):]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events

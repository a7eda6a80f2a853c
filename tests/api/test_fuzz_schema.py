"""Schemathesis over the app's own OpenAPI schema, against a real uvicorn server on 127.0.0.1 (the
fake engine, a real SQLite file): every operation, valid and invalid inputs, a bounded number of
examples each. No response may be a 5xx, use an undeclared status, content type or shape. The
server counts what it answered, and the last test prints the figures. (The generating operations
over the tiny real model, shorter: test_fuzz_real_model.py.)"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from xiaoq.api.app import create_app
from xiaoq.engine.fake import FakeEngine
from xiaoq.store import Store

from tests.api.helpers import make_settings
from tests.api.server import serve, wait_health

#: Examples per operation and per phase: ~20 operations keep the module near 15-25 s.
EXAMPLES = 5
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]


class StatusCounter:
    """ASGI wrapper counting the status of every response the server sent."""

    def __init__(self, app: Any):
        self.app = app
        self.statuses: Counter[int] = Counter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.statuses[message["status"]] += 1
            await send(message)

        await self.app(scope, receive, counting_send)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, StatusCounter]]:
    store = Store(tmp_path_factory.mktemp("fuzz") / "xiaoq.db")
    s = make_settings(ctx=2048, default_max_tokens=16, max_tokens=64, queue=64)
    app = create_app(s, FakeEngine(s), store=store, web_dir=None)
    counter = StatusCounter(app)
    with serve(counter) as url:  # type: ignore[arg-type]
        wait_health(url)
        yield app, url, counter
    store.close()


def app_schema() -> Any:
    """The schema of an app built like the live one (building it starts nothing; the store is an
    in-memory SQLite database, since the routes that exist depend on having one)."""
    s = make_settings()
    store = Store(":memory:")
    try:
        return schemathesis.openapi.from_dict(create_app(s, FakeEngine(s), store=store, web_dir=None).openapi())
    finally:
        store.close()


schema = app_schema()


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
def test_every_operation_conforms_and_never_5xx(case: Any, live: tuple[Any, str, StatusCounter]) -> None:
    case.call_and_validate(base_url=live[1], checks=CHECKS, timeout=30)


def test_zz_figures(live: tuple[Any, str, StatusCounter]) -> None:
    statuses = live[2].statuses
    total = sum(statuses.values())
    server_errors = sum(n for code, n in statuses.items() if code >= 500)
    print(f"schemathesis (fake engine): {total} requests, {server_errors} 5xx, by status {dict(sorted(statuses.items()))}")
    assert total >= 100 and server_errors == 0

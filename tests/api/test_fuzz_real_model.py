"""A short schemathesis pass over the operations that generate, on the REAL llama.cpp engine (the
tiny GGUF) behind uvicorn on 127.0.0.1 with a real SQLite file: whatever values the schema allows
(any text, any sampling parameter in range, any stop list or logit_bias) reach llama.cpp, and
nothing may come back as a 5xx or outside the declared schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from xiaoq.api.app import create_app
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.store import Store

from tests.api.helpers import make_settings
from tests.api.server import serve, wait_health
from tests.api.test_fuzz_schema import CHECKS, StatusCounter, app_schema

GENERATING = r"^/(chat|v1/chat/completions|api/conversations/\{conversation_id\}/(messages|regenerate))$"


@pytest.fixture(scope="module")
def live(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, StatusCounter]]:
    store = Store(tmp_path_factory.mktemp("fuzz-real") / "xiaoq.db")
    s = make_settings(ctx=4096, default_max_tokens=4, max_tokens=8, parallel=2, queue=32, threads=1, kv_cache_mb=16)
    counter = StatusCounter(create_app(s, LlamaEngine(tiny_gguf, s), store=store, web_dir=None))
    with serve(counter) as url:  # type: ignore[arg-type]
        wait_health(url)
        yield url, counter
    store.close()


schema = app_schema().include(method="POST", path_regex=GENERATING)


@schema.parametrize()
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
def test_generating_operations_on_llama_cpp(case: Any, live: tuple[str, StatusCounter]) -> None:
    case.call_and_validate(base_url=live[0], checks=CHECKS, timeout=60)


def test_zz_figures(live: tuple[str, StatusCounter]) -> None:
    statuses = live[1].statuses
    total = sum(statuses.values())
    server_errors = sum(n for code, n in statuses.items() if code >= 500)
    print(f"schemathesis (tiny real model): {total} requests, {server_errors} 5xx, by status {dict(sorted(statuses.items()))}")
    assert total >= 20 and server_errors == 0

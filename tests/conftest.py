"""Shared pytest fixtures for the whole suite (keep this small: only truly global fixtures).

- ``tiny_gguf``: a tiny random-weight Qwen2 GGUF (tests/tinymodel.py) that real llama.cpp loads,
  so every capability can be tested over the real engine in seconds.
- ``real_model_path``: the real Qwen2.5 GGUF named by ``XIAOQ_TEST_MODEL``, for tests marked
  ``real_model``; they skip when it is unset.
- the user data directory (``XDG_DATA_HOME``) is a fresh temporary one for each test, for this
  process and the servers it starts: a test that gives no ``--data-dir`` must not read or write
  the KV states and database of the person running the suite, nor those of an earlier test.
- ``pg_server``: a real PostgreSQL (tests/pg.py) started once per session; ``pg_url``: a fresh
  database on it for one test. Where PostgreSQL is not installed they skip (test.sh installs it).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests import tinymodel
from tests.pg import PgServer, pg_bin
from tests.tinymodel import build_tiny_gguf

_TINY_NAME = "xiaoq-tiny-qwen2.gguf"


# Before any fixture or server starts: nothing in the suite sees the runner's own data directory.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="xiaoq-test-xdg-")


@pytest.fixture(autouse=True)
def private_user_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh user data directory per test: an engine's KV states kept at its shutdown must not
    be restored by the next test's engine."""
    home = tmp_path_factory.mktemp("xdg-data")
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to the tiny Qwen2 GGUF, built once per session.

    If ``XIAOQ_TINY_GGUF_CACHE`` names a directory, the file is kept there and reused across
    sessions. The build is deterministic; the cached name carries a hash of the generator's
    source, so editing tinymodel.py never leaves a stale model in use.
    """
    cache_dir = os.environ.get("XIAOQ_TINY_GGUF_CACHE")
    if cache_dir:
        digest = hashlib.sha256(Path(tinymodel.__file__).read_bytes()).hexdigest()[:12]
        cached = Path(cache_dir) / f"xiaoq-tiny-qwen2-{digest}.gguf"
        if not cached.is_file():
            build_tiny_gguf(cached)
        return cached
    return build_tiny_gguf(tmp_path_factory.mktemp("tiny-model") / _TINY_NAME)


@pytest.fixture(scope="session")
def real_model_path() -> Path:
    """Path to a real GGUF from ``XIAOQ_TEST_MODEL``; skip when unset, fail when it is wrong
    (a typo must not silently turn the real-model tests into skips)."""
    value = os.environ.get("XIAOQ_TEST_MODEL")
    if not value:
        pytest.skip("set XIAOQ_TEST_MODEL to a GGUF to run real-model tests")
    path = Path(value).expanduser()
    if not path.is_file():
        pytest.fail(f"XIAOQ_TEST_MODEL={value!r} does not name an existing file", pytrace=False)
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if pg_bin() is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    server = PgServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    return pg_server.new_database()

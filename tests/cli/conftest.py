"""Fixtures for driving the real ``xiaoq`` console script in subprocesses."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no XIAOQ_* from the caller, empty model caches, no hub access, 1 thread,
    no loop guard (the tiny model's gibberish repeats itself, and these tests need long replies)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XIAOQ_", "HF_", "MODELSCOPE_"))}
    env.update(
        HF_HOME=str(tmp_path / "hf-home"),
        MODELSCOPE_CACHE=str(tmp_path / "modelscope"),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        XIAOQ_THREADS="1",
        XIAOQ_PARALLEL="1",
        XIAOQ_LOOP_GUARD="false",
        XIAOQ_DB=str(tmp_path / "xiaoq.db"),
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def serve_proc(cli_env: dict[str, str]) -> Iterator[list[subprocess.Popen[str]]]:
    """Collects servers a test starts and makes sure none outlives it."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)

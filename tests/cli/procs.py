"""Helpers for driving the real ``xiaoq`` console script: run it, start and stop servers, check errors."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

import pytest


def xiaoq_command() -> list[str]:
    """The installed console script (``pip install -e .``), else ``python -m xiaoq``."""
    exe = shutil.which("xiaoq", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "xiaoq"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_xiaoq(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*xiaoq_command(), *args], env=env, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(r: subprocess.CompletedProcess[str], status: int, *needles: str) -> str:
    """Exit status as given, nothing on stdout, exactly one ``error:`` line on stderr holding the needles."""
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stdout == "", r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def get(url: str, key: Optional[str] = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_healthy(proc: subprocess.Popen[str], port: int, deadline_s: float = 90) -> dict[str, Any]:
    """Poll /health until 200 (bounded); fail with the server's output if it dies or never gets there."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}: {proc.communicate()[1]}")
        try:
            status, body = get(f"http://127.0.0.1:{port}/health")
            if status == 200:
                return body
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.25)
    proc.kill()
    pytest.fail(f"/health not 200 within {deadline_s}s: {proc.communicate()[1]}")


def start_server(args: list[str], env: dict[str, str], procs: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*xiaoq_command(), "serve", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(proc)
    return proc


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[int, str]:
    proc.send_signal(sig)  # SIGINT is what Ctrl-C sends
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err

"""``xiaoq serve`` for real: the console script, the tiny GGUF, real llama.cpp, uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

import pytest

from tests.cli.conftest import free_port, xiaoq_command


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


def test_serve_tiny_model_health_then_clean_shutdown(cli_env: dict[str, str], tiny_gguf: Path, serve_proc: list) -> None:
    port = free_port()
    proc = start_server(["--model", str(tiny_gguf), "--port", str(port), "--ctx", "512"], cli_env, serve_proc)
    body = wait_healthy(proc, port)
    assert body == {"status": "ok", "model": "xiaoq-tiny-qwen2"}
    status, err = stop(proc)
    assert status == 0, err
    assert f"http://127.0.0.1:{port}" in err  # the URL is logged
    assert "Traceback" not in err
    assert err.rstrip().endswith("XiaoQ: stopped")


def test_serve_settings_from_env_and_flags_reach_the_server(cli_env: dict[str, str], tiny_gguf: Path, serve_proc: list) -> None:
    port = free_port()
    env = {**cli_env, "XIAOQ_PORT": str(port), "XIAOQ_MODEL": str(tiny_gguf), "XIAOQ_API_KEY": "from-env", "XIAOQ_CTX": "384"}
    proc = start_server(["--api-key", "from-flag", "--max-tokens", "77", "--cpus", "0"], env, serve_proc)
    wait_healthy(proc, port)  # port and model came from the environment
    assert get(f"http://127.0.0.1:{port}/api/config")[0] == 401
    assert get(f"http://127.0.0.1:{port}/api/config", key="from-env")[0] == 401  # the flag won over the env
    status, config = get(f"http://127.0.0.1:{port}/api/config", key="from-flag")
    assert status == 200
    assert (config["max_tokens"], config["n_ctx"]) == (77, 384)
    # --cpus 0 pinned the server process before the model (and llama.cpp's threads) started.
    allowed = next(line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines() if line.startswith("Cpus_allowed_list"))
    assert allowed.split()[-1] == "0"
    status, err = stop(proc, signal.SIGTERM)  # systemd / docker stop: as clean as Ctrl-C
    assert status == 0, err
    assert err.rstrip().endswith("XiaoQ: stopped")


def test_port_in_use_is_one_line(cli_env: dict[str, str], tiny_gguf: Path) -> None:
    import socket

    from tests.cli.test_cli_errors import assert_one_line_error

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([*xiaoq_command(), "serve", "--model", str(tiny_gguf), "--port", str(port)],
                           env=cli_env, capture_output=True, text=True, timeout=60)
    assert_one_line_error(r, 1, f"cannot listen on 127.0.0.1:{port}", "in use")

"""``xiaoq serve`` for real: the console script, the tiny GGUF, real llama.cpp, uvicorn on 127.0.0.1."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

from tests.cli.procs import assert_one_line_error, free_port, get, start_server, stop, wait_healthy, xiaoq_command


def test_serve_tiny_model_health_then_clean_shutdown(cli_env: dict[str, str], tiny_gguf: Path, serve_proc: list) -> None:
    port = free_port()
    proc = start_server(["--model", str(tiny_gguf), "--port", str(port), "--ctx", "512"], cli_env, serve_proc)
    body = wait_healthy(proc, port)
    assert body == {"status": "ok"}
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
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([*xiaoq_command(), "serve", "--model", str(tiny_gguf), "--port", str(port)],
                           env=cli_env, capture_output=True, text=True, timeout=60)
    assert_one_line_error(r, 1, f"cannot listen on 127.0.0.1:{port}", "in use")

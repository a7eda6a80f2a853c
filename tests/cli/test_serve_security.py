"""``xiaoq serve`` for real, on its safety defaults: it binds 127.0.0.1, refuses a non-loopback bind
without a key (a key file counts, and stays out of ``ps``), and its log lines cannot be forged by
user text; prompts are logged only when the operator asks."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from tests.cli.procs import assert_one_line_error, free_port, get, run_xiaoq, start_server, stop, wait_healthy

FORGED = "INFO:     forged admin login"


def post_json(url: str, body: dict, key: str | None = None) -> int:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()
        return r.status


def test_default_bind_is_loopback_only(cli_env: dict[str, str], tiny_gguf: Path, serve_proc: list) -> None:
    port = free_port()
    proc = start_server(["--model", str(tiny_gguf), "--port", str(port), "--ctx", "512"], cli_env, serve_proc)
    wait_healthy(proc, port)
    listening = {c.laddr for c in psutil.Process(proc.pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", port)}, listening
    status, err = stop(proc)
    assert status == 0 and f"http://127.0.0.1:{port}" in err


def test_a_non_loopback_bind_without_a_key_refuses_to_start(cli_env: dict[str, str], tiny_gguf: Path) -> None:
    for args, env in [(["--host", "0.0.0.0"], {}), ([], {"XIAOQ_HOST": "0.0.0.0"}), (["--host", "::"], {}), (["--host", "192.0.2.10"], {})]:
        r = run_xiaoq(["serve", "--model", str(tiny_gguf), "--port", "0", *args], {**cli_env, **env})
        assert_one_line_error(r, 2, "refusing to listen", "--api-key-file")


def test_a_key_file_satisfies_the_bind_rule(cli_env: dict[str, str], tmp_path: Path) -> None:
    """Past the bind check, the next step (the model) fails: proof the key was accepted, without
    ever listening on a public address in a test."""
    key_file = tmp_path / "key"
    key_file.write_text("from-a-file\n")
    missing_model = str(tmp_path / "missing.gguf")
    for args, env in [(["--api-key-file", str(key_file)], {}), ([], {"XIAOQ_API_KEY_FILE": str(key_file)})]:
        r = run_xiaoq(["serve", "--host", "0.0.0.0", "--model", missing_model, *args], {**cli_env, **env})
        line = assert_one_line_error(r, 1, "missing.gguf")
        assert "refusing" not in line


def test_key_file_errors_are_one_line(cli_env: dict[str, str], tmp_path: Path, tiny_gguf: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    model = ["--model", str(tiny_gguf), "--port", "0"]
    r = run_xiaoq(["serve", *model, "--api-key-file", str(tmp_path / "nope")], cli_env)
    assert_one_line_error(r, 2, "--api-key-file", "XIAOQ_API_KEY_FILE", "cannot read")
    r = run_xiaoq(["serve", *model, "--api-key-file", str(empty)], cli_env)
    assert_one_line_error(r, 2, "--api-key-file", "empty")
    r = run_xiaoq(["serve", *model, "--api-key-file", str(empty), "--api-key", "k"], cli_env)
    assert_one_line_error(r, 2)
    r = run_xiaoq(["serve", *model, "--db", "postgresql://u:pw@db.invalid/xiaoq"], cli_env)
    assert_one_line_error(r, 1, "cannot connect to PostgreSQL at postgresql://u:***@db.invalid/xiaoq")


def test_the_key_from_a_file_is_required_and_not_in_ps(cli_env: dict[str, str], tiny_gguf: Path, tmp_path: Path, serve_proc: list) -> None:
    key = "k-" + "7" * 30
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    port = free_port()
    proc = start_server(["--model", str(tiny_gguf), "--port", str(port), "--ctx", "512", "--api-key-file", str(key_file)], cli_env, serve_proc)
    wait_healthy(proc, port)
    base = f"http://127.0.0.1:{port}"
    assert get(base + "/api/config")[0] == 401
    assert get(base + "/api/config", key="wrong")[0] == 401
    status, config = get(base + "/api/config", key=key)
    assert status == 200 and config["auth_required"] is True
    cmdline = " ".join(psutil.Process(proc.pid).cmdline())
    assert key not in cmdline and str(key_file) in cmdline
    stop(proc)


def serve_and_chat(cli_env: dict[str, str], tiny_gguf: Path, serve_proc: list, *flags: str) -> str:
    """Start a server, send one prompt and one title carrying CR/LF and a forged log line, stop it;
    return everything it wrote to stderr."""
    port = free_port()
    proc = start_server(["--model", str(tiny_gguf), "--port", str(port), "--ctx", "512", *flags], cli_env, serve_proc)
    wait_healthy(proc, port)
    base = f"http://127.0.0.1:{port}"
    assert post_json(base + "/chat", {"prompt": f"secret-prompt-7f3\r\n{FORGED}\nend", "max_tokens": 1}) == 200
    assert post_json(base + "/v1/chat/completions", {"messages": [{"role": "user", "content": f"secret-prompt-7f3\n{FORGED}"}], "max_tokens": 1}) == 200
    assert post_json(base + "/api/conversations", {"title": f"title-9c1\r\n{FORGED}"}) == 201
    try:
        urllib.request.urlopen(base + "/api/conversations/x%0d%0aINFO:%20%20%20%20%20forged", timeout=10)
    except urllib.error.HTTPError as e:
        assert e.code == 404
    status, err = stop(proc, signal.SIGTERM)
    assert status == 0, err
    return err


def test_prompts_are_not_logged_by_default(cli_env: dict[str, str], tiny_gguf: Path, serve_proc: list) -> None:
    err = serve_and_chat(cli_env, tiny_gguf, serve_proc)
    assert "secret-prompt-7f3" not in err and "title-9c1" not in err
    assert not any(line.lstrip().startswith(FORGED.split(":")[0] + ":") and "forged" in line for line in err.splitlines()), err


def test_logged_prompts_stay_on_one_escaped_line(cli_env: dict[str, str], tiny_gguf: Path, serve_proc: list) -> None:
    err = serve_and_chat(cli_env, tiny_gguf, serve_proc, "--log-prompts")
    lines = [line for line in err.splitlines() if "secret-prompt-7f3" in line]
    assert len(lines) == 2, err
    assert lines[0].endswith("secret-prompt-7f3\\r\\n" + FORGED + "\\nend"), lines[0]
    # elsewhere the forged text appears only inside the access line of the request whose path
    # carried it, escaped on that one line
    others = [line for line in err.splitlines() if line not in lines and "forged" in line]
    assert all(" xiaoq.access " in line and "\\r\\n" in line for line in others), err

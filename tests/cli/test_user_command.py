"""``xiaoq user add/list/passwd/remove`` on a real database file, then ``xiaoq serve --auth
accounts`` (tiny GGUF, real llama.cpp, uvicorn on 127.0.0.1) logging those users in: each gets a
real reply in a conversation the other cannot open. Errors are one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx

from tests.cli.procs import assert_one_line_error, free_port, run_xiaoq, start_server, stop, wait_healthy, xiaoq_command


def user(args: list[str], env: dict[str, str], password: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*xiaoq_command(), "user", *args], env=env, input=password + "\n", capture_output=True, text=True, timeout=60)


def test_user_commands_manage_accounts(cli_env: dict[str, str]) -> None:
    r = user(["add", "alice", "--admin", "--password-stdin"], cli_env, "alice-password")
    assert r.returncode == 0 and "alice added (admin)" in r.stdout, r.stderr
    assert user(["add", "bob", "--group", "hr", "--group", "sales", "--password-stdin"], cli_env, "bob-password").returncode == 0
    r = user(["list"], cli_env)
    assert r.stdout.splitlines() == ["alice\tadmin\t", "bob\tuser\thr,sales"]
    assert_one_line_error(user(["add", "ALICE", "--password-stdin"], cli_env, "another-password"), 1, "already exists")
    assert_one_line_error(user(["add", "carol", "--password-stdin"], cli_env, "short"), 1, "at least 8")
    assert_one_line_error(user(["add", "bad name", "--password-stdin"], cli_env, "long-enough-pw"), 1, "username")
    assert_one_line_error(user(["remove", "nobody"], cli_env), 1, "nobody")
    assert user(["passwd", "bob", "--password-stdin"], cli_env, "bob-new-password").returncode == 0
    assert user(["remove", "bob"], cli_env).returncode == 0
    assert user(["list"], cli_env).stdout.splitlines() == ["alice\tadmin\t"]


def test_serve_with_accounts_real_engine(cli_env: dict[str, str], tiny_gguf: Path, serve_proc: list) -> None:
    for name in ("alice", "bob"):
        assert user(["add", name, "--password-stdin"], cli_env, f"{name}-password").returncode == 0
    port = free_port()
    proc = start_server(["--model", str(tiny_gguf), "--port", str(port), "--ctx", "512", "--auth", "accounts"], cli_env, serve_proc)
    wait_healthy(proc, port)
    base = f"http://127.0.0.1:{port}"
    origin = {"Origin": base}
    clients = {n: httpx.Client(base_url=base, timeout=60, headers=origin) for n in ("alice", "bob")}
    try:
        assert clients["alice"].get("/api/conversations").status_code == 401
        cids = {}
        for name, c in clients.items():
            assert c.post("/api/auth/login", json={"username": name, "password": f"{name}-password"}).status_code == 200
            cids[name] = c.post("/api/conversations", json={}).json()["id"]
            with c.stream("POST", f"/api/conversations/{cids[name]}/messages", json={"content": f"hello from {name}", "max_tokens": 8}) as r:
                events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
            assert events[-1].get("done"), events[-1]
        assert clients["bob"].get(f"/api/conversations/{cids['alice']}").status_code == 404
        assert [c["id"] for c in clients["bob"].get("/api/conversations").json()["data"]] == [cids["bob"]]
    finally:
        for c in clients.values():
            c.close()
    status, _ = stop(proc)
    assert status == 0


def test_auth_flag_errors_are_one_line(cli_env: dict[str, str], tiny_gguf: Path) -> None:
    for args, needle in (
        (["--auth", "trusted-header"], "header's name"),
        (["--auth", "everyone"], "none, key, accounts"),
        (["--auth", "key"], "needs the key"),
        (["--auth", "accounts", "--api-key", "k123456"], "takes no --api-key"),
        (["--trusted-proxies", "not-an-ip"], "not an address"),
    ):
        assert_one_line_error(run_xiaoq(["serve", "--model", str(tiny_gguf), "--port", "0", *args], cli_env), 2, needle)

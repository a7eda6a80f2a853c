"""``xiaoq backup`` while a real server (tiny GGUF, real llama.cpp, uvicorn on 127.0.0.1) keeps
writing conversations, then ``xiaoq restore``: the backup is sound and holds every message that
was committed before it started."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from tests.cli.procs import assert_one_line_error, free_port, run_xiaoq, start_server, stop, wait_healthy


def _writer(base: str, stop_at: threading.Event, committed: list[tuple[int, str, str]], errors: list[str]) -> None:
    """Post turns in a bounded loop; record (message id, role, content) once each is committed."""
    with httpx.Client(base_url=base, timeout=30) as c:
        for turn in range(200):
            if stop_at.is_set():
                return
            cid = c.post("/api/conversations", json={"title": f"t{turn}"}).json()["id"]
            text = f"第{turn}个问题"
            with c.stream("POST", f"/api/conversations/{cid}/messages", json={"content": text, "max_tokens": 4}) as r:
                reply, start = "", None
                for line in r.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    event = json.loads(line[6:])
                    if event.get("start"):
                        start = event
                        committed.append((event["user_message_id"], "user", text))
                    reply += event.get("token", "")
                    if event.get("done"):
                        committed.append((event["message_id"], "assistant", reply))
                    if "error" in event:
                        errors.append(str(event["error"]))
            assert start is not None


def test_backup_while_the_server_writes_then_restore(cli_env: dict[str, str], tiny_gguf: Path, serve_proc: list, tmp_path: Path) -> None:
    port = free_port()
    proc = start_server(["--model", str(tiny_gguf), "--port", str(port), "--ctx", "512"], cli_env, serve_proc)
    wait_healthy(proc, port)
    committed: list[tuple[int, str, str]] = []
    errors: list[str] = []
    stop_at = threading.Event()
    writer = threading.Thread(target=_writer, args=(f"http://127.0.0.1:{port}", stop_at, committed, errors), daemon=True)
    writer.start()
    deadline = time.monotonic() + 30
    while len(committed) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    before = list(committed)  # committed before the backup started
    r = run_xiaoq(["backup", str(tmp_path / "backup.db")], cli_env)
    during = len(committed) - len(before)
    time.sleep(0.3)
    stop_at.set()
    writer.join(60)
    assert not writer.is_alive() and not errors
    assert r.returncode == 0, r.stderr
    assert "integrity ok" in r.stdout
    print(f"messages committed before the backup: {len(before)}, during it: {during}, after: {len(committed) - len(before) - during}")
    assert len(committed) > len(before), "the server was not writing while the backup ran"

    conn = sqlite3.connect(tmp_path / "backup.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = {i: (role, content, status) for i, role, content, status in conn.execute("SELECT id, role, content, status FROM messages")}
    conn.close()
    for mid, role, content in before:
        assert rows[mid][:2] == (role, content), mid
        if role == "assistant":
            assert rows[mid][2] == "complete"

    status, err = stop(proc)
    assert status == 0, err
    r = run_xiaoq(["restore", str(tmp_path / "backup.db")], cli_env)
    assert r.returncode == 0, r.stderr
    assert "previous database kept as" in r.stderr
    conn = sqlite3.connect(cli_env["XIAOQ_DB"])
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == len(rows)
    conn.close()


def test_backup_on_postgresql_points_to_pg_dump(cli_env: dict[str, str], tmp_path: Path) -> None:
    r = run_xiaoq(["backup", "--db", "postgresql://xiaoq@localhost/xiaoq", str(tmp_path / "b.db")], cli_env)
    assert_one_line_error(r, 1, "pg_dump")


def test_backup_refuses_an_existing_file(cli_env: dict[str, str], tmp_path: Path) -> None:
    from xiaoq.store import Store

    Store(cli_env["XIAOQ_DB"]).close()
    (tmp_path / "b.db").write_text("x")
    assert_one_line_error(run_xiaoq(["backup", str(tmp_path / "b.db")], cli_env), 1, "already exists")


def test_serve_on_postgresql(cli_env: dict[str, str], tiny_gguf: Path, serve_proc: list, pg_url: str) -> None:
    """``xiaoq serve --db postgresql://…``: the real server keeps its conversations in PostgreSQL."""
    import psycopg

    port = free_port()
    proc = start_server(["--model", str(tiny_gguf), "--port", str(port), "--ctx", "512", "--db", pg_url], cli_env, serve_proc)
    wait_healthy(proc, port)
    base = f"http://127.0.0.1:{port}"
    cid = httpx.post(base + "/api/conversations", json={"title": "在PG里"}).json()["id"]
    r = httpx.post(f"{base}/api/conversations/{cid}/messages", json={"content": "你好", "max_tokens": 4}, timeout=60)
    assert '"done"' in r.text
    status, err = stop(proc)
    assert status == 0, err
    assert "conversations in postgresql://" in err
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT title FROM conversations").fetchall() == [("在PG里",)]
        assert [r[0] for r in conn.execute("SELECT role FROM messages ORDER BY id")] == ["user", "assistant"]

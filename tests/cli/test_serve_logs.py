"""``xiaoq serve --log-format json``: a real server's log is JSON lines (uvicorn's own included), the
access line of a streamed /chat carries the client's request id, and the prompt and answer are not
in the log."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.cli.procs import free_port, start_server, stop, wait_healthy

PROMPT = "请记住暗号蓝色企鹅"


def test_json_access_log_of_a_real_server(cli_env: dict[str, str], tiny_gguf: Path, serve_proc: list) -> None:
    port = free_port()
    proc = start_server(["--model", str(tiny_gguf), "--port", str(port), "--ctx", "512", "--log-format", "json"], cli_env, serve_proc)
    wait_healthy(proc, port)
    r = httpx.post(f"http://127.0.0.1:{port}/chat", json={"prompt": PROMPT, "max_tokens": 8}, headers={"X-Request-Id": "from-client-1"}, timeout=60)
    assert r.status_code == 200 and r.headers["x-request-id"] == "from-client-1"
    answer = "".join(json.loads(line[6:]).get("token", "") for line in r.text.splitlines() if line.startswith("data: "))
    status, err = stop(proc)
    assert status == 0, err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    others = [line for line in err.splitlines() if not line.startswith("{")]
    assert all(line.startswith("XiaoQ: ") for line in others), others  # the CLI's own notes
    assert any(rec["logger"].startswith("uvicorn") for rec in records)
    chat = [rec for rec in records if rec["logger"] == "xiaoq.access" and rec["path"] == "/chat"]
    assert len(chat) == 1 and chat[0]["request_id"] == "from-client-1"
    assert chat[0]["status"] == 200 and chat[0]["completed"] is True and chat[0]["bytes"] == len(r.content)
    assert PROMPT not in err and PROMPT[:4] not in err
    if len(answer.strip()) >= 4:
        assert answer.strip() not in err

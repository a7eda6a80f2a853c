"""``xiaoq chat --conversation``: the terminal chat on a stored conversation, in process (real
llama.cpp on the tiny GGUF, real SQLite file) and through a running server's API (``--url``), with
``/history`` and ``/new``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from xiaoq.api.app import create_app
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.store import Store

from tests.api.helpers import make_settings
from tests.api.server import serve, wait_health


def run_chat(args: list[str], stdin: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XIAOQ_")}
    return subprocess.run(
        [sys.executable, "-m", "xiaoq", "chat", "--repl", *args], input=stdin, capture_output=True, text=True, env=env, timeout=timeout
    )


def test_local_stored_chat_continues_shows_history_and_starts_new(tiny_gguf: Path, tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    store = Store(db)
    cid = store.create_conversation(title="旧的")["id"]
    store.add_message(cid, "user", "第一句话")
    store.add_message(cid, "assistant", "第一个回答")
    store.close()
    common = ["--model", str(tiny_gguf), "--db", str(db), "--threads", "1", "--parallel", "1", "--max-tokens", "6", "--ctx", "1024"]
    proc = run_chat([*common, "--conversation", cid], "继续聊\n/history\n/new\n新的话题\n/exit\n")
    assert proc.returncode == 0, proc.stderr
    assert f"conversation {cid}" in proc.stderr
    assert "你> 第一句话\n小Q> 第一个回答\n" in proc.stdout  # /history shows the stored turns, old and new
    assert "你> 继续聊\n小Q> " in proc.stdout
    store = Store(db)
    try:
        msgs = store.get_messages(cid)
        assert [(m["role"], m["status"]) for m in msgs] == [("user", "complete"), ("assistant", "complete")] * 2
        assert msgs[2]["content"] == "继续聊" and msgs[3]["completion_tokens"] == 6
        convs = store.list_conversations()
        assert len(convs) == 2
        new = next(c for c in convs if c["id"] != cid)
        assert f"(new conversation {new['id']})" in proc.stdout
        assert [m["content"] for m in store.get_messages(new["id"])][:1] == ["新的话题"]
    finally:
        store.close()
    proc = run_chat([*common, "--conversation", "0" * 32], "/exit\n")
    assert proc.returncode == 1 and "No conversation with id" in proc.stderr and "Traceback" not in proc.stderr


def test_remote_stored_chat_uses_the_conversations_api(tiny_gguf: Path, tmp_path: Path) -> None:
    settings = make_settings(threads=1, parallel=1, ctx=1024, max_tokens=6, system_prompt="SYS")
    store = Store(tmp_path / "srv.db")
    try:
        cid = store.create_conversation()["id"]
        store.add_message(cid, "user", "服务器上的问题")
        store.add_message(cid, "assistant", "服务器上的回答")
        app = create_app(settings, LlamaEngine(tiny_gguf, settings), store=store, web_dir=None)
        with serve(app) as url:
            wait_health(url)
            proc = run_chat(["--url", url, "--conversation", cid, "--max-tokens", "5"], "/history\n远程提问\n/exit\n")
        assert proc.returncode == 0, proc.stderr
        assert "你> 服务器上的问题\n小Q> 服务器上的回答\n" in proc.stdout
        msgs = store.get_messages(cid)
        assert [m["content"] for m in msgs][:3] == ["服务器上的问题", "服务器上的回答", "远程提问"]
        assert msgs[3]["role"] == "assistant" and msgs[3]["status"] == "complete" and msgs[3]["completion_tokens"] == 5
    finally:
        store.close()

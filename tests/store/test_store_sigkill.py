"""Durability of the store alone: a child process commits messages and streams a reply through
ReplyWriter, is SIGKILLed mid-reply, and the parent finds every committed row, the incomplete
reply (a prefix of what was streamed, at least as long as its last save) and a sound file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from xiaoq.store import Store

CHILD = textwrap.dedent(
    """
    import sys, time
    from xiaoq.store import Store, ReplyWriter
    store = Store(sys.argv[1])
    cid = store.create_conversation(title="kill me")["id"]
    print("CONV", cid, flush=True)
    for i in range(5):
        m = store.add_message(cid, "user" if i % 2 == 0 else "assistant", f"已提交的消息{i}")
        print("COMMITTED", m["id"], flush=True)
    reply = store.add_message(cid, "assistant", "", status="incomplete")
    print("REPLY", reply["id"], flush=True)
    w = ReplyWriter(store, reply["id"], interval=0.05)
    for i in range(100000):  # bounded; the parent kills us long before
        piece = f"第{i}段。"
        w.append(piece)
        print("SENT", piece, "SAVED" if w.saves and w._saved_len == len(w.text) else "", flush=True)
        time.sleep(0.002)
    """
)


def test_sigkill_mid_reply_loses_nothing_committed(tmp_path):
    db = tmp_path / "kill.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True, env=env)
    committed: list[int] = []
    sent = ""
    saved_len = 0
    cid = reply_id = None
    saves = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            if parts[0] == "CONV":
                cid = parts[1]
            elif parts[0] == "COMMITTED":
                committed.append(int(parts[1]))
            elif parts[0] == "REPLY":
                reply_id = int(parts[1])
            elif parts[0] == "SENT":
                sent += parts[1]
                if len(parts) > 2:
                    saves += 1
                    saved_len = len(sent)
                if saves >= 5:
                    # keep streaming a little past the last save, then kill without warning
                    proc.send_signal(signal.SIGKILL)
                    break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    store = Store(db)
    try:
        assert store.db.integrity_check() == "ok"
        msgs = store.get_messages(cid)
        by_id = {m["id"]: m for m in msgs}
        for i, mid in enumerate(committed):
            assert by_id[mid]["content"] == f"已提交的消息{i}" and by_id[mid]["status"] == "complete"
        reply = by_id[reply_id]
        assert reply["status"] == "incomplete"
        assert sent.startswith(reply["content"])
        assert len(reply["content"]) >= saved_len > 0
        assert store.search("已提交的消息")  # the FTS index survived too
    finally:
        store.close()

"""A real ``xiaoq serve`` whose engine dies exits non-zero, so systemd or Docker restart it.

The server runs the console script's ``main`` in a child process through a small launcher that
makes ``Scheduler._step`` raise once a trigger file exists (the test's fault injection; nothing in
XiaoQ itself knows about it). Both the running and the queued stream must end with an SSE error
event, and the process must exit with status 1 and one ``error:`` line, no traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.cli.procs import free_port, wait_healthy

LAUNCHER = """
import os, sys
from xiaoq.engine import scheduler

trigger = os.environ["TEST_STEP_FAULT_TRIGGER"]
step = scheduler.Scheduler._step

def failing_step(self):
    if os.path.exists(trigger):
        raise RuntimeError("injected step failure")
    step(self)

scheduler.Scheduler._step = failing_step
from xiaoq.cli import main
sys.argv[0] = "xiaoq"
main()
"""


def _stream(url: str, out: list) -> None:  # type: ignore[type-arg]
    with httpx.stream("POST", url + "/chat", json={"prompt": "hello", "max_tokens": 4000}, timeout=30) as r:
        out.append(r.status_code)
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
        out.append(events)


def test_engine_death_fails_every_stream_and_exits_non_zero(cli_env: dict[str, str], tiny_gguf: Path, tmp_path: Path, serve_proc: list) -> None:
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    trigger = tmp_path / "fail-now"
    port = free_port()
    args = ["serve", "--model", str(tiny_gguf), "--port", str(port), "--ctx", "8192", "--max-tokens", "8000", "--parallel", "1", "--queue", "2"]
    env = {**cli_env, "TEST_STEP_FAULT_TRIGGER": str(trigger)}
    proc = subprocess.Popen([sys.executable, str(launcher), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    serve_proc.append(proc)
    wait_healthy(proc, port)
    url = f"http://127.0.0.1:{port}"

    results: list[list] = [[], []]  # type: ignore[type-arg]
    threads = [threading.Thread(target=_stream, args=(url, out), daemon=True) for out in results]
    threads[0].start()
    time.sleep(0.3)
    threads[1].start()  # waits in the queue behind the first
    deadline = time.monotonic() + 10
    while "xiaoq_queue_depth 1" not in httpx.get(url + "/metrics").text and time.monotonic() < deadline:
        time.sleep(0.02)
    trigger.touch()

    for t in threads:
        t.join(20)
        assert not t.is_alive(), "a stream hung after the engine died"
    for status, events in results:
        assert status == 200 and events[-1]["error"]["code"] == "engine_error", events[-1:]
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the server kept running after its engine died: {proc.communicate()[1][-2000:]}")
    err = proc.communicate()[1]
    assert code == 1, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "injected step failure" in errors[0], err
    print(f"\nengine died -> both streams got an error event, server exit status {code}: {errors[0]}")

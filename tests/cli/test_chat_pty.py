"""``xiaoq chat`` driven for real through a pseudo-terminal, over the tiny GGUF and real llama.cpp.

The tiny model never emits end-of-turn on its own (tests/tinymodel.py), so every answer runs to
``--max-tokens``: a long limit gives Ctrl-C an answer to interrupt, a short one a quick turn.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.cli.procs import free_port, start_server, stop, wait_healthy, xiaoq_command
from xiaoq.cli.chat import BOT_PREFIX, USER_PROMPT, Repl, Reply
from xiaoq.engine.types import SamplingParams

TIMEOUT = 60


def spawn_chat(args: list[str], env: dict[str, str]) -> pexpect.spawn:
    cmd = xiaoq_command()
    child = pexpect.spawn(cmd[0], [*cmd[1:], "chat", *args], env=env, encoding="utf-8", timeout=TIMEOUT, dimensions=(40, 200))
    return child


@pytest.fixture
def chat_child(cli_env: dict[str, str], tiny_gguf: Path) -> Iterator[pexpect.spawn]:
    # A 7000-token answer (seconds of work even for the tiny model) leaves Ctrl-C plenty of time.
    env = {**cli_env, "XIAOQ_MAX_TOKENS": "8000"}
    child = spawn_chat(["--model", str(tiny_gguf), "--ctx", "8192", "--max-tokens", "7000", "--seed", "1"], env)
    yield child
    if child.isalive():
        child.terminate(force=True)


def interrupt_answer(child: pexpect.spawn) -> None:
    """Wait for the answer to start streaming, then press Ctrl-C; expect it stopped and a new prompt."""
    child.expect_exact(BOT_PREFIX)
    child.expect(r"\S")  # streamed text is on screen while the long answer is still running
    child.sendcontrol("c")
    child.expect_exact("[stopped]")
    child.expect_exact(USER_PROMPT)


def assert_exits_cleanly(child: pexpect.spawn, how: str = "/exit") -> None:
    """Leave with ``/exit``, Ctrl-D (``eof``) or Ctrl-C at the prompt: status 0, no traceback."""
    if how == "eof":
        child.sendeof()
    elif how == "ctrl-c":
        child.sendcontrol("c")
    else:
        child.sendline(how)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Traceback" not in (child.before or "")


def test_chat_streams_resets_and_survives_ctrl_c(chat_child: pexpect.spawn) -> None:
    c = chat_child
    c.expect("loading model")
    c.expect_exact(USER_PROMPT)
    c.sendline("你好，请介绍一下你自己")
    interrupt_answer(c)  # Ctrl-C stopped the answer, not the program
    assert c.isalive()

    c.sendline("/reset")
    c.expect_exact("(history cleared)")
    c.expect_exact(USER_PROMPT)

    c.sendline("hello again")
    interrupt_answer(c)  # and the engine serves the next question after a cancel

    c.sendline("/nonsense")
    c.expect("unknown command /nonsense")
    c.expect_exact(USER_PROMPT)
    assert_exits_cleanly(c, "/exit")


def test_chat_turns_run_to_the_end_history_trimmed_to_fit_ctrl_d_exits(cli_env: dict[str, str], tiny_gguf: Path) -> None:
    # The system prompt is ~310 tokens: with --ctx 1024 and 300-token replies, the third question
    # only fits once the oldest turns are dropped (the engine would refuse the full history).
    c = spawn_chat(["--model", str(tiny_gguf), "--ctx", "1024", "--max-tokens", "300"], cli_env)
    try:
        for question in ("hello", "and then?", "one more"):
            c.expect_exact(USER_PROMPT)
            c.sendline(question)
            c.expect_exact(BOT_PREFIX)
            # The tiny model always runs to the limit; an "[error: ...]" here means the context overflowed.
            assert c.expect_exact(["[reply cut at --max-tokens]", "[error"]) == 0, c.before + c.buffer
        c.expect_exact(USER_PROMPT)
        assert_exits_cleanly(c, "eof")  # Ctrl-D at the prompt
    finally:
        c.terminate(force=True)


def test_ctrl_c_at_the_prompt_exits_cleanly(chat_child: pexpect.spawn) -> None:
    c = chat_child
    c.expect_exact(USER_PROMPT)
    assert_exits_cleanly(c, "ctrl-c")


def test_chat_over_url_with_api_key(cli_env: dict[str, str], tiny_gguf: Path, serve_proc: list[subprocess.Popen[str]]) -> None:
    port = free_port()
    # without the language check: the tiny model's gibberish would be regenerated once, and the
    # first generation's cancel counted beside the one this test makes
    server = start_server(["--model", str(tiny_gguf), "--port", str(port), "--ctx", "8192", "--max-tokens", "8000", "--api-key", "k1", "--no-language-check"], cli_env, serve_proc)
    wait_healthy(server, port)
    url = f"http://127.0.0.1:{port}"

    bad = spawn_chat(["--url", url, "--api-key", "wrong", "--max-tokens", "8"], cli_env)
    bad.expect_exact(USER_PROMPT)
    bad.sendline("hi")
    bad.expect(r"\[error: HTTP 401")  # the server's one-line JSON error, and the chat goes on
    bad.expect_exact(USER_PROMPT)
    assert_exits_cleanly(bad)

    c = spawn_chat(["--url", url, "--max-tokens", "7000"], {**cli_env, "XIAOQ_API_KEY": "k1"})
    try:
        c.expect("xiaoq-tiny-qwen2")  # the banner names the server's model
        c.expect_exact(USER_PROMPT)
        c.sendline("你好")
        interrupt_answer(c)  # closing the stream cancels the server's generation...
        assert_exits_cleanly(c)
    finally:
        c.terminate(force=True)
    # ...which the engine records as 'cancelled' (had the stream stayed open, it would end 'length').
    assert engine_finish_reasons(url, "k1") == {"cancelled": 1}
    assert server.poll() is None  # the server lives on
    code, err = stop(server)
    assert code == 0, err


def engine_finish_reasons(url: str, key: str, wait_s: float = 60) -> dict[str, int]:
    """The engine's finished-generation counters from /metrics, once any generation has finished."""
    deadline = time.monotonic() + wait_s
    while True:
        req = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
        counts = {m[1]: int(float(m[2])) for m in re.finditer(r'^xiaoq_requests_finished_total\{finish_reason="(\w+)"\} (\S+)$', text, re.M)}
        counts = {k: v for k, v in counts.items() if v}
        if counts or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def test_chat_url_unreachable_is_one_line(cli_env: dict[str, str]) -> None:
    cmd = xiaoq_command()
    r = subprocess.run([*cmd, "chat", "--url", f"http://127.0.0.1:{free_port()}"], env=cli_env, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: cannot reach a XiaoQ server at http://127.0.0.1:")
    assert "Traceback" not in r.stderr


# ---- the REPL's history logic, with a recording backend (fast unit test) ---------------------


class RecordingBackend:
    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]], str]] = []

    def start(self) -> None:
        pass

    def answer(self, system: str, history: list[tuple[str, str]], prompt: str, sampling: SamplingParams, write) -> Reply:  # type: ignore[no-untyped-def]
        self.calls.append((system, list(history), prompt))
        write(f"answer {len(self.calls)}")
        return Reply(f"answer {len(self.calls)}", "stop")

    def close(self) -> None:
        pass


def test_repl_keeps_multi_turn_history_and_reset_clears_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    lines = iter(["first", "second", "/reset", "third", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    backend = RecordingBackend()
    Repl(backend, "sys", SamplingParams()).run()
    assert backend.calls == [
        ("sys", [], "first"),
        ("sys", [("first", "answer 1")], "second"),
        ("sys", [], "third"),
    ]
    assert "(history cleared)" in capsys.readouterr().out


@pytest.mark.real_model
def test_chat_with_the_real_model_answers_in_chinese_and_remembers(cli_env: dict[str, str], real_model_path: Path) -> None:
    c = spawn_chat(["--model", str(real_model_path), "--ctx", "2048", "--max-tokens", "80", "--temperature", "0", "--seed", "1"], cli_env)
    try:
        c.expect_exact(USER_PROMPT, timeout=180)
        c.sendline("我叫小明。请用一句中文问候我。")
        c.expect_exact(BOT_PREFIX)
        c.expect_exact(USER_PROMPT, timeout=180)
        first = c.before
        assert re.search(r"[\u4e00-\u9fff]", first), first  # Chinese characters streamed out
        assert "\ufffd" not in first  # never half a UTF-8 character
        c.sendline("我叫什么名字？")
        c.expect_exact(BOT_PREFIX)
        c.expect_exact(USER_PROMPT, timeout=180)
        assert "小明" in c.before, c.before  # the history went along with the second question
        assert_exits_cleanly(c)
    finally:
        c.terminate(force=True)


def test_chat_url_sends_only_the_options_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's own defaults (its system prompt, its max_tokens) apply unless the user set one."""
    from click.testing import CliRunner

    import xiaoq.cli.chat as chat_module

    bodies: list[dict] = []
    monkeypatch.setattr(chat_module.RemoteBackend, "start", lambda self, wait=0: None)
    monkeypatch.setattr(chat_module.RemoteBackend, "post_stream", lambda self, path, body, write: bodies.append(body) or Reply("ok", "stop"))
    for name in ("XIAOQ_SYSTEM_PROMPT", "XIAOQ_TEMPERATURE", "XIAOQ_TOP_P", "XIAOQ_DEFAULT_MAX_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XIAOQ_SEED", "5")
    result = CliRunner().invoke(chat_module.chat, ["--repl", "--url", "http://127.0.0.1:9", "--temperature", "0.3"], input="hi\nagain\n/exit\n")
    assert result.exit_code == 0, result.output
    assert bodies == [
        {"prompt": "hi", "history": [], "temperature": 0.3, "seed": 5},
        {"prompt": "again", "history": [{"user": "hi", "bot": "ok"}], "temperature": 0.3, "seed": 5},
    ]

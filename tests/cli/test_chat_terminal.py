"""The terminal chat for daily use: ``xiaoq chat "question"`` and ``… | xiaoq chat`` answer once;
in the REPL a pasted block is one message, ``\"\"\"`` blocks and a trailing ``\\`` type several
lines; ``/system``, ``/set``, ``/save FILE`` and ``/continue``. Real llama.cpp on the tiny GGUF and
a real SQLite file (the stored conversation shows what was sent), a pseudo-terminal for the REPL;
the command logic also with a recording backend."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pexpect
import pytest

from xiaoq.cli.chat import BOT_PREFIX, USER_PROMPT, Repl, Reply
from xiaoq.engine.types import SamplingParams
from xiaoq.store import Store

from tests.cli.procs import xiaoq_command
from tests.cli.test_chat_pty import TIMEOUT, assert_exits_cleanly, spawn_chat

TINY = ["--threads", "1", "--parallel", "1", "--ctx", "1024", "--seed", "1"]


def run_chat(args: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*xiaoq_command(), "chat", *args], env=env, input=stdin, capture_output=True, text=True, timeout=TIMEOUT)


def stored_messages(db: Path) -> list[dict]:
    store = Store(db)
    try:
        conv = store.list_conversations()[0]
        return store.get_conversation(conv["id"], messages=True)["messages"]
    finally:
        store.close()


def test_a_question_argument_answers_once_and_exits(cli_env: dict[str, str], tiny_gguf: Path) -> None:
    r = run_chat(["--model", str(tiny_gguf), *TINY, "--max-tokens", "5", "你好"], cli_env, stdin="")
    assert r.returncode == 0, r.stderr
    assert USER_PROMPT not in r.stdout and BOT_PREFIX not in r.stdout and r.stdout.strip()
    assert r.stderr.strip().splitlines()[-1] == "[reply cut at --max-tokens]"
    empty = run_chat(["--model", str(tiny_gguf), *TINY], cli_env, stdin="  \n")
    assert empty.returncode == 2 and empty.stderr.strip().splitlines()[-1].startswith("error: nothing to send: the question is empty")
    assert "Traceback" not in empty.stderr


def test_piped_stdin_is_one_message(cli_env: dict[str, str], tiny_gguf: Path, tmp_path: Path) -> None:
    db = tmp_path / "pipe.db"
    text = "第一行\n第二行\n\n/history 不是命令\n"
    r = run_chat(["--model", str(tiny_gguf), *TINY, "--max-tokens", "3", "--conversation", "new", "--db", str(db)], cli_env, stdin=text)
    assert r.returncode == 0, r.stderr
    msgs = stored_messages(db)
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert msgs[0]["content"] == text.strip("\n") and msgs[1]["completion_tokens"] == 3


def test_repl_paste_blocks_commands_and_continue_on_a_stored_conversation(cli_env: dict[str, str], tiny_gguf: Path, tmp_path: Path) -> None:
    db = tmp_path / "repl.db"
    c = spawn_chat(["--model", str(tiny_gguf), *TINY, "--max-tokens", "4", "--conversation", "new", "--db", str(db)], cli_env)
    try:
        c.expect_exact(USER_PROMPT)
        c.send("粘贴的第一行\n粘贴的第二行\n")  # one write, as a terminal delivers a paste
        c.expect_exact("[reply cut at --max-tokens]")
        c.expect_exact(USER_PROMPT)
        c.sendline('"""')
        c.sendline("打出来的一行")
        c.sendline("又一行")
        c.sendline('"""')
        c.expect_exact("[reply cut at --max-tokens]")
        c.sendline("前半句\\")
        c.sendline("后半句")
        c.expect_exact("[reply cut at --max-tokens]")
        c.sendline("/continue")
        c.expect_exact("[reply cut at --max-tokens]")
        c.sendline("/system 只用一句话回答。")
        c.expect_exact("(system prompt set)")
        c.sendline("/set temperature 9")
        c.expect_exact("[error: temperature must be between 0 and 2]")
        c.sendline("/set temperature 0.3")
        c.expect_exact("(temperature = 0.3)")
        saved = tmp_path / "chat.md"
        c.sendline(f"/save {saved}")
        c.expect_exact(f"(saved to {saved})")
        c.expect_exact(USER_PROMPT)
        assert_exits_cleanly(c)
    finally:
        c.terminate(force=True)
    msgs = stored_messages(db)
    users = [m["content"] for m in msgs if m["role"] == "user"]
    assert users == ["粘贴的第一行\n粘贴的第二行", "打出来的一行\n又一行", "前半句\n后半句"]
    last = msgs[-1]
    assert last["role"] == "assistant" and last["completion_tokens"] == 8  # 4, then 4 more by /continue
    store = Store(db)
    try:
        assert store.list_conversations()[0]["system_prompt"] == "只用一句话回答。"
    finally:
        store.close()
    md = saved.read_text(encoding="utf-8")
    # the export trims the space a reply may end with
    assert md.startswith("# XiaoQ chat\n") and "## User\n\n打出来的一行\n又一行\n" in md and last["content"].strip() in md


def test_continue_with_the_local_model_grows_the_last_reply(cli_env: dict[str, str], tiny_gguf: Path) -> None:
    c = spawn_chat(["--model", str(tiny_gguf), *TINY, "--max-tokens", "4"], cli_env)
    try:
        c.expect_exact(USER_PROMPT)
        c.sendline("/continue")
        c.expect_exact("(nothing to continue yet)")
        c.sendline("讲个故事")
        c.expect_exact("[reply cut at --max-tokens] (/continue goes on)")
        c.sendline("/continue")
        c.expect_exact(BOT_PREFIX + "…")
        c.expect_exact("[reply cut at --max-tokens]")
        c.sendline("/history")
        c.expect_exact(USER_PROMPT + "讲个故事")
        c.expect_exact(USER_PROMPT)
        assert_exits_cleanly(c)
    finally:
        c.terminate(force=True)


# ---- the commands' logic, with a recording backend --------------------------------------------


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, SamplingParams]] = []
        self.system: object = "unset"

    def start(self) -> None:
        pass

    def answer(self, system, history, prompt, sampling, write):  # type: ignore[no-untyped-def]
        self.calls.append(("answer", prompt, sampling))
        write("一二")
        return Reply("一二", "length")

    def continue_last(self, system, history, sampling, write):  # type: ignore[no-untyped-def]
        self.calls.append(("continue", history[-1][1], sampling))
        write("三四")
        return Reply("三四", "stop")

    def set_system(self, text):  # type: ignore[no-untyped-def]
        self.system = text

    def close(self) -> None:
        pass


def test_set_system_and_continue_reach_the_backend(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    lines = iter(["/set top_p 0.5", "/set max_tokens 99", "/set max_tokens 5000", "/set nope 1", "问", "/continue", "/system 新提示", "/system default", "/set", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    backend = Recorder()
    repl = Repl(backend, "默认提示", SamplingParams(), max_tokens=2048)
    repl.run()
    out = capsys.readouterr().out
    (kind, prompt, sampling), (kind2, so_far, _) = backend.calls
    assert (kind, prompt, sampling.top_p, sampling.max_tokens) == ("answer", "问", 0.5, 99)
    assert (kind2, so_far) == ("continue", "一二")
    assert repl.history == [("问", "一二三四")]
    assert "[error: max_tokens must be a whole number of at least 1 and at most 2048]" in out and "[error: /set knows" in out
    assert backend.system is None and repl.system == "默认提示"
    assert "top_p 0.5 · max_tokens 99" in out


def test_save_to_an_unwritable_path_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lines = iter([f"/save {tmp_path}/no/such/dir/x.md", "/save", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    Repl(Recorder(), "s", SamplingParams()).run()
    out = capsys.readouterr().out
    assert f"[error: cannot write {tmp_path}/no/such/dir/x.md: No such file or directory]" in out
    assert "[error: /save needs a file name" in out

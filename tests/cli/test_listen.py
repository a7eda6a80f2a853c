"""``xiaoq listen`` and ``xiaoq chat --speak`` for real: the console script, the tiny GGUF on real
llama.cpp, real Whisper tiny.en, and espeak-ng recordings played in real time through
``--input-file`` (this machine has no microphone and no loudspeaker, which the last tests use)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pexpect
import pytest

from xiaoq.cli.chat import BOT_PREFIX, USER_PROMPT
from xiaoq.voice.audio import pcm_of_wav, wav_bytes
from xiaoq.voice.wer import word_error_rate

from tests.cli.procs import assert_one_line_error, run_xiaoq, xiaoq_command
from tests.voice.helpers import espeak_wav

QUESTION = "What time does the library open?"


def recording(tmp_path: Path, *parts: object) -> Path:
    """A WAV of espeak-ng sentences (str) and silences (float seconds), in order."""
    pcm, rate = b"", 22050
    for part in parts:
        if isinstance(part, str):
            spoken, rate = pcm_of_wav(espeak_wav(part))
            pcm += spoken
        else:
            pcm += np.zeros(int(22050 * float(part)), dtype="<i2").tobytes()  # type: ignore[arg-type]
    path = tmp_path / "heard.wav"
    path.write_bytes(wav_bytes(pcm, rate))
    return path


def _questions(stdout: str) -> list[str]:
    return [line[len(USER_PROMPT):] for line in stdout.splitlines() if line.startswith(USER_PROMPT)]


def test_wake_phrase_then_question_is_answered_and_other_speech_ignored(cli_env: dict[str, str], tiny_gguf: Path, tmp_path: Path) -> None:
    # "Shao Q" is how a person says XiaoQ; espeak-ng reads the written name letter by letter.
    wav = recording(tmp_path, 1.0, f"Hey Shao Q, {QUESTION}", 2.0, "Tell me a short story about a cat.", 2.0)
    r = run_xiaoq(["listen", "--wake", "--input-file", str(wav), "--model", str(tiny_gguf), "--max-tokens", "6", "--no-speak"], cli_env, timeout=180)
    assert r.returncode == 0, r.stderr
    questions = _questions(r.stdout)
    print(r.stdout)
    assert len(questions) == 1, r.stdout  # the sentence without the wake phrase was not a question
    assert word_error_rate([(QUESTION, questions[0])]) <= 0.3
    assert BOT_PREFIX in r.stdout


def test_push_to_talk_records_between_two_enters(cli_env: dict[str, str], tiny_gguf: Path, tmp_path: Path) -> None:
    wav = recording(tmp_path, 0.5, QUESTION, 8.0)
    cmd = xiaoq_command()
    child = pexpect.spawn(cmd[0], [*cmd[1:], "listen", "--input-file", str(wav), "--model", str(tiny_gguf), "--max-tokens", "6", "--no-speak"],
                          env=cli_env, encoding="utf-8", timeout=120, dimensions=(40, 200))
    try:
        child.expect_exact("[Enter] talk")
        child.sendline("")
        child.expect_exact("[Enter] sends")
        time.sleep(3.5)  # the recording plays at the speed of speech
        child.sendline("")
        child.expect_exact(USER_PROMPT)
        heard = child.readline().strip()
        assert word_error_rate([(QUESTION, heard)]) <= 0.3, heard
        child.expect_exact(BOT_PREFIX)
        child.expect_exact("[Enter] talk")
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_listen_without_a_microphone_is_one_line(cli_env: dict[str, str], tiny_gguf: Path) -> None:
    r = run_xiaoq(["listen", "--model", str(tiny_gguf), "--no-speak"], cli_env)
    line = assert_one_line_error(r, 1)
    assert "microphone" in line or "PortAudio" in line, line


def test_chat_speak_without_an_audio_device_says_so_and_chats_on(cli_env: dict[str, str], tiny_gguf: Path) -> None:
    r = subprocess.run([*xiaoq_command(), "chat", "--repl", "--speak", "--model", str(tiny_gguf), "--max-tokens", "4"],
                       env=cli_env, input="hello\n/exit\n", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    speech_lines = [line for line in r.stderr.splitlines() if line.startswith("speech:")]
    assert len(speech_lines) == 1 and ("no audio output device" in speech_lines[0] or "PortAudio" in speech_lines[0]), r.stderr
    assert "answers are shown, not spoken" in speech_lines[0]
    assert BOT_PREFIX in r.stdout and "Traceback" not in r.stderr

"""``xiaoq pull --asr``: a whole model directory from a fake hub, then found by ``--asr-model``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.fake_hub import COMMIT, FakeHub
from tests.cli.procs import assert_one_line_error, run_xiaoq
from tests.cli.test_pull_command import hub_env

REPO = "Systran/faster-whisper-small"
FILES = {"model.bin": b"\x00" * 5000, "config.json": b"{}", "tokenizer.json": b"{}", "vocabulary.txt": b"a\nb\n", "README.md": b"# card"}


def test_pull_asr_alias_fetches_the_directory_and_serve_settings_find_it(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeHub({f"{REPO}/{name}": data for name, data in FILES.items()}) as hub:
        r = run_xiaoq(["pull", "--asr", "small"], hub_env(cli_env, hub.url))
    assert r.returncode == 0, r.stderr
    snapshot = Path(cli_env["HF_HOME"]) / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
    assert r.stdout.strip() == f"ASR model ready: {snapshot} (use it with `xiaoq serve --asr-model small`)"
    assert {p.name for p in snapshot.iterdir()} == set(FILES) - {"README.md"}
    assert (snapshot / "model.bin").read_bytes() == FILES["model.bin"]
    from xiaoq.voice.models import resolve_asr_model

    monkeypatch.setenv("HF_HOME", cli_env["HF_HOME"])
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert resolve_asr_model("small") == snapshot


def test_pull_asr_errors_are_one_line(cli_env: dict[str, str]) -> None:
    with FakeHub({}) as hub:
        env = hub_env(cli_env, hub.url)
        assert_one_line_error(run_xiaoq(["pull", "--asr", "someone/nothing-here"], env), 1, "someone/nothing-here", "not found")
        assert_one_line_error(run_xiaoq(["pull", "--asr", "tiny-ish"], env), 1, "Unknown ASR model 'tiny-ish'")
    assert_one_line_error(run_xiaoq(["pull", "--asr", "small", "--file", "x.gguf"], cli_env), 2, "--asr", "--file")

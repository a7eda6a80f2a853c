"""Finding an ASR model directory without the network, and the sentence when there is none."""

from __future__ import annotations

from pathlib import Path

import pytest

from xiaoq.errors import VoiceUnavailable
from xiaoq.voice.models import bundled_model_dir, is_english_only, resolve_asr_model


@pytest.fixture(autouse=True)
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    return tmp_path


def _fake_model(d: Path, vocab: int) -> Path:
    d.mkdir(parents=True)
    (d / "model.bin").write_bytes(b"x")
    (d / "vocabulary.txt").write_text("".join(f"t{i}\n" for i in range(vocab)))
    return d


def test_tiny_en_comes_from_the_installed_wheel_and_is_english_only() -> None:
    path = resolve_asr_model("tiny.en")
    assert path == bundled_model_dir() and (path / "model.bin").is_file()
    assert is_english_only(path)


def test_missing_model_names_the_pull_command() -> None:
    with pytest.raises(VoiceUnavailable, match=r"`xiaoq pull --asr small`"):
        resolve_asr_model("small")
    with pytest.raises(VoiceUnavailable, match=r"`xiaoq pull --asr someone/whisper-zh`"):
        resolve_asr_model("someone/whisper-zh")
    with pytest.raises(VoiceUnavailable, match="Unknown ASR model 'tiny-ish'"):
        resolve_asr_model("tiny-ish")


def test_pulled_snapshots_are_found_in_the_hub_and_modelscope_caches(empty_caches: Path) -> None:
    storage = empty_caches / "hf" / "models--Systran--faster-whisper-small"
    snap = _fake_model(storage / "snapshots" / "abc123", 51865)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text("abc123")
    assert resolve_asr_model("small") == snap and not is_english_only(snap)
    ms = _fake_model(empty_caches / "ms" / "hub" / "models" / "someone" / "whisper-zh", 51866)
    assert resolve_asr_model("someone/whisper-zh") == ms


def test_a_directory_is_taken_as_is_but_must_hold_a_model(tmp_path: Path) -> None:
    d = _fake_model(tmp_path / "mine", 51865)
    assert resolve_asr_model(str(d)) == d
    (tmp_path / "empty").mkdir()
    with pytest.raises(VoiceUnavailable, match="no model.bin"):
        resolve_asr_model(str(tmp_path / "empty"))

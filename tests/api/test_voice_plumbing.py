"""Voice routes' plumbing with stand-in engines where no shipped model can do the job (Chinese
recognition), plus the configurations an operator can get wrong: no model, engines off."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from xiaoq.api.app import create_app
from xiaoq.engine.fake import FakeEngine
from xiaoq.voice.fake import FakeASR, FakeTTS
from xiaoq.voice.service import VoiceService
from xiaoq.voice.wer import word_error_rate

from tests.api.helpers import make_settings, wait_ready
from tests.voice.helpers import espeak_wav, wav_seconds_and_rms


def _client(voice: VoiceService, **overrides: object) -> TestClient:
    settings = make_settings(**overrides)
    return TestClient(create_app(settings, FakeEngine(settings), web_dir=None, voice=voice))


def test_chinese_transcription_through_fake_asr_engine_no_chinese_model_configured() -> None:
    """The Chinese path through the real decoder, service and route; only the recognizer is fake."""
    asr = FakeASR(["请把客厅的灯打开"], languages=None)
    with _client(VoiceService(make_settings(), asr=asr)) as client:
        wait_ready(client)
        r = client.post("/v1/audio/transcriptions", files={"file": ("zh.wav", espeak_wav("请把客厅的灯打开", "cmn"))}, data={"language": "zh-CN"})
    assert r.status_code == 200, r.text
    assert r.json()["text"] == "请把客厅的灯打开" and r.json()["language"] == "zh"
    samples, language, thread = asr.calls[0]
    assert language == "zh" and samples > 16000  # decoded real audio, normalized language
    assert thread != threading.get_native_id()  # on the ASR thread, not the event loop's


def test_chinese_transcription_with_configured_model() -> None:
    """Runs when ``XIAOQ_TEST_ASR_ZH`` names a multilingual model (directory or alias pulled with
    ``xiaoq pull --asr``); the fake-engine test above covers the plumbing otherwise."""
    model = os.environ.get("XIAOQ_TEST_ASR_ZH")
    if not model:
        pytest.skip("set XIAOQ_TEST_ASR_ZH to a multilingual faster-whisper model to run the real Chinese path")
    sentence = "请把客厅的灯打开"
    with _client(VoiceService(make_settings(asr_model=model))) as client:
        wait_ready(client)
        r = client.post("/v1/audio/transcriptions", files={"file": ("zh.wav", espeak_wav(sentence, "cmn"))}, data={"language": "zh"})
    assert r.status_code == 200, r.text
    cer = word_error_rate([(sentence, r.json()["text"])])
    print(f"Chinese character error rate: {cer:.2f} ({r.json()['text']!r})")
    assert cer <= 0.5


def test_speech_in_chinese_through_fake_tts_picks_the_language_voice() -> None:
    with _client(VoiceService(make_settings(), tts=FakeTTS())) as client:
        wait_ready(client)
        auto = client.post("/v1/audio/speech", json={"input": "你好，世界。", "voice": "alloy"})
        named = client.post("/v1/audio/speech", json={"input": "hello", "voice": "fake-zh"})
    assert auto.status_code == 200 and auto.headers["x-voice"] == "fake-zh"
    assert named.headers["x-voice"] == "fake-zh"
    assert 0.2 < wav_seconds_and_rms(auto.content)[0] < 0.4


def test_missing_asr_model_is_a_503_naming_the_pull_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path))
    settings = make_settings(asr_model="small")
    with _client(VoiceService(settings), asr_model="small") as client:
        wait_ready(client)
        r = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", espeak_wav("hello"))})
        config = client.get("/api/config").json()["voice"]
    assert r.status_code == 503 and r.json()["error"]["code"] == "voice_unavailable"
    assert "`xiaoq pull --asr small`" in r.json()["error"]["message"]
    assert config["asr"] is None and config["tts"] is not None


def test_engines_turned_off_answer_503() -> None:
    settings = make_settings(asr="off", tts="off")
    with _client(VoiceService(settings), asr="off", tts="off") as client:
        wait_ready(client)
        asr = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"x")})
        tts = client.post("/v1/audio/speech", json={"input": "hi"})
        config = client.get("/api/config").json()["voice"]
    assert asr.status_code == tts.status_code == 503
    assert "--asr off" in asr.json()["error"]["message"] and "--tts off" in tts.json()["error"]["message"]
    assert config == {"asr": None, "tts": None}


def test_piper_without_its_package_or_voice_says_what_is_missing(tmp_path: Path) -> None:
    settings = make_settings(tts="piper", tts_voice=str(tmp_path))
    with _client(VoiceService(settings), tts="piper", tts_voice=str(tmp_path)) as client:
        wait_ready(client)
        r = client.post("/v1/audio/speech", json={"input": "hi"})
    assert r.status_code == 503
    assert "piper-tts" in r.json()["error"]["message"] or "no Piper voice" in r.json()["error"]["message"]


def test_audio_uploads_obey_max_upload_mb_not_the_json_limit() -> None:
    """A recording larger than the JSON body limit is fine up to --max-upload-mb; past it, 413."""
    import numpy as np

    from xiaoq.voice.audio import wav_bytes

    def wav_of(seconds: float) -> bytes:
        return wav_bytes((np.sin(np.arange(int(16000 * seconds)) / 8) * 3000).astype("<i2").tobytes(), 16000)

    overrides = dict(max_body_bytes=100_000, max_upload_mb=1)
    with _client(VoiceService(make_settings(**overrides), asr=FakeASR(["fine"], languages=None)), **overrides) as client:
        wait_ready(client)
        ok = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav_of(10))})  # 320 kB
        big = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav_of(40))})  # 1.28 MB
    assert ok.status_code == 200 and ok.json()["text"] == "fine"
    assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"

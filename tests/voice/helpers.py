"""Real audio for the voice tests: espeak-ng speaks, PyAV re-encodes as browsers record."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest

from xiaoq.voice.audio import pcm_of_wav

#: Ten fixed English requests of the kind a home or front-desk assistant hears.
ENGLISH_SENTENCES = (
    "Please turn on the kitchen light.",
    "What is the weather like today?",
    "Set a timer for the pasta.",
    "How do I make a cup of tea?",
    "Tell me a short story about a cat.",
    "What time does the library open?",
    "Remind me to call my mother tomorrow.",
    "Can you explain how a computer works?",
    "Play some quiet music in the living room.",
    "What is the capital city of France?",
)


def require_espeak() -> str:
    """espeak-ng's path; a failure (not a skip) when missing: ./setup.sh installs it for the tests."""
    path = shutil.which("espeak-ng")
    if path is None:
        pytest.fail("espeak-ng is missing: ./setup.sh installs it (apt-get install espeak-ng)", pytrace=False)
    return path


def espeak_wav(text: str, voice: str = "en-us") -> bytes:
    """A WAV file of espeak-ng speaking ``text`` (22050 Hz mono)."""
    out = subprocess.run([require_espeak(), "-v", voice, "--stdin", "--stdout"], input=text.encode(), capture_output=True, check=True, timeout=30)
    pcm, rate = pcm_of_wav(out.stdout)
    from xiaoq.voice.audio import wav_bytes

    return wav_bytes(pcm, rate)  # a header with the real sizes, as a file on disk would have


def reencode(wav: bytes, container: str, codec: str = "libopus", rate: int = 48000) -> bytes:
    """``wav`` re-encoded the way browsers' MediaRecorder does (WebM/Opus, Ogg/Opus at 48 kHz)."""
    import av

    pcm, src_rate = pcm_of_wav(wav)
    samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = src_rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate)
        for f in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def wav_seconds_and_rms(wav: bytes) -> tuple[float, float]:
    """Duration (from the bytes present, not the header) and RMS level of a PCM WAV."""
    pcm, rate = pcm_of_wav(wav)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return len(samples) / rate, float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0

"""Stand-in engines for fast tests of the plumbing (routes, language checks, queueing, the UI).

They never replace the real engines in the capability tests; they let a test drive paths no
shipped model can, such as Chinese recognition when no Chinese model is configured.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Iterator, Optional, Sequence

import numpy as np

from xiaoq.voice.types import ASR_SAMPLE_RATE, Transcript, Voice


class FakeASR:
    """Returns the texts a test queued, in order (``""`` when none is left), and records calls."""

    name = "fake"

    def __init__(self, texts: Sequence[str] = (), languages: Optional[Sequence[str]] = None, model: str = "fake"):
        self.texts = deque(texts)
        self._languages = tuple(languages) if languages is not None else None
        self.model = model
        self.calls: list[tuple[int, Optional[str], int]] = []  # (samples, language, native thread id)

    def languages(self) -> Optional[Sequence[str]]:
        return self._languages

    def load(self) -> None:
        pass

    def transcribe(self, samples: np.ndarray, language: Optional[str], hotwords: Optional[str] = None) -> Transcript:
        self.calls.append((len(samples), language, threading.get_native_id()))
        text = self.texts.popleft() if self.texts else ""
        return Transcript(text, language or "en", round(len(samples) / ASR_SAMPLE_RATE, 3), {"asr_ms": 0.0})


class FakeTTS:
    """A sine tone per character, so durations grow with the text like real speech."""

    name = "fake"

    def __init__(self, sample_rate: int = 16000, seconds_per_char: float = 0.05):
        self.rate = sample_rate
        self.per_char = seconds_per_char

    def voices(self) -> Sequence[Voice]:
        return (Voice("fake-zh", "zh", self.rate), Voice("fake-en", "en", self.rate))

    def synthesize(self, text: str, voice: Voice, speed: float = 1.0) -> Iterator[bytes]:
        n = int(len(text) * self.per_char * self.rate / speed)
        t = np.arange(n) / self.rate
        yield (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()

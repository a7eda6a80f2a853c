"""The two engine interfaces of the voice room and the values they exchange.

Engines are synchronous and single-threaded on purpose: the service runs each on its own
low-priority worker thread, so an engine never needs to know about asyncio or scheduling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Optional, Protocol, Sequence

if TYPE_CHECKING:  # numpy loads with the speech models, not at `xiaoq serve`'s start (issue 12)
    import numpy as np

#: Sample rate every ASR engine receives (Whisper, SenseVoice and Silero VAD all expect 16 kHz).
ASR_SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Transcript:
    """What an ASR engine heard: the text, the language it was in and the audio's length."""

    text: str
    language: str
    duration: float
    timings: dict[str, float] = field(default_factory=dict)


class ASREngine(Protocol):
    """Speech to text over 16 kHz mono float32 samples."""

    name: str
    model: str

    def languages(self) -> Optional[Sequence[str]]:
        """Languages the model understands; None for a multilingual model (it detects the language)."""
        ...

    def load(self) -> None:
        """Load the model (called on the worker thread, so its threads inherit the low priority)."""
        ...

    def transcribe(self, samples: np.ndarray, language: Optional[str], hotwords: Optional[str] = None) -> Transcript:
        """The text of ``samples``; ``language`` None lets the engine detect it; ``hotwords`` are
        words to expect (a wake phrase), which the engine may favour."""
        ...


@dataclass(frozen=True)
class Voice:
    """A voice an engine can speak with, the language it speaks and the rate of its samples."""

    name: str
    language: str
    sample_rate: int


class TTSEngine(Protocol):
    """Text to speech: 16-bit mono PCM at the voice's sample rate."""

    name: str

    def voices(self) -> Sequence[Voice]:
        """The voices this engine offers (the first of each language is that language's default)."""
        ...

    def synthesize(self, text: str, voice: Voice, speed: float = 1.0) -> Iterator[bytes]:
        """PCM (s16le, mono) for ``text``, in one or more pieces."""
        ...

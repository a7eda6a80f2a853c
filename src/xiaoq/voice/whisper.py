"""Speech to text with faster-whisper (CTranslate2) over a local model directory.

One CPU thread (``cpu_threads=1``) and int8 weights: the 2-core machines XiaoQ targets run the
chat model on both cores, and Whisper tiny/base/small are fast enough on one. Silero VAD
(``vad_filter``, the ONNX model faster-whisper ships, on one onnxruntime thread) trims silence
first, which both shortens the work and keeps Whisper from inventing words in the quiet.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from xiaoq.errors import VoiceUnavailable
from xiaoq.voice.models import is_english_only
from xiaoq.voice.types import ASR_SAMPLE_RATE, Transcript

if TYPE_CHECKING:  # numpy loads with the model, not when `xiaoq serve` describes its voice (issue 12)
    import numpy as np

#: Greedy decoding: on espeak-ng and microphone speech it matched beam search here at half the time.
BEAM_SIZE = 1


class WhisperASR:
    """faster-whisper's ``WhisperModel`` behind :class:`~xiaoq.voice.types.ASREngine`."""

    name = "whisper"

    def __init__(self, model_dir: Path, model: str, threads: int = 1):
        self.model_dir = model_dir
        self.model = model
        self.threads = threads
        self.english_only = is_english_only(model_dir)
        self._whisper: Any = None

    def languages(self) -> Optional[Sequence[str]]:
        return ("en",) if self.english_only else None

    def load(self) -> None:
        if self._whisper is not None:
            return
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise VoiceUnavailable("Speech recognition is not installed on this server: pip install 'xiaoq[voice]'.") from None
        try:
            self._whisper = WhisperModel(
                str(self.model_dir), device="cpu", compute_type="int8", cpu_threads=self.threads, num_workers=1, local_files_only=True
            )
        except (RuntimeError, ValueError, OSError) as e:
            raise VoiceUnavailable(f"The ASR model in {self.model_dir} failed to load: {e}") from None

    def transcribe(self, samples: np.ndarray, language: Optional[str], hotwords: Optional[str] = None) -> Transcript:
        self.load()
        start = time.perf_counter()
        segments, info = self._whisper.transcribe(
            samples,
            language="en" if self.english_only else language,
            beam_size=BEAM_SIZE,
            vad_filter=True,
            without_timestamps=True,
            condition_on_previous_text=False,
            hotwords=hotwords,
        )
        text = "".join(s.text for s in segments).strip()  # the generator does the decoding
        return Transcript(
            text=text,
            language=info.language,
            duration=round(len(samples) / ASR_SAMPLE_RATE, 3),
            timings={"asr_ms": round((time.perf_counter() - start) * 1000, 1)},
        )

"""Voice activity for live listening: the Silero VAD model faster-whisper ships (ONNX, one thread),
fed 32 ms at a time with its recurrent state kept between calls, and cut into utterances.

faster-whisper's own ``get_speech_timestamps`` needs the whole recording and resets the model state
on each call, which suits files, not a microphone; the ``silero-vad`` package would bring torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from xiaoq.errors import VoiceUnavailable
from xiaoq.voice.types import ASR_SAMPLE_RATE

CHUNK = 512  # samples per model step at 16 kHz (32 ms)
_CONTEXT = 64


class SileroVAD:
    """Speech probability of each 512-sample chunk, in order."""

    def __init__(self) -> None:
        try:
            import onnxruntime
            from faster_whisper.utils import get_assets_path
        except ImportError:
            raise VoiceUnavailable("Voice activity detection needs faster-whisper: pip install 'xiaoq[voice]'.") from None
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 4
        path = os.path.join(get_assets_path(), "silero_vad_v6.onnx")
        self.session = onnxruntime.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        self.reset()

    def reset(self) -> None:
        self.h = np.zeros((1, 1, 128), dtype=np.float32)
        self.c = np.zeros((1, 1, 128), dtype=np.float32)
        self.context = np.zeros(_CONTEXT, dtype=np.float32)

    def __call__(self, chunk: np.ndarray) -> float:
        x = np.concatenate([self.context, chunk.astype(np.float32)])[None, :]
        prob, self.h, self.c = self.session.run(None, {"input": x, "h": self.h, "c": self.c})
        self.context = chunk[-_CONTEXT:].astype(np.float32)
        return float(np.ravel(prob)[0])


@dataclass
class Segmenter:
    """Cuts a live stream into utterances: speech starts above ``threshold`` and ends after
    ``silence_s`` below it; a little audio before the start is kept so the first word is whole."""

    vad: SileroVAD
    threshold: float = 0.5
    silence_s: float = 0.7
    pre_roll_s: float = 0.3
    max_s: float = 30.0
    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    _pre: list[np.ndarray] = field(default_factory=list)
    _speech: list[np.ndarray] = field(default_factory=list)
    _quiet: int = 0

    @property
    def in_speech(self) -> bool:
        return bool(self._speech)

    def feed(self, samples: np.ndarray) -> list[np.ndarray]:
        """Utterances completed by ``samples`` (float32, 16 kHz mono)."""
        self._pending = np.concatenate([self._pending, samples.astype(np.float32)])
        done: list[np.ndarray] = []
        while len(self._pending) >= CHUNK:
            chunk, self._pending = self._pending[:CHUNK], self._pending[CHUNK:]
            utterance = self._step(chunk, self.vad(chunk))
            if utterance is not None:
                done.append(utterance)
        return done

    def _step(self, chunk: np.ndarray, prob: float) -> Optional[np.ndarray]:
        per_s = ASR_SAMPLE_RATE / CHUNK
        if not self._speech:
            self._pre = (self._pre + [chunk])[-max(1, int(self.pre_roll_s * per_s)):]
            if prob >= self.threshold:
                self._speech, self._pre, self._quiet = self._pre, [], 0
            return None
        self._speech.append(chunk)
        self._quiet = 0 if prob >= self.threshold - 0.15 else self._quiet + 1
        if self._quiet >= self.silence_s * per_s or len(self._speech) >= self.max_s * per_s:
            utterance = np.concatenate(self._speech)
            self._speech, self._quiet = [], 0
            self.vad.reset()
            return utterance
        return None

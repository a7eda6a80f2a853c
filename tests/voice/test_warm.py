"""The ASR model loads in the background only after the chat engine has been idle for a while
(at start it would compete with the chat model's load and the first answer for the CPU)."""

from __future__ import annotations

import threading
import time

from xiaoq.config import Settings
from xiaoq.voice.fake import FakeASR
from xiaoq.voice.service import VoiceService


class CountingASR(FakeASR):
    def __init__(self) -> None:
        super().__init__()
        self.loaded = threading.Event()

    def load(self) -> None:
        self.loaded.set()


def _service(tmp_path) -> tuple[VoiceService, CountingASR]:
    asr = CountingASR()
    return VoiceService(Settings(data_dir=tmp_path, tts="off"), asr=asr), asr


def test_the_asr_model_loads_once_the_engine_has_been_idle_for_the_quiet_time(tmp_path):
    voice, asr = _service(tmp_path)
    busy = threading.Event()
    busy.set()
    try:
        voice.warm_when_idle(lambda: not busy.is_set(), quiet=0.2, poll=0.02)
        assert not asr.loaded.wait(0.5)  # busy all along: not loaded
        busy.clear()
        started = time.monotonic()
        assert asr.loaded.wait(5)
        waited = time.monotonic() - started
        print(f"loaded {waited:.2f} s after the engine went idle (quiet time 0.2 s)")
        assert waited >= 0.2
    finally:
        voice.close()


def test_a_closed_service_never_loads_the_asr_model(tmp_path):
    voice, asr = _service(tmp_path)
    voice.warm_when_idle(lambda: True, quiet=0.3, poll=0.02)
    voice.close()
    assert not asr.loaded.wait(0.6)

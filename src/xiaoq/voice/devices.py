"""The machine's microphone and loudspeaker through PortAudio (``sounddevice``), or one sentence
saying why not: the package or the PortAudio library missing, or no device of that kind.

:class:`FileSource` plays a WAV file into the same interface at the speed of a real microphone;
it is how ``xiaoq listen --input-file`` is tested and measured on machines without a microphone.
"""

from __future__ import annotations

import queue
import threading
import time
import wave
from pathlib import Path
from typing import Any, Optional, Protocol

import numpy as np

from xiaoq.errors import VoiceUnavailable
from xiaoq.voice.types import ASR_SAMPLE_RATE

BLOCK = 1600  # 100 ms at 16 kHz


def _sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError:
        raise VoiceUnavailable("audio devices need the voice extra: pip install 'xiaoq[voice]'") from None
    except OSError:  # the package is there, the C library is not
        raise VoiceUnavailable("the PortAudio library is missing: install it (Debian/Ubuntu: apt-get install libportaudio2)") from None
    return sounddevice


def _default_device(kind: str) -> Any:
    sd = _sounddevice()
    try:
        return sd.query_devices(kind=kind)
    except (sd.PortAudioError, ValueError):
        what = "microphone (audio input device)" if kind == "input" else "audio output device"
        raise VoiceUnavailable(f"no {what} found on this machine") from None


class Source(Protocol):
    """Mono float32 audio at 16 kHz, in blocks, as it is captured."""

    def start(self) -> None: ...

    def read(self, timeout: float = 1.0) -> Optional[np.ndarray]:
        """The next block; None when nothing came within ``timeout`` or the source has ended."""
        ...

    @property
    def ended(self) -> bool: ...

    def skip(self) -> None:
        """Forget what was captured until now (it was XiaoQ speaking)."""
        ...

    def stop(self) -> None: ...


class MicSource:
    """The default microphone, resampled by PortAudio to 16 kHz mono."""

    def __init__(self) -> None:
        _default_device("input")
        self._queue: "queue.Queue[np.ndarray]" = queue.Queue(maxsize=600)  # a minute of backlog at most
        self._stream: Any = None

    def start(self) -> None:
        sd = _sounddevice()

        def callback(indata: np.ndarray, frames: int, when: Any, status: Any) -> None:
            try:
                self._queue.put_nowait(indata[:, 0].copy())
            except queue.Full:  # nobody is reading: drop rather than grow
                pass

        self._stream = sd.InputStream(samplerate=ASR_SAMPLE_RATE, channels=1, dtype="float32", blocksize=BLOCK, callback=callback)
        self._stream.start()

    def read(self, timeout: float = 1.0) -> Optional[np.ndarray]:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    @property
    def ended(self) -> bool:
        return False

    def skip(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None
        while not self._queue.empty():
            self._queue.get_nowait()


class FileSource:
    """A 16-bit WAV played in real time as if spoken into a microphone (then silence ends it)."""

    def __init__(self, path: Path):
        from xiaoq.voice.audio import decode_audio

        self.samples = decode_audio(Path(path).read_bytes())
        self._pos = 0
        self._started = 0.0
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            self._started = time.monotonic() - self._pos / ASR_SAMPLE_RATE

    def read(self, timeout: float = 1.0) -> Optional[np.ndarray]:
        if self.ended:
            return None
        due = self._started + (self._pos + BLOCK) / ASR_SAMPLE_RATE
        time.sleep(max(0.0, min(timeout, due - time.monotonic())))
        block = self.samples[self._pos:self._pos + BLOCK]
        self._pos += len(block)
        return block

    @property
    def ended(self) -> bool:
        return self._pos >= len(self.samples)

    def skip(self) -> None:
        """Jump to where a microphone started at the same moment would be now."""
        with self._lock:
            now = int((time.monotonic() - self._started) * ASR_SAMPLE_RATE)
            self._pos = max(self._pos, min(len(self.samples), now))

    def stop(self) -> None:
        pass


class DevicePlayer:
    """Plays s16le mono PCM on the default output device; ``stop()`` from another thread cuts it."""

    def __init__(self) -> None:
        _default_device("output")
        self._stop = threading.Event()

    def play(self, pcm: bytes, rate: int) -> None:
        sd = _sounddevice()
        self._stop.clear()
        with sd.RawOutputStream(samplerate=rate, channels=1, dtype="int16") as out:
            step = rate // 10 * 2  # 100 ms of bytes: Stop is heard within a tenth of a second
            for i in range(0, len(pcm), step):
                if self._stop.is_set():
                    break
                out.write(pcm[i:i + step])

    def stop(self) -> None:
        self._stop.set()

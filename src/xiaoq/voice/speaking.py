"""Speaking a streamed answer in the terminal: pieces are cut as the text arrives (first clause,
then sentences) and synthesized and played in order on one niced thread, while the answer is still
being written, so speech starts a breath after the first tokens."""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Optional

from xiaoq.voice.text import ClauseSplitter, detect_language
from xiaoq.voice.types import TTSEngine, Voice
from xiaoq.voice.worker import _lower_priority, DEFAULT_NICENESS

Play = Callable[[bytes, int], None]


def voice_for(engine: TTSEngine, text: str, preferred: Optional[str] = None) -> Voice:
    """``preferred`` voice name if the engine has it, else the first voice of the text's language."""
    voices = list(engine.voices())
    lang = detect_language(text)
    return next((v for v in voices if v.name == preferred), None) or next((v for v in voices if v.language == lang), voices[0])


class SpokenReply:
    """``feed()`` text as it streams, ``finish()`` waits until all of it was spoken, ``stop()`` cuts it."""

    def __init__(self, engine: TTSEngine, play: Play, stop_playing: Callable[[], None] = lambda: None, voice: Optional[str] = None):
        self.engine, self.play, self._cut = engine, play, stop_playing
        self.voice = voice
        self.splitter = ClauseSplitter()
        self.pieces: "queue.Queue[Optional[str]]" = queue.Queue()
        self.stopped = threading.Event()
        #: (seconds since the reply began, piece) when each piece started playing: for the benchmark.
        self.started_at: list[tuple[float, str]] = []
        self.t0 = time.perf_counter()
        self.thread = threading.Thread(target=self._run, name="xiaoq-speak", daemon=True)
        self.thread.start()

    def feed(self, text: str) -> None:
        for piece in self.splitter.feed(text):
            self.pieces.put(piece)

    def finish(self, timeout: float = 600.0) -> None:
        """Speak what is left and wait for the end (Ctrl-C in the caller: call ``stop()``)."""
        for piece in self.splitter.flush():
            self.pieces.put(piece)
        self.pieces.put(None)
        self.thread.join(timeout)

    def stop(self) -> None:
        self.stopped.set()
        self.pieces.put(None)
        self._cut()

    def _run(self) -> None:
        _lower_priority(DEFAULT_NICENESS)
        while not self.stopped.is_set():
            piece = self.pieces.get()
            if piece is None or self.stopped.is_set():
                return
            voice = voice_for(self.engine, piece, self.voice)
            pcm = b"".join(self.engine.synthesize(piece, voice))
            if self.stopped.is_set():
                return
            self.started_at.append((time.perf_counter() - self.t0, piece))
            self.play(pcm, voice.sample_rate)

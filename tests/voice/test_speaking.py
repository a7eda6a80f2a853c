"""A streamed answer spoken piece by piece with real espeak-ng: speech starts at the first clause,
before the answer is complete; Chinese pieces get the Mandarin voice; stop() cuts the rest."""

from __future__ import annotations

import threading
import time

from xiaoq.voice.espeak import EspeakTTS
from xiaoq.voice.speaking import SpokenReply


class Recorder:
    def __init__(self, seconds_each: float = 0.0) -> None:
        self.played: list[tuple[float, int, int]] = []  # (time, bytes, rate)
        self.seconds_each = seconds_each
        self.cut = threading.Event()

    def play(self, pcm: bytes, rate: int) -> None:
        self.played.append((time.perf_counter(), len(pcm), rate))
        self.cut.wait(self.seconds_each)


def test_speech_starts_at_the_first_clause_while_the_answer_streams() -> None:
    player = Recorder()
    spoken = SpokenReply(EspeakTTS(), player.play)
    spoken.feed("Well, ")
    spoken.feed("a bubble sort compares neighbours")
    deadline = time.monotonic() + 10
    while not player.played and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(player.played) == 1  # "Well," is already audible; the rest is still streaming
    spoken.feed(" and swaps them. 它很简单。")
    spoken.finish()
    assert [p[2] for p in player.played] == [22050, 22050, 22050]
    assert [piece for _, piece in spoken.started_at] == ["Well,", "a bubble sort compares neighbours and swaps them.", "它很简单。"]
    assert all(n > 22050 * 2 * 0.2 for _, n, _ in player.played)  # each is real speech, not a click


def test_stop_cuts_the_rest() -> None:
    player = Recorder(seconds_each=5.0)
    spoken = SpokenReply(EspeakTTS(), player.play, player.cut.set)
    spoken.feed("First sentence here. Second sentence here. Third one.")
    deadline = time.monotonic() + 10
    while not player.played and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.perf_counter()
    spoken.stop()
    spoken.thread.join(5)
    assert not spoken.thread.is_alive() and time.perf_counter() - t0 < 1.0
    assert len(player.played) == 1

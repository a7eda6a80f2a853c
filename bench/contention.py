"""How much CPU other work took while a scenario ran: the noise indicator of a shared machine.

llama.cpp's threads spin while waiting for each other, so a little foreign load can halve a
figure (or worse, with as many threads as cores). ``ForeignLoad`` measures, over a time window,
the CPU the whole machine used minus what the benchmark's own processes (this client and the
servers, with their threads) used, expressed in cores. Near 0: the figure is clean; near or above
one core on a 2-core machine: treat it as noise, whatever the ratio says.
"""

from __future__ import annotations

import os
import time
from typing import Iterable, Optional

import psutil


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def _own_seconds(pids: Iterable[int]) -> float:
    """CPU seconds of this process alone plus ``pids`` with their children."""
    total = 0.0
    for pid in [None, *pids]:
        try:
            p = psutil.Process(pid)  # None: this process, without its children
            procs = [p] if pid is None else [p] + p.children(recursive=True)
        except psutil.Error:
            continue
        for q in procs:
            try:
                c = q.cpu_times()
                total += c.user + c.system
            except psutil.Error:
                continue
    return total


class ForeignLoad:
    """CPU used by processes other than ``pids`` (and this one) between start() and stop(), in cores."""

    def __init__(self, pids: Iterable[int]):
        self.pids = list(pids)
        self._t0 = self._busy0 = self._own0 = 0.0

    def start(self) -> "ForeignLoad":
        self._t0, self._busy0, self._own0 = time.monotonic(), _busy_seconds(), _own_seconds(self.pids)
        return self

    def stop(self) -> Optional[float]:
        wall = time.monotonic() - self._t0
        if wall <= 0:
            return None
        foreign = (_busy_seconds() - self._busy0) - (_own_seconds(self.pids) - self._own0)
        return max(0.0, foreign / wall)


class ForeignLoadAroundChildren(ForeignLoad):
    """``ForeignLoad`` over a window in which this process spawns servers and reaps them (cold start,
    restart): their CPU is counted as this process's own once they have been waited for."""

    def __init__(self) -> None:
        super().__init__([])

    def start(self) -> "ForeignLoad":
        super().start()
        self._own0 += _reaped_seconds()
        return self

    def stop(self) -> Optional[float]:
        wall = time.monotonic() - self._t0
        if wall <= 0:
            return None
        own = _own_seconds([]) + _reaped_seconds() - self._own0
        return max(0.0, ((_busy_seconds() - self._busy0) - own) / wall)


def _reaped_seconds() -> float:
    t = os.times()
    return t.children_user + t.children_system

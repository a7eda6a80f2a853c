"""Lending a decode core to other CPU work in the process (speech recognition and synthesis).

Why: llama.cpp's decode threads meet at a barrier after every operation of the graph, hundreds of
times per token. When they fill every CPU and another busy thread (Whisper, espeak-ng) takes one
core, the decode thread descheduled there holds all the others at the next barrier for a whole
scheduler time slice, again and again: a niced one-thread speech job cut a chat stream to under a
third of its speed on two cores. Decoding on one thread fewer while such a job runs (the job pinned
to a core of its own) bounds the cost at the speed of ``threads - 1`` threads, and the job gets a
whole core, so it also ends sooner.

Who owns what: the scheduler thread reads :attr:`CoreShare.threads` before each ``llama_decode`` and
applies it; any thread may hold :meth:`CoreShare.lend` around its work.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager, nullcontext
from typing import Callable, ContextManager, Iterator


def lent_cpu(cpus: set[int]) -> int:
    """The CPU speech work is pinned to, and that decoding leaves while a core is lent."""
    return max(cpus)


def process_cpus() -> set[int]:
    """The CPUs this process may run on (all of them where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


class CoreShare:
    """How many threads decoding may use now: ``threads``, less one per lent core when the decode
    threads and the lent cores together would outnumber the ``cpus`` (never below one)."""

    def __init__(self, threads: int, cpus: int):
        self.base = max(1, threads)
        self.cpus = max(1, cpus)
        self._lent = 0
        self.lent_total = 0
        self._lock = threading.Lock()

    @property
    def threads(self) -> int:
        """Decode threads for the next step."""
        if not self._lent:
            return self.base
        return max(1, min(self.base, self.cpus - self._lent))

    @contextmanager
    def lend(self) -> Iterator[None]:
        """Hold a core for the duration of the block (nested and concurrent holds add up)."""
        with self._lock:
            self._lent += 1
            self.lent_total += 1
        try:
            yield
        finally:
            with self._lock:
                self._lent -= 1


def core_lender(engine: object) -> Callable[[], ContextManager[None]]:
    """The engine's ``lend_core``; engines that decode elsewhere (upstreams) or not at all (the
    fake) have no cores to lend, and get a no-op."""
    return getattr(engine, "lend_core", nullcontext)

"""One thread at a lower CPU priority, with a bounded queue: where every speech job runs.

Why a thread and ``os.nice``: on Linux a thread's nice value is its own (``setpriority`` with
``PRIO_PROCESS`` and 0 acts on the calling thread), and threads and processes started from it
inherit it. So the ASR model loaded on this thread computes on low-priority threads, and an
``espeak-ng`` started from it runs at low priority too, while llama.cpp's decode threads keep
their normal priority.

Why pinned to one CPU and a core lent around each job: nice alone is not enough when llama.cpp's
decode threads fill every CPU, because they wait for each other at a barrier after every graph
operation and a decode thread preempted by speech work stalls them all. So the thread pins itself
(and the threads and children it starts: the ASR model's, espeak-ng) to the last CPU, and holds
``lend_core()`` while a job runs, during which the engine decodes on one thread fewer
(:mod:`xiaoq.engine.cores`): the chat stream keeps the other cores to itself.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, TypeVar

from xiaoq.engine.cores import lent_cpu
from xiaoq.errors import Busy

T = TypeVar("T")

#: nice value of speech work: CFS gives a nice-10 thread about a tenth of a contended core.
DEFAULT_NICENESS = 10


def _lower_priority(niceness: int) -> None:
    try:
        os.nice(niceness)
    except (AttributeError, OSError):  # not POSIX, or not permitted: run at normal priority
        pass
    _pin_to_last_cpu()


def _pin_to_last_cpu() -> None:
    """Keep this thread on one CPU (pid 0 is the calling thread on Linux), so it takes one core."""
    try:
        cpus = os.sched_getaffinity(0)
        if len(cpus) > 1:
            os.sched_setaffinity(0, {lent_cpu(cpus)})
    except (AttributeError, OSError):  # not Linux, or not permitted: the scheduler places it
        pass


class LowPriorityWorker:
    """Runs jobs one at a time on a single niced thread; at most ``max_pending`` waiting or running."""

    def __init__(
        self, name: str, niceness: int = DEFAULT_NICENESS, max_pending: int = 8, lend_core: Callable[[], ContextManager[None]] = nullcontext
    ):
        self.name = name
        self.max_pending = max_pending
        self.lend_core = lend_core
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name, initializer=_lower_priority, initargs=(niceness,))
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Jobs waiting or running."""
        return self._pending

    def submit(self, fn: Callable[..., T], *args: Any) -> "concurrent.futures.Future[T]":
        """Queue ``fn(*args)``; Busy (503 + Retry-After) when the queue is full."""
        with self._lock:
            if self._pending >= self.max_pending:
                raise Busy(f"XiaoQ's {self.name} queue is full ({self.max_pending} jobs). Retry shortly.")
            self._pending += 1
        future = self._pool.submit(self._run, fn, *args)
        future.add_done_callback(self._done)
        return future

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
        with self.lend_core():
            return fn(*args)

    def _done(self, _: "concurrent.futures.Future[Any]") -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self) -> None:
        """Drop queued jobs and wait for the running one."""
        self._pool.shutdown(wait=True, cancel_futures=True)

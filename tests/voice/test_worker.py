"""Speech work runs on one niced thread with a bounded queue."""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

import pytest

from xiaoq.errors import Busy
from xiaoq.voice.worker import LowPriorityWorker


def test_jobs_run_on_one_lower_priority_thread_and_children_inherit_it() -> None:
    worker = LowPriorityWorker("test", niceness=5)
    try:
        base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        def probe() -> tuple[int, int, int]:
            import subprocess

            child = int(subprocess.run(["sh", "-c", "ps -o ni= -p $$"], capture_output=True, text=True).stdout)
            return threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0), child

        first, second = worker.submit(probe).result(10), worker.submit(probe).result(10)
        assert first[0] == second[0] != threading.get_native_id()
        assert first[1] == min(base + 5, 19) and first[2] == first[1]
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the caller is untouched
    finally:
        worker.shutdown()


def test_a_full_queue_answers_busy() -> None:
    worker = LowPriorityWorker("test", max_pending=2)
    gate = threading.Event()
    try:
        futures = [worker.submit(gate.wait, 10), worker.submit(gate.wait, 10)]
        with pytest.raises(Busy, match="queue is full"):
            worker.submit(gate.wait, 10)
        gate.set()
        assert all(f.result(10) for f in futures)
        worker.submit(lambda: None).result(10)  # room again once they finished
    finally:
        gate.set()
        worker.shutdown()


def test_each_job_runs_pinned_to_one_cpu_with_a_core_lent_by_the_engine() -> None:
    held: list[str] = []

    @contextlib.contextmanager
    def lend_core() -> Iterator[None]:
        held.append("lent")
        yield
        held.append("returned")

    worker = LowPriorityWorker("test", lend_core=lend_core)
    try:
        def probe() -> tuple[set[int], list[str]]:
            return os.sched_getaffinity(0), list(held)

        cpus, seen = worker.submit(probe).result(10)
        allowed = os.sched_getaffinity(0)
        assert seen == ["lent"]  # the core is lent while the job runs
        assert held == ["lent", "returned"]
        assert cpus == ({max(allowed)} if len(allowed) > 1 else allowed)
        assert os.sched_getaffinity(0) == allowed  # the caller keeps every CPU
    finally:
        worker.shutdown()

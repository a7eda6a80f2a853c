"""Background ingest: ONE low-priority thread runs the jobs in order; callers poll their progress.

Why one thread at nice 10: the machine has two cores and llama.cpp decodes on them; a second busy
thread pool costs decoding a quarter of its speed, so ingest (parsing, OCR, embedding) runs on one
thread, below the server's priority, and the ingestor's pause hook waits while slots decode. A
reply never waits on ingest: chunks are committed in small batches through the store's one
writer lock, each held for milliseconds.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from xiaoq.kb.ingest import Progress

log = logging.getLogger(__name__)

#: Finished jobs kept for polling (oldest dropped first).
KEEP_JOBS = 200
#: Nice value of the ingest thread (Linux applies it per thread).
NICE = 10

Work = Callable[[Callable[[Progress], None]], Progress]


@dataclass
class Job:
    """One queued ingest; ``to_dict`` is what ``GET /api/kb/jobs/{id}`` returns."""

    kb: str
    kind: str
    work: Work
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: str = "queued"
    progress: Progress = field(default_factory=Progress)
    error: Optional[str] = None
    created: float = field(default_factory=time.time)
    order: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kb": self.kb, "kind": self.kind, "status": self.status, "progress": self.progress.to_dict(), "error": self.error}


class JobRunner:
    """A queue of ingest jobs and the single thread that runs them."""

    def __init__(self) -> None:
        self._queue: "queue.Queue[Optional[Job]]" = queue.Queue()
        self._jobs: "OrderedDict[str, Job]" = OrderedDict()
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def submit(self, kb: str, kind: str, work: Work) -> Job:
        job = Job(kb, kind, work, order=next(self._order))
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP_JOBS:
                oldest = next(iter(self._jobs.values()))
                if oldest.status in ("queued", "running"):
                    break
                self._jobs.popitem(last=False)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="xiaoq-kb-ingest", daemon=True)
                self._thread.start()
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Optional[Job]:
        with self._lock:
            return self._jobs.get(job_id)

    def wait(self, job_id: str, timeout: float = 30.0) -> Optional[Job]:
        """Block until the job finished (tests and the CLI); the job, or None when unknown."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job is None or job.status in ("done", "error"):
                return job
            time.sleep(0.02)
        return self.get(job_id)

    def close(self, timeout: float = 5.0) -> None:
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def _run(self) -> None:
        _lower_priority()
        while True:
            job = self._queue.get()
            if job is None:
                return
            job.status = "running"
            try:
                job.progress = job.work(lambda p, job=job: setattr(job, "progress", p))
                job.status = "done"
            except Exception as exc:  # a job's failure is reported to its poller, the thread goes on
                log.exception("knowledge-base job %s failed", job.id)
                job.error, job.status = f"{type(exc).__name__}: {exc}", "error"


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        pass


def engine_pause(stats: Callable[[], dict[str, Any]], max_wait: float = 5.0, step: float = 0.1) -> Callable[[], None]:
    """A pause hook for the ingestor: wait (at most ``max_wait`` per batch, so ingest still moves
    under constant load) while the engine has slots decoding."""

    def pause() -> None:
        deadline = time.monotonic() + max_wait
        while time.monotonic() < deadline:
            try:
                if not stats().get("slots_active"):
                    return
            except Exception:
                return
            time.sleep(step)

    return pause

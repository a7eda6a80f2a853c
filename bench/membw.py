"""The machine's memory read bandwidth, and the decode speed it allows.

On a CPU, generating one token reads every weight once, so bandwidth / bytes-per-token bounds
decode tokens/s from above no matter how good the engine is. We measure read bandwidth with numpy
reductions over a buffer far larger than the caches, one slice per thread (numpy releases the GIL
inside reductions), with as many threads as the servers use: a single thread rarely saturates the
memory bus. The best of several trials is reported, since noise only ever slows a trial down.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import numpy as np


def read_bandwidth_gbs(threads: int = 2, size_mb: int = 512, trials: int = 5) -> float:
    """Read bandwidth in GB/s (1e9 bytes) over ``size_mb`` MiB, using ``threads`` threads."""
    n = size_mb * 1024 * 1024 // 8
    buf = np.ones(n, dtype=np.float64)  # ones, not empty: pages must really be backed
    slices = np.array_split(buf, max(1, threads))
    best = float("inf")
    for _ in range(trials):
        barrier = threading.Barrier(len(slices) + 1)
        sink = [0.0] * len(slices)

        def work(i: int) -> None:
            barrier.wait()
            sink[i] = float(slices[i].sum())

        workers = [threading.Thread(target=work, args=(i,)) for i in range(len(slices))]
        for w in workers:
            w.start()
        barrier.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join()
        best = min(best, time.perf_counter() - t0)
        assert sum(sink) == n  # the reduction really read every element
    return buf.nbytes / best / 1e9


def copy_bandwidth_gbs(size_mb: int = 256, trials: int = 5) -> float:
    """Single-thread copy bandwidth in GB/s, counting bytes read plus bytes written."""
    n = size_mb * 1024 * 1024 // 8
    src = np.ones(n, dtype=np.float64)
    dst = np.zeros_like(src)
    best = float("inf")
    for _ in range(trials):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


def decode_ceiling_tps(bandwidth_gbs: float, weight_bytes: int) -> Optional[float]:
    """Tokens/s that the bandwidth allows: bandwidth / bytes read per token."""
    if weight_bytes <= 0 or bandwidth_gbs <= 0:
        return None
    return bandwidth_gbs * 1e9 / weight_bytes

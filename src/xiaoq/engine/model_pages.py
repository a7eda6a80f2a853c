"""Give back the model file's pages that llama.cpp copied and never reads again.

With the model memory-mapped, llama.cpp reads every tensor through the mapping while loading, and
the weights it *repacks* for faster CPU matmuls (Q4_K, Q4_0, IQ4_NL ... into interleaved blocks)
end up twice in memory: the repacked copy it computes with, and the mapped file pages it copied
from, which stay resident (counted in the process's RSS) although nothing reads them again. For
Qwen2.5-0.5B Q4_K_M that is 28 MiB of a ~800 MB process.

Which tensors are repacked depends on the CPU and the tensor shapes (ggml's repack.cpp decides), so
this does not guess: right after the load, before the KV cache and compute buffers are allocated
(so the process's peak, VmHWM, drops too, not only its later RSS), it drops the whole mapping's
pages (``MADV_DONTNEED``: the page-table entries go, the kernel's page cache keeps the data). The
warm-up decode then reads every weight the model computes with and maps those pages back in,
cheaply, from the page cache; the pages only the load read stay out, and so do the embedding
rows of tokens not seen yet when the output matrix is a tensor of its own. Dropping a page that
is needed later is harmless: the next read maps it again.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

#: Linux's MADV_DONTNEED.
_MADV_DONTNEED = 4


def mapped_ranges(path: Path, maps: str) -> list[tuple[int, int]]:
    """Address ranges of ``/proc/self/maps`` text that map the file ``path``."""
    target = os.path.realpath(path)
    out = []
    for line in maps.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5] == target:
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            out.append((lo, hi))
    return out


def release_file_pages(path: Path) -> int:
    """Drop this process's resident pages of the memory-mapped file ``path``; bytes of address
    range released (0 where unsupported: not Linux, or the file is not mapped)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        with open("/proc/self/maps") as f:
            ranges = mapped_ranges(path, f.read())
    except OSError:
        return 0
    libc = ctypes.CDLL(None)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    for lo, hi in ranges:
        if libc.madvise(lo, hi - lo, _MADV_DONTNEED) == 0:
            released += hi - lo
    return released

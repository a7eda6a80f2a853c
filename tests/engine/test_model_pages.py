"""Giving back the mapped model file's pages that loading read and decoding never does
(``engine/model_pages.py``): the mechanism on a file of our own, then the real engine on the tiny
GGUF (its token embedding rows are read only for tokens in use)."""

from __future__ import annotations

import mmap
import os
import sys
from pathlib import Path

import pytest

from xiaoq.engine.model_pages import mapped_ranges, release_file_pages

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps is Linux's")


def resident_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path`` (from /proc/self/smaps)."""
    target, total, inside = os.path.realpath(path), 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(None, 5)
            if head and "-" in head[0] and len(head) >= 5 and all(c in "0123456789abcdef-" for c in head[0]):
                inside = len(head) == 6 and head[5].strip() == target
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


def test_mapped_ranges_finds_only_the_files_mappings(tmp_path: Path):
    f = tmp_path / "m.gguf"
    maps = (f"7f00aa000000-7f00aa100000 r--s 00000000 08:01 123 {f}\n"
            "7f00ab000000-7f00ab001000 rw-p 00000000 00:00 0 \n"
            f"7f00ac000000-7f00ac002000 r--s 00000000 08:01 124 {f}.other\n"
            f"7f00ad000000-7f00ad004000 r--s 00100000 08:01 123 {f}\n")
    assert mapped_ranges(f, maps) == [(0x7F00AA000000, 0x7F00AA100000), (0x7F00AD000000, 0x7F00AD004000)]
    assert mapped_ranges(tmp_path / "absent", maps) == []


@linux_only
def test_released_pages_leave_memory_and_read_back_the_same(tmp_path: Path):
    data = os.urandom(4 << 20)
    f = tmp_path / "weights.bin"
    f.write_bytes(data)
    with open(f, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert mm[:] == data  # every page touched
        before = resident_kb(f)
        assert before >= 4000
        assert release_file_pages(f) >= len(data)
        assert resident_kb(f) < before // 4
        assert mm[:] == data  # a released page reads back from the file
    assert release_file_pages(tmp_path / "not-mapped.bin") == 0


@linux_only
def test_the_engine_keeps_only_the_model_pages_it_reads(tiny_gguf: Path):
    """Right after loading, the model file's pages are out of memory; the warm-up and a decode map
    back what they read (not the embedding rows of unused tokens); greedy output is the same as
    with the file read into memory (--no-mmap)."""
    from xiaoq.engine.context import LlamaModel
    from xiaoq.engine.types import SamplingParams

    def greedy(model: LlamaModel) -> list[int]:
        model.warmup()
        toks = model.tokenize("hello world, the tiny model says", add_special=False, parse_special=False)
        b = model.batch
        b.clear()
        last = b.add_run(toks, 0, 0, True)
        assert model.decode() == 0
        sampler = model.make_sampler(SamplingParams(temperature=0.0), 1)
        out, pos = [], len(toks)
        for _ in range(16):
            t = model.sample(sampler, last)
            out.append(t)
            b.clear()
            last = b.add(t, pos, 0, True)
            pos += 1
            assert model.decode() == 0
        model.free_sampler(sampler)
        return out

    size_kb = tiny_gguf.stat().st_size // 1024
    mapped = LlamaModel(tiny_gguf, n_ctx_per_seq=256, n_seq=1, n_batch=64, n_threads=1, use_mmap=True)
    try:
        assert resident_kb(tiny_gguf) < size_kb // 4, (resident_kb(tiny_gguf), size_kb)
        mapped_out = greedy(mapped)
        assert 0 < resident_kb(tiny_gguf) <= size_kb
    finally:
        mapped.close()
    read = LlamaModel(tiny_gguf, n_ctx_per_seq=256, n_seq=1, n_batch=64, n_threads=1, use_mmap=False)
    try:
        assert greedy(read) == mapped_out
    finally:
        read.close()

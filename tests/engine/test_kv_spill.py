"""The disk tier of the KV state cache (``engine/kv_spill.py``), alone and behind the RAM cache."""

from __future__ import annotations

import ctypes
from pathlib import Path

from xiaoq.engine.kv_cache import CacheEntry, StateCache, token_key
from xiaoq.engine.kv_spill import DiskSpill


def state(n: int, fill: int) -> ctypes.Array:
    buf = (ctypes.c_uint8 * n)()
    ctypes.memset(buf, fill, n)
    return buf


def test_evicted_state_is_written_found_by_prefix_and_read_back(tmp_path: Path) -> None:
    spill = DiskSpill(tmp_path / "kv", max_bytes=1 << 20)
    key = token_key([1, 2, 3, 4, 5])
    spill.put(CacheEntry(key, state(1000, 7)))
    entry, n = spill.lookup(token_key([1, 2, 3, 4, 5, 6, 7]))
    assert entry is not None and n == 5
    spill.flush()
    assert spill.writes == 1 and len(list((tmp_path / "kv").glob("*.kv"))) == 1
    data = entry.data  # now read from the file
    assert len(data) == 1000 and bytes(data) == b"\x07" * 1000 and spill.loads == 1
    assert spill.lookup(token_key([9, 9]))[0] is None
    spill.take(entry)  # restored into a slot: leaves the disk tier
    assert len(spill) == 0 and spill.hits == 1 and not list((tmp_path / "kv").glob("*.kv"))
    spill.close()


def test_byte_cap_evicts_oldest_and_longer_states_supersede_prefixes(tmp_path: Path) -> None:
    spill = DiskSpill(tmp_path, max_bytes=2500)
    spill.put(CacheEntry(token_key([1, 1]), state(1000, 1)))
    spill.put(CacheEntry(token_key([2, 2]), state(1000, 2)))
    spill.put(CacheEntry(token_key([3, 3]), state(1000, 3)))  # over the cap: [1, 1] goes
    spill.flush()
    assert spill.lookup(token_key([1, 1]))[0] is None and spill.bytes <= 2500
    spill.put(CacheEntry(token_key([2, 2, 5]), state(500, 4)))  # supersedes [2, 2]
    spill.flush()
    entry, n = spill.lookup(token_key([2, 2, 5, 6]))
    assert n == 3 and bytes(entry.data) == b"\x04" * 500
    assert len(spill) == 2 and len(list(tmp_path.glob("*.kv"))) == 2
    spill.close()


def test_index_survives_a_restart_and_torn_files_are_dropped(tmp_path: Path) -> None:
    spill = DiskSpill(tmp_path, max_bytes=1 << 20)
    spill.put(CacheEntry(token_key([4, 5, 6]), state(300, 9)))
    spill.close()
    (tmp_path / "torn.kv").write_bytes(b"XQKV1\0\x05\x00")  # a crash mid-write
    again = DiskSpill(tmp_path, max_bytes=1 << 20)
    entry, n = again.lookup(token_key([4, 5, 6, 7]))
    assert n == 3 and bytes(entry.data) == b"\x09" * 300
    assert not (tmp_path / "torn.kv").exists()


def test_ram_cache_evicts_into_the_disk_tier(tmp_path: Path) -> None:
    spill = DiskSpill(tmp_path, max_bytes=1 << 20)
    ram = StateCache(1500, on_evict=spill.put)
    ram.put(token_key([1, 2, 3]), state(1000, 1))
    ram.put(token_key([7, 8, 9]), state(1000, 2))  # evicts [1, 2, 3] into the spill
    assert len(ram) == 1 and len(spill) == 1
    entry, n = spill.lookup(token_key([1, 2, 3, 4]))
    assert n == 3 and bytes(entry.data) == b"\x01" * 1000
    spill.close()


async def test_real_engine_spills_evicted_conversations_and_restores_them(tiny_gguf: Path, tmp_path: Path) -> None:
    """Over real llama.cpp: with 1 MiB of RAM cache, six long conversations push the oldest states
    to disk; the next turn of one of those is restored from its file instead of prefilled."""
    from array import array

    from xiaoq.config import Settings
    from xiaoq.engine.llama_engine import LlamaEngine
    from xiaoq.engine.types import GenerationRequest, SamplingParams

    settings = Settings(threads=2, parallel=1, ctx=2048, batch=128, kv_cache_mb=1, kv_disk_mb=64, seed=1, db=tmp_path / "x.db")
    engine = LlamaEngine(tiny_gguf, settings)
    await engine.start()
    try:
        def request(name: str, more: str = "") -> GenerationRequest:
            text = f"conversation {name}: " + "hello world the model is fast " * 120 + more
            return GenerationRequest(messages=[{"role": "user", "content": text}], sampling=SamplingParams(temperature=0, max_tokens=4))

        firsts = {}
        for name in "ABCDEF":
            firsts[name] = await engine.submit(request(name))
            await firsts[name].text()
        stats = engine.stats()
        assert stats["kv_disk_entries"] >= 1 and stats["kv_disk_bytes"] > 0, str(stats)
        spill = engine._scheduler.cache.spill  # type: ignore[union-attr]
        spill.flush()
        assert list((tmp_path / "kv").glob("*/*.kv")), "nothing was written under <data dir>/kv/"
        # A conversation whose state now lives only on disk (most of its prompt, not just a shared
        # "conversation " head):
        on_disk = [n for n in firsts if spill.lookup(array("i", engine._prompt_tokens(request(n))).tobytes())[1] > 500]
        assert on_disk
        name = on_disk[0]
        again = await engine.submit(request(name, " and one more question"))
        await again.text()
        first = firsts[name].result
        assert again.result is not None and first is not None
        # All of the first prompt but its last few tokens (the template's end) came back from disk.
        assert again.result.usage.cached_tokens >= first.usage.prompt_tokens - 16, (again.result.usage, first.usage)
        stats = engine.stats()
        assert stats["kv_disk_hits_total"] == 1 and stats["kv_disk_loads_total"] == 1, str(stats)
    finally:
        await engine.close()

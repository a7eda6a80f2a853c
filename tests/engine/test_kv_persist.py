"""KV cache types, and the disk tier across restarts: states are kept at shutdown, found again by
the same model and settings, and never restored into another model or other KV types."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from xiaoq.engine.kv_cache import CacheEntry, token_key
from xiaoq.engine.kv_spill import DiskSpill, model_fingerprint


def state(n: int, fill: int) -> ctypes.Array:
    buf = (ctypes.c_uint8 * n)()
    ctypes.memset(buf, fill, n)
    return buf


def test_a_state_written_for_another_fingerprint_is_never_restored(tmp_path: Path) -> None:
    mine = DiskSpill(tmp_path, 1 << 20, "model-a|k=f16|v=f16")
    mine.put(CacheEntry(token_key([4, 5, 6]), state(300, 9)))
    mine.close()
    other = DiskSpill(tmp_path, 1 << 20, "model-a|k=q8_0|v=f16")
    assert other.lookup(token_key([4, 5, 6, 7])) == (None, 0)
    assert not list(tmp_path.glob("*.kv"))  # useless to this server: removed
    again = DiskSpill(tmp_path, 1 << 20, "model-a|k=f16|v=f16")
    assert again.lookup(token_key([4, 5, 6, 7]))[0] is None


def test_files_of_the_older_format_are_dropped(tmp_path: Path) -> None:
    (tmp_path / "old.kv").write_bytes(b"XQKV1\0" + (3).to_bytes(4, "little") + b"\0" * 12 + b"\1" * 64)
    spill = DiskSpill(tmp_path, 1 << 20, "fp")
    assert spill.lookup(token_key([0, 0, 0]))[0] is None and not (tmp_path / "old.kv").exists()


def test_the_fingerprint_follows_the_file_and_the_settings(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\1" * 5000)
    a = model_fingerprint(model, "k=f16|v=f16")
    assert a == model_fingerprint(model, "k=f16|v=f16")
    assert a != model_fingerprint(model, "k=q8_0|v=f16")
    st = model.stat()
    model.write_bytes(b"GGUF" + b"\2" * 5000)  # same name, size and time, other contents
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert a != model_fingerprint(model, "k=f16|v=f16")


def test_kv_types_are_checked_with_a_clear_message() -> None:
    from xiaoq.engine.context import check_kv_types
    from xiaoq.errors import ModelError

    check_kv_types("q8_0", "f16", False)
    check_kv_types("q8_0", "q8_0", None)
    with pytest.raises(ModelError, match="quantized V cache .*needs flash attention"):
        check_kv_types("f16", "q8_0", False)
    with pytest.raises(ModelError, match="Unknown KV cache type 'q9'"):
        check_kv_types("q9", "f16", None)


def test_settings_accept_only_kv_types_llama_cpp_has() -> None:
    from pydantic import ValidationError

    from xiaoq.config import Settings

    assert Settings(kv_type_k="q8_0", kv_type_v="q4_0").kv_type_v == "q4_0"
    with pytest.raises(ValidationError):
        Settings(kv_type_k="q3")


def test_a_quantized_v_cache_without_flash_attention_fails_before_loading(tiny_gguf: Path) -> None:
    from xiaoq.engine.context import LlamaModel
    from xiaoq.errors import ModelError

    with pytest.raises(ModelError, match="needs flash attention"):
        LlamaModel(tiny_gguf, n_ctx_per_seq=256, n_seq=1, n_batch=32, n_threads=1, flash_attn=False, kv_type_v="q8_0")


async def test_a_conversation_is_restored_from_disk_after_a_restart_and_not_with_other_kv_types(
        tiny_gguf: Path, tmp_path: Path) -> None:
    """Real llama.cpp: the state of a conversation still in RAM at shutdown is on disk afterwards;
    a new engine with the same model and settings restores it, one with an f32 K cache does not
    (and still answers). (The tiny model's 16-wide heads take no 32-block quantized cache.)"""
    from xiaoq.config import Settings
    from xiaoq.engine.llama_engine import LlamaEngine
    from xiaoq.engine.types import GenerationRequest, SamplingParams

    def request(more: str = "") -> GenerationRequest:
        text = "a conversation worth keeping: " + "the model is fast and small " * 60 + more
        return GenerationRequest(messages=[{"role": "user", "content": text}],
                                 sampling=SamplingParams(temperature=0, max_tokens=4))

    async def turn(kv_type_k: str, more: str) -> tuple[int, int, dict]:
        settings = Settings(threads=2, parallel=1, ctx=2048, batch=128, kv_cache_mb=64, kv_disk_mb=64, seed=1,
                            db=tmp_path / "x.db", kv_type_k=kv_type_k)
        engine = LlamaEngine(tiny_gguf, settings)
        await engine.start()
        try:
            gen = await engine.submit(request(more))
            await gen.text()
            assert gen.result is not None and gen.result.finish_reason == "length"
            return gen.result.usage.cached_tokens, gen.result.usage.prompt_tokens, engine.stats()
        finally:
            await engine.close()

    cached, prompt, _ = await turn("f16", "")
    assert cached == 0
    assert list((tmp_path / "kv").glob("*/*.kv")), "the slot's state was not kept at shutdown"
    cached, _, stats = await turn("f16", " and one more question")
    assert cached >= prompt - 16 and stats["kv_disk_hits_total"] == 1, stats
    cached, _, stats = await turn("f32", " and one more question")
    assert cached == 0 and stats["kv_disk_hits_total"] == 0, stats


@pytest.mark.real_model
async def test_the_real_model_answers_with_a_q8_0_kv_cache(real_model_path: Path, tmp_path: Path) -> None:
    from xiaoq.config import Settings
    from xiaoq.engine.llama_engine import LlamaEngine
    from xiaoq.engine.types import GenerationRequest, SamplingParams

    settings = Settings(threads=2, parallel=1, ctx=1024, kv_cache_mb=0, kv_disk_mb=0, seed=1, db=tmp_path / "x.db",
                        kv_type_k="q8_0", kv_type_v="q8_0")
    engine = LlamaEngine(real_model_path, settings)
    await engine.start()
    try:
        gen = await engine.submit(GenerationRequest(messages=[{"role": "user", "content": "What is 2+3? Answer with a number."}],
                                                    sampling=SamplingParams(temperature=0, max_tokens=8)))
        assert "5" in await gen.text()
    finally:
        await engine.close()


def test_prefetch_reads_a_state_once_ahead_and_hands_it_over(tmp_path: Path) -> None:
    spill = DiskSpill(tmp_path, 1 << 20, "fp")
    key = token_key(list(range(100)))
    spill.put(CacheEntry(key, state(500, 3)))
    spill.flush()
    assert spill.prefetch(token_key(list(range(100)) + [7]))
    assert not spill.prefetch(token_key(list(range(100))))  # already read ahead
    assert not spill.prefetch(token_key([5] * 100))  # nothing to restore
    entry, _ = spill.lookup(key)
    assert bytes(entry.data) == b"\x03" * 500 and spill.loads == 1 and spill.prefetches == 1
    assert bytes(entry.data) == b"\x03" * 500 and spill.loads == 2  # handed over once, then read again
    spill.close()


async def test_a_disk_restore_is_read_off_the_scheduler_thread(tiny_gguf: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The state file is read by the submitting worker thread, never by the scheduler thread
    (a read there pauses every stream)."""
    import threading

    from xiaoq.config import Settings
    from xiaoq.engine.llama_engine import LlamaEngine
    from xiaoq.engine.types import GenerationRequest, SamplingParams

    settings = Settings(threads=2, parallel=1, ctx=2048, batch=128, kv_cache_mb=1, kv_disk_mb=64, seed=1,
                        db=tmp_path / "x.db")
    engine = LlamaEngine(tiny_gguf, settings)
    await engine.start()

    def request(i: int, more: str = "") -> GenerationRequest:
        text = "hello " * (i + 1) + "the quick brown fox jumps over it " * 50 + more  # distinct from the start
        return GenerationRequest(messages=[{"role": "user", "content": text}],
                                 sampling=SamplingParams(temperature=0, max_tokens=2))
    try:
        for i in range(12):  # more states than 1 MiB of RAM holds: the oldest go to disk
            await (await engine.submit(request(i))).text()
        assert engine.stats()["kv_disk_prefetches_total"] == 0
        spill = engine._scheduler.cache.spill  # type: ignore[union-attr]
        spill.flush()
        on_disk = [i for i in range(12) if spill.lookup(token_key(engine._prompt_tokens(request(i))))[1] > 500]
        assert len(on_disk) >= 2, engine.stats()
        readers: list[str] = []
        read = DiskSpill.read

        def tracking_read(self, entry):  # type: ignore[no-untyped-def]
            readers.append(threading.current_thread().name)
            return read(self, entry)
        monkeypatch.setattr(DiskSpill, "read", tracking_read)
        gen = await engine.submit(request(on_disk[0], " and more"))
        await gen.text()
        assert gen.result is not None and gen.result.usage.cached_tokens > 100, gen.result.usage
        st = engine.stats()
        assert readers and "xiaoq-scheduler" not in readers, (readers, st["kv_disk_loads_total"], st["kv_disk_prefetches_total"], st["kv_disk_hits_total"], gen.result.usage)
        assert engine.stats()["kv_disk_prefetches_total"] == 1
        engine.prefetch_spilled = False  # the old way: the scheduler thread reads the file
        readers.clear()
        gen = await engine.submit(request(on_disk[1], " and more"))
        await gen.text()
        assert readers == ["xiaoq-scheduler"], readers
    finally:
        await engine.close()

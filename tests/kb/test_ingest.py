"""Ingest into a real SQLite file and a real PostgreSQL database: incremental by hash, vanished files dropped, one line per bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.kb import docs
from xiaoq.kb import ingest as ingest_mod
from xiaoq.kb.ingest import Ingestor, Progress
from xiaoq.kb.retrieve import Retriever
from xiaoq.store.kb import KnowledgeStore


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "handbook"
    (folder / "sub").mkdir(parents=True)
    (folder / "admin.md").write_text(docs.MARKDOWN, encoding="utf-8")
    (folder / "it.html").write_text(docs.HTML, encoding="utf-8")
    (folder / "sub" / "travel.docx").write_bytes(docs.docx_bytes())
    (folder / "sub" / "rules.xlsx").write_bytes(docs.xlsx_bytes())
    (folder / "rooms.csv").write_text(docs.CSV, encoding="utf-8")
    (folder / "policy.pdf").write_bytes(docs.outlined_pdf_bytes())
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (folder / ".hidden.md").write_text("秘密", encoding="utf-8")
    (folder / "tool.exe").write_bytes(b"MZ")
    return folder


def test_folder_ingest_every_format_then_search(kstore: KnowledgeStore, tmp_path: Path) -> None:
    kb = kstore.ensure_kb("default")
    folder = _folder(tmp_path)
    seen: list[int] = []
    progress = Ingestor(kstore).add_paths(kb["id"], [folder], on_progress=lambda p: seen.append(p.files_done))
    assert (progress.files_total, progress.added, progress.failed) == (7, 6, 1)
    assert progress.errors == [{"source": str(folder / "broken.pdf"), "error": progress.errors[0]["error"]}]
    assert "cannot read it as PDF" in progress.errors[0]["error"]
    assert seen[-1] == 7 and seen == sorted(seen)
    retriever = Retriever(kstore)
    for query, source, anchor in [
        ("访客车辆在哪里登记", "admin.md", "停车-规定"),
        ("VPN 端口", "it.html", "vpn-setup"),
        ("上海住宿标准", "travel.docx", None),
        ("出租车报销上限", "rules.xlsx", None),
        ("Birch extension", "rooms.csv", None),
        ("how often do passwords rotate", "policy.pdf", "page=1"),
    ]:
        top = retriever.search([kb["id"]], query, k=1, mode="lexical")[0]
        assert Path(top.chunk["source"]).name == source, query
        assert top.chunk["anchor"] == anchor


def test_reingest_skips_unchanged_replaces_changed_drops_vanished(kstore: KnowledgeStore, tmp_path: Path) -> None:
    kb = kstore.ensure_kb("default")
    folder = _folder(tmp_path)
    ing = Ingestor(kstore)
    ing.add_paths(kb["id"], [folder])
    (folder / "admin.md").write_text(docs.MARKDOWN.replace("九点", "八点半"), encoding="utf-8")
    (folder / "rooms.csv").unlink()
    again = ing.add_paths(kb["id"], [folder])
    assert (again.added, again.unchanged, again.removed, again.failed) == (1, 4, 1, 1)
    sources = {Path(d["source"]).name for d in kstore.list_documents(kb["id"])}
    assert "rooms.csv" not in sources and "admin.md" in sources
    hits = Retriever(kstore).search([kb["id"]], "停车证几点发放", k=1, mode="lexical")
    assert "八点半" in hits[0].chunk["text"]
    assert not Retriever(kstore).search([kb["id"]], "Birch extension Maple", k=3, mode="lexical")


def test_commits_in_small_batches_and_pauses_between_them(kstore: KnowledgeStore, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    kb = kstore.ensure_kb("default")
    big = tmp_path / "big.md"
    big.write_text("\n\n".join(f"## 第{i}节\n第{i}节的内容是编号{i}的规定。" for i in range(40)), encoding="utf-8")
    monkeypatch.setattr(ingest_mod, "BATCH", 8)
    pauses: list[int] = []
    ing = Ingestor(kstore, pause=lambda: pauses.append(1))
    progress = ing.add_paths(kb["id"], [big])
    assert progress.chunks == 40 and len(pauses) == 5
    doc = kstore.list_documents(kb["id"])[0]
    assert (doc["status"], doc["chunk_count"]) == ("ready", 40)


def test_ingesting_document_is_not_searched_until_ready(kstore: KnowledgeStore) -> None:
    kb = kstore.ensure_kb("default")
    doc_id = kstore.begin_document(kb["id"], "a.txt", content_hash="x", size=1)
    from xiaoq.kb.lexical import index_columns

    kstore.add_chunks(doc_id, kb["id"], [(0, "", None, None, "半成品文档", 5, None, *index_columns("半成品文档"))])
    assert not Retriever(kstore).search([kb["id"]], "半成品文档", mode="lexical")
    kstore.finish_document(doc_id, status="ready")
    assert Retriever(kstore).search([kb["id"]], "半成品文档", mode="lexical")


def test_delete_kb_removes_documents_chunks_and_index_rows(kstore: KnowledgeStore, tmp_path: Path) -> None:
    kb = kstore.ensure_kb("gone")
    Ingestor(kstore).add_paths(kb["id"], [_folder(tmp_path)])
    kstore.delete_kb("gone")
    db = kstore.db
    tables = ("kb_documents", "kb_chunks") + (("kb_chunks_fts",) if db.kind == "sqlite" else ())  # PostgreSQL's index is a column
    assert [db.query_one(f"SELECT count(*) FROM {t}")[0] for t in tables] == [0] * len(tables)


def test_upload_bytes_and_embedder_vectors(kstore: KnowledgeStore) -> None:
    class Unit:
        name = "unit-test-embedder"

        def embed_passages(self, texts):  # type: ignore[no-untyped-def]
            return np.eye(len(texts), 8, dtype=np.float32)

        def embed_query(self, text):  # type: ignore[no-untyped-def]
            return np.eye(1, 8, 1, dtype=np.float32)[0]

    kb = kstore.ensure_kb("default")
    progress = Ingestor(kstore, Unit()).add_bytes(kb["id"], "notes.md", "# A\n\n第一节。\n\n# B\n\n第二节。".encode())
    assert isinstance(progress, Progress) and progress.added == 1
    assert kstore.get_document(progress.documents[0])["embedder"] == "unit-test-embedder"
    hits = Retriever(kstore, Unit()).search([kb["id"]], "nothing lexical matches", k=2, mode="hybrid")
    assert hits[0].chunk["heading"] == "B" and hits[0].dense_rank == 1 and hits[0].lexical_rank is None

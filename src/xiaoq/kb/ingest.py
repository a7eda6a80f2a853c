"""Ingest: files and folders into a knowledge base, incrementally and in small steps.

A document is identified by its source (absolute path, or upload name) and content hash: a file
whose hash (and embedder) did not change is skipped, a changed one is replaced, and re-adding a
folder drops the documents of files that vanished from it. A file that cannot be read is reported
in one line and the rest goes on.

Chunks are committed in small batches (the store has one writer; a chat reply's writes must never
wait long behind an ingest), and between batches :attr:`Ingestor.pause` lets the caller hold
ingest back while the chat model decodes (two cores: a second busy thread costs llama.cpp a
quarter of its speed).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from xiaoq.kb import lexical, parsers
from xiaoq.kb.chunking import ChunkSettings, chunk_blocks
from xiaoq.kb.embed import Embedder, to_blob
from xiaoq.kb.parsers import Limits
from xiaoq.kb.types import Chunk, UnreadableFile
from xiaoq.store.kb import ChunkRow, KnowledgeStore

log = logging.getLogger(__name__)

#: Chunks per commit (and per embedding call): a few hundred milliseconds of work at most.
BATCH = 16


@dataclass
class Progress:
    """Where an ingest stands; the CLI draws it as a bar, the HTTP job returns it as JSON."""

    files_total: int = 0
    files_done: int = 0
    added: int = 0
    unchanged: int = 0
    failed: int = 0
    removed: int = 0
    chunks: int = 0
    current: str = ""
    errors: list[dict[str, str]] = field(default_factory=list)
    documents: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def walk(paths: Iterable[Path]) -> Iterator[tuple[Path, Optional[Path]]]:
    """``(file, folder it was found in or None)`` for every supported file; hidden entries skipped."""
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith(".") and parsers.supported(name):
                        yield Path(root) / name, path
        else:
            yield path, None


class Ingestor:
    """Adds documents to one knowledge base."""

    def __init__(
        self,
        store: KnowledgeStore,
        embedder: Optional[Embedder] = None,
        *,
        limits: Limits = Limits(),
        chunking: ChunkSettings = ChunkSettings(),
        pause: Callable[[], None] = lambda: None,
    ):
        self.store = store
        self.embedder = embedder
        self.limits = limits
        self.chunking = chunking
        self.pause = pause

    # ---- folders and files -------------------------------------------------------------------
    def add_paths(self, kb_id: int, paths: Iterable[Path], on_progress: Callable[[Progress], None] = lambda p: None) -> Progress:
        """Ingest files and folders; re-adding a folder drops documents of files gone from it."""
        resolved = [Path(p).expanduser().resolve() for p in paths]
        files = list(walk(resolved))
        progress = Progress(files_total=len(files))
        on_progress(progress)
        for path, _ in files:
            progress.current = str(path)
            on_progress(progress)
            try:
                data = self._read(path)
            except UnreadableFile as exc:
                self._failed(progress, str(path), str(exc))
            else:
                self._ingest(kb_id, str(path), data, progress, on_progress)
            progress.files_done += 1
            on_progress(progress)
        seen = {str(p) for p, _ in files}
        for folder in (p for p in resolved if p.is_dir()):
            gone = [s for s in self.store.sources_under(kb_id, str(folder) + os.sep) if s not in seen]
            progress.removed += self.store.delete_sources(kb_id, gone)
        progress.current = ""
        on_progress(progress)
        return progress

    def add_bytes(self, kb_id: int, source: str, data: bytes, on_progress: Callable[[Progress], None] = lambda p: None) -> Progress:
        """Ingest one uploaded file named ``source``."""
        progress = Progress(files_total=1, current=source)
        on_progress(progress)
        self._ingest(kb_id, source, data, progress, on_progress)
        progress.files_done, progress.current = 1, ""
        on_progress(progress)
        return progress

    def _read(self, path: Path) -> bytes:
        try:
            size = path.stat().st_size
            if size > self.limits.max_bytes:
                raise UnreadableFile(f"too large: {size // (1024 * 1024)} MiB (limit {self.limits.max_bytes // (1024 * 1024)} MiB)")
            return path.read_bytes()
        except OSError as exc:
            raise UnreadableFile(exc.strerror or str(exc)) from None

    @staticmethod
    def _failed(progress: Progress, source: str, message: str) -> None:
        progress.failed += 1
        progress.errors.append({"source": source, "error": " ".join(message.split())})

    # ---- one document ------------------------------------------------------------------------
    def _ingest(self, kb_id: int, source: str, data: bytes, progress: Progress, on_progress: Callable[[Progress], None]) -> None:
        digest = sha256(data)
        old = self.store.find_document(kb_id, source)
        if old and old["content_hash"] == digest and old["status"] == "ready" and old["embedder"] == self._embedder_name():
            progress.unchanged += 1
            progress.documents.append(old["id"])
            return
        try:
            parsed = parsers.parse(source, data, self.limits)
        except UnreadableFile as exc:
            self._failed(progress, source, str(exc))
            return
        chunks = chunk_blocks(parsed.blocks, self.chunking)
        title = parsed.title or Path(source).name
        doc_id = self.store.begin_document(kb_id, source, content_hash=digest, size=len(data), title=title, pages=parsed.pages)
        try:
            embedder = self._store_chunks(doc_id, kb_id, chunks, progress, on_progress)
        except Exception as exc:
            self.store.finish_document(doc_id, status="error", error=f"{type(exc).__name__}: {exc}")
            self._failed(progress, source, f"{type(exc).__name__}: {exc}")
            log.exception("ingest of %s failed", source)
            return
        self.store.finish_document(doc_id, status="ready", embedder=embedder)
        progress.added += 1
        progress.documents.append(doc_id)

    def _embedder_name(self) -> Optional[str]:
        return self.embedder.name if self.embedder is not None else None

    def _store_chunks(self, doc_id: int, kb_id: int, chunks: list[Chunk], progress: Progress, on_progress: Callable[[Progress], None]) -> Optional[str]:
        """Index, embed and commit the chunks batch by batch; the embedder's name, or None when
        there is none or it failed (the document is then searchable lexically only)."""
        embedder = self.embedder
        for start in range(0, len(chunks), BATCH):
            self.pause()
            batch = chunks[start : start + BATCH]
            vectors: list[Optional[bytes]] = [None] * len(batch)
            if embedder is not None:
                try:
                    vectors = [to_blob(v) for v in embedder.embed_passages([c.index_text() for c in batch])]
                except Exception:
                    log.exception("embedding failed; this document will be found by its words only")
                    embedder = None
            self.store.add_chunks(doc_id, kb_id, [_row(c, v) for c, v in zip(batch, vectors)])
            progress.chunks += len(batch)
            on_progress(progress)
        return embedder.name if embedder is not None else None


def _row(chunk: Chunk, vector: Optional[bytes]) -> ChunkRow:
    words, grams = lexical.index_columns(chunk.index_text())
    return (chunk.position, chunk.heading_text, chunk.anchor, chunk.page, chunk.text, chunk.tokens, vector, words, grams)

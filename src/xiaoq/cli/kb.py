"""``xiaoq kb``: add, list, remove and search knowledge bases in the same database ``serve`` uses."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import click

from xiaoq.cli.options import build_settings, settings_options
from xiaoq.kb.types import DEFAULT_KB, check_kb_name

_DB_OPTIONS = ("data_dir", "db", "kb_dense", "embed_model", "kb_max_file_mb", "kb_max_pages")


def _kb_name(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    try:
        return check_kb_name(value)
    except Exception as exc:
        raise click.BadParameter(str(getattr(exc, "message", exc))) from None


def _open(given: dict[str, Any]):  # type: ignore[no-untyped-def]
    from xiaoq.kb.service import KnowledgeBases
    from xiaoq.store import open_store
    from xiaoq.store.kb import knowledge_store

    settings = build_settings(given)
    return KnowledgeBases(knowledge_store(open_store(settings.database()).db), settings)


@click.group("kb")
def kb() -> None:
    """Knowledge bases: documents XiaoQ answers from, with citations."""


@kb.command("add")
@click.option("--kb", "kb_name", default=DEFAULT_KB, show_default=True, callback=_kb_name, help="Knowledge base (created when missing)")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@settings_options(_DB_OPTIONS)
def add(kb_name: str, paths: tuple[Path, ...], **given: Any) -> None:
    """Ingest files and folders (Markdown, text, HTML, PDF, DOCX, XLSX, CSV, images with OCR).

    Unchanged files are skipped, changed ones replaced; re-adding a folder drops the documents of
    files that vanished from it. A file that cannot be read gets one line; the rest goes on.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    kbs = _open(given)
    target = kbs.store.ensure_kb(kb_name)
    reported = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=_console(), transient=True) as bar:
        task = bar.add_task("ingesting", total=None)

        def show(p: Any) -> None:
            nonlocal reported
            for err in p.errors[reported:]:
                bar.console.print(f"skipped {err['source']}: {err['error']}", markup=False, highlight=False, soft_wrap=True)
            reported = len(p.errors)
            bar.update(task, total=p.files_total, completed=p.files_done, description=_short(p.current) or "ingesting")

        progress = kbs.ingestor().add_paths(target["id"], paths, on_progress=show)
    click.echo(
        f"{kb_name}: {progress.added} added, {progress.unchanged} unchanged, {progress.removed} removed, "
        f"{progress.failed} unreadable; {progress.chunks} passages indexed"
    )
    if progress.files_total and progress.failed == progress.files_total:
        sys.exit(1)


@kb.command("list")
@click.option("--kb", "kb_name", default=None, callback=_kb_name, help="List this knowledge base's documents")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@settings_options(("data_dir", "db"))
def list_(kb_name: Optional[str], as_json: bool, **given: Any) -> None:
    """List knowledge bases, or with --kb the documents of one."""
    kbs = _open(given)
    if kb_name is None:
        rows = kbs.store.list_kbs()
        if as_json:
            click.echo(json.dumps({"data": rows}, ensure_ascii=False))
        for r in [] if as_json else rows:
            click.echo(f"{r['name']}\t{r['document_count']} documents\t{r['chunk_count']} passages")
        return
    docs = kbs.store.list_documents(kbs.store.get_kb(kb_name)["id"])
    if as_json:
        click.echo(json.dumps({"data": docs}, ensure_ascii=False))
        return
    for d in docs:
        status = d["status"] if d["status"] != "error" else f"error: {d['error']}"
        click.echo(f"{d['id']}\t{d['source']}\t{d['chunk_count']} passages\t{status}")


@kb.command("remove")
@click.option("--kb", "kb_name", required=True, callback=_kb_name, help="Knowledge base")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@settings_options(("data_dir", "db"))
def remove(kb_name: str, paths: tuple[Path, ...], **given: Any) -> None:
    """Remove documents (by path; a folder removes everything under it), or the whole knowledge base."""
    kbs = _open(given)
    target = kbs.store.get_kb(kb_name)
    if not paths:
        kbs.store.delete_kb(kb_name)
        click.echo(f"removed knowledge base {kb_name}")
        return
    sources: list[str] = []
    for p in paths:
        full = str(p.expanduser().resolve())
        sources += [full] + kbs.store.sources_under(target["id"], full.rstrip("/") + "/")
    n = kbs.store.delete_sources(target["id"], sources)
    click.echo(f"removed {n} document{'s' if n != 1 else ''} from {kb_name}")


@kb.command("share")
@click.option("--kb", "kb_name", required=True, callback=_kb_name, help="Knowledge base")
@click.option("--group", default=None, help="Share with this group only (see `xiaoq user add --group`)")
@click.option("--everyone", is_flag=True, help="Share with every user")
@click.option("--private", is_flag=True, help="Only its owner may use it")
@click.option("--owner", default=None, help="Give it to this user")
@settings_options(("data_dir", "db"))
def share(kb_name: str, group: Optional[str], everyone: bool, private: bool, owner: Optional[str], **given: Any) -> None:
    """Who may use a knowledge base when the server has accounts: everyone, one group, or its owner."""
    if (group is not None) + everyone + private != 1:
        raise click.UsageError("give one of --everyone, --group NAME, --private")
    kbs = _open(given)
    if owner is not None:
        from xiaoq.store.users import UserStore

        kbs.store.set_owner(kb_name, UserStore(kbs.store.db).by_name(owner).id)
    visibility = "group" if group is not None else "everyone" if everyone else "private"
    kb = kbs.store.share(kb_name, visibility, group)
    click.echo(f"{kb_name}: {visibility}{' ' + group if group else ''} (owner: {kb['owner'] or 'none'})")


@kb.command("search")
@click.option("--kb", "kb_name", default=DEFAULT_KB, show_default=True, callback=_kb_name, help="Knowledge base")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, 50), help="Passages to show")
@click.option("--mode", type=click.Choice(["hybrid", "lexical", "dense"]), default="hybrid", show_default=True, help="Ranking")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.argument("query")
@settings_options(("data_dir", "db", "kb_dense", "embed_model"))
def search(kb_name: str, k: int, mode: str, as_json: bool, query: str, **given: Any) -> None:
    """Print the passages that best match QUERY, best first."""
    kbs = _open(given)
    target = kbs.store.get_kb(kb_name)
    hits = [h.to_dict(query) for h in kbs.retriever.search([target["id"]], query, k=k, mode=mode)]  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps({"data": hits}, ensure_ascii=False))
        return
    if not hits:
        click.echo("no passage matches", err=True)
    for n, h in enumerate(hits, 1):
        where = h["source"] + (f"#{h['anchor']}" if h["anchor"] else "")
        click.echo(f"[{n}] {h['score']:.4f}  {where}\n    {h['heading'] or '-'}\n    {h['snippet']}\n")


def _console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=True)


def _short(path: str, width: int = 40) -> str:
    return path if len(path) <= width else "…" + path[-(width - 1) :]

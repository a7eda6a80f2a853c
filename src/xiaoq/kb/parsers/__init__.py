"""File parsers: one small module per format, each returning a :class:`~xiaoq.kb.types.ParsedDocument`.

:func:`parse` picks the parser by file suffix and turns every library error into
:class:`~xiaoq.kb.types.UnreadableFile` with one readable line, so a folder with one broken file
still ingests the rest.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from xiaoq.kb.types import ParsedDocument, UnreadableFile


@dataclass(frozen=True)
class Limits:
    """Per-file caps that keep one huge upload from eating the 2-core machine's memory and time."""

    max_bytes: int = 50 * 1024 * 1024
    max_pages: int = 2000
    #: Spreadsheet rows read per sheet (an exported log of a million rows is not a rule book).
    max_rows: int = 20000


Parser = Callable[[bytes, Limits], ParsedDocument]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
TEXT_SUFFIXES = frozenset({".txt", ".text", ".log", ".rst"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdown"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})


def _table() -> dict[str, str]:
    table = {".pdf": "pdf:parse", ".docx": "office:parse_docx", ".xlsx": "office:parse_xlsx", ".csv": "office:parse_csv"}
    for suffixes, target in ((TEXT_SUFFIXES, "plain:parse"), (MARKDOWN_SUFFIXES, "markdown:parse"), (HTML_SUFFIXES, "html:parse"), (IMAGE_SUFFIXES, "image:parse")):
        table.update(dict.fromkeys(suffixes, target))
    return table


_TABLE = _table()


def _parser_for(suffix: str) -> Parser | None:
    """The parser function, imported on first use (pypdf or openpyxl load only when needed)."""
    target = _TABLE.get(suffix)
    if target is None:
        return None
    module, func = target.split(":")
    return getattr(importlib.import_module(f"xiaoq.kb.parsers.{module}"), func)  # type: ignore[no-any-return]


def supported(name: str) -> bool:
    """True when a file of this name has a parser (folders skip the rest silently)."""
    return _parser_for(Path(name).suffix.lower()) is not None


def parse(name: str, data: bytes, limits: Limits = Limits()) -> ParsedDocument:
    """Parse ``data`` (the content of a file called ``name``); :class:`UnreadableFile` when it can't."""
    suffix = Path(name).suffix.lower()
    parser = _parser_for(suffix)
    if parser is None:
        raise UnreadableFile(f"unsupported file type {suffix or '(none)'}")
    if len(data) > limits.max_bytes:
        raise UnreadableFile(f"too large: {len(data) // (1024 * 1024)} MiB (limit {limits.max_bytes // (1024 * 1024)} MiB)")
    try:
        doc = parser(data, limits)
    except UnreadableFile:
        raise
    except Exception as exc:  # every library has its own exception zoo; the user needs one line
        raise UnreadableFile(f"cannot read it as {suffix[1:].upper()}: {type(exc).__name__}: {exc}") from exc
    if not any(b.text.strip() for b in doc.blocks):
        raise UnreadableFile("no text found in it")
    return doc

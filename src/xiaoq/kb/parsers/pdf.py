"""PDF via pypdf: the page text, its place in the outline (bookmarks), OCR for pages with no text.

The outline gives each page its heading path: an entry applies from where its title appears on its
page (or the page top) until the next entry. The anchor is ``page=N``, which PDF viewers open at
that page (``file.pdf#page=N``). A page with no text layer (a scan) is read through OCR from the
images it holds, when the ``ocr`` extra is installed.
"""

from __future__ import annotations

import io
import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional

from xiaoq.kb import ocr
from xiaoq.kb.parsers import Limits
from xiaoq.kb.parsers.plain import paragraphs
from xiaoq.kb.types import Block, ParsedDocument, UnreadableFile

#: A page whose text layer has fewer letters than this is treated as a scan.
MIN_TEXT_CHARS = 8
_SECTION_NUMBER = re.compile(r"(?:第\s*)?[0-9A-Z]+(?:\.[0-9]+)*\.?\s*$")
_SENTENCE_END = tuple("。！？：；.!?:;")
_DIGITS = re.compile(r"[0-9]+")


@dataclass
class OutlineEntry:
    title: str
    path: tuple[str, ...]
    page: int  # 0-based


def outline_entries(reader: Any) -> list[OutlineEntry]:
    """The bookmarks flattened in reading order, each with its full title path."""
    out: list[OutlineEntry] = []

    def walk(items: list[Any], parents: tuple[str, ...]) -> None:
        last: Optional[tuple[str, ...]] = None
        for item in items:
            if isinstance(item, list):
                walk(item, last if last is not None else parents)
                continue
            title = " ".join(str(item.title or "").split())
            try:
                page = reader.get_destination_page_number(item)
            except Exception:
                page = None
            last = (*parents, title)
            if page is not None and page >= 0 and title:
                out.append(OutlineEntry(title, last, page))

    try:
        walk(list(reader.outline), ())
    except Exception:  # a broken outline still leaves the text
        return []
    return sorted(out, key=lambda e: e.page)


def _page_text(page: Any) -> str:
    try:
        return page.extract_text() or ""
    except Exception:
        return ""


def _ocr_page(page: Any) -> str:
    if not ocr.available():
        return ""
    lines: list[str] = []
    for image in page.images:
        lines.extend(ocr.image_lines(image.data))
    return "\n".join(lines)


def _split_at_titles(text: str, entries: list[OutlineEntry]) -> list[tuple[Optional[OutlineEntry], str]]:
    """Cut one page's text where its outline titles start; the part before the first belongs to
    whatever section was open at the end of the previous page."""
    pieces: list[tuple[Optional[OutlineEntry], str]] = []
    current: Optional[OutlineEntry] = None
    pos = 0
    for entry in entries:
        at = text.find(entry.title, pos)
        if at < 0:
            at = pos  # title not found verbatim: the section starts where we are
        else:  # "2.6.6\n<title>": the number belongs to the section it opens
            number = _SECTION_NUMBER.search(text, pos, at)
            at = number.start() if number else at
        pieces.append((current, text[pos:at]))
        current, pos = entry, at
    pieces.append((current, text[pos:]))
    return pieces


def _is_cjk(ch: str) -> bool:
    return "\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\uff00" <= ch <= "\uffef"


def unwrap(text: str) -> str:
    """Join the visual lines of a PDF page back into paragraphs: a line that does not end a
    sentence continues on the next (without a space between CJK characters)."""
    out: list[str] = []
    for line in (ln.strip() for ln in text.splitlines()):
        if not line:
            out.append("\n")
        elif out and out[-1] not in ("\n",) and not out[-1].endswith(_SENTENCE_END) and not line.startswith(("•", "–", "-", "#")):
            glue = "" if _is_cjk(out[-1][-1]) or _is_cjk(line[0]) else " "
            out[-1] = out[-1] + glue + line
        else:
            out.append(line)
    return "\n\n".join(p for p in out if p != "\n")


def running_lines(pages: list[str]) -> set[str]:
    """Header and footer lines ("Debian 参考手册 62/ 223"): a first or last line that, digits
    ignored, repeats on more than a third of the pages."""
    if len(pages) < 3:
        return set()
    seen: Counter[str] = Counter()
    for text in pages:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        seen.update({_DIGITS.sub("#", ln) for ln in lines[:1] + lines[-1:]})
    return {line for line, n in seen.items() if n > len(pages) / 3}


def _drop_running(text: str, running: set[str]) -> str:
    return "\n".join(ln for ln in text.splitlines() if _DIGITS.sub("#", ln.strip()) not in running)


def parse(data: bytes, limits: Limits) -> ParsedDocument:
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        raise UnreadableFile("the PDF is encrypted")
    n_pages = len(reader.pages)
    if n_pages > limits.max_pages:
        raise UnreadableFile(f"too many pages: {n_pages} (limit {limits.max_pages})")
    entries = outline_entries(reader)
    blocks: list[Block] = []
    open_entry: Optional[OutlineEntry] = None
    texts = [_page_text(page) for page in reader.pages]
    running = running_lines(texts)
    for index, page in enumerate(reader.pages):
        text = _drop_running(texts[index], running)
        if len(text.strip()) < MIN_TEXT_CHARS:
            text = _ocr_page(page) or text
        on_page = [e for e in entries if e.page == index]
        for entry, part in _split_at_titles(text, on_page):
            section = entry or open_entry
            for para in paragraphs(unwrap(part)):
                blocks.append(Block(para, section.path if section else (), f"page={index + 1}", index + 1))
        if on_page:
            open_entry = on_page[-1]
    info = reader.metadata
    title = str(info.title) if info is not None and info.title else ""
    return ParsedDocument(blocks=blocks, pages=n_pages, title=title)

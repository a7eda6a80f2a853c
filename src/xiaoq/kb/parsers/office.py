"""Office formats: DOCX (python-docx), XLSX (openpyxl) and CSV (the csv module).

Spreadsheets hold office rules as tables, so each data row becomes one line ``header: value; ...``:
a passage then carries its column names and reads on its own. A sheet is a section named after it.
"""

from __future__ import annotations

import csv
import io
from typing import Iterable, Iterator, Optional

from xiaoq.kb.parsers import Limits
from xiaoq.kb.parsers.plain import decode
from xiaoq.kb.types import Block, ParsedDocument

ROWS_PER_BLOCK = 8


def _heading_level(style_name: str) -> Optional[int]:
    name = style_name.lower()
    if name == "title":
        return 1
    if name.startswith("heading"):
        digits = "".join(ch for ch in name if ch.isdigit())
        return int(digits) if digits else 1
    return None


def parse_docx(data: bytes, limits: Limits) -> ParsedDocument:
    import docx

    document = docx.Document(io.BytesIO(data))
    stack: list[tuple[int, str]] = []
    blocks: list[Block] = []
    for item in document.iter_inner_content():
        if hasattr(item, "rows"):  # a table
            rows = [" | ".join(c.text.strip() for c in row.cells) for row in item.rows]
            blocks.append(Block("\n".join(r for r in rows if r.strip(" |")), tuple(t for _, t in stack)))
            continue
        text = item.text.strip()
        level = _heading_level(item.style.name if item.style is not None else "")
        if level is not None and text:
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, text))
        elif text:
            blocks.append(Block(text, tuple(t for _, t in stack)))
    title = document.core_properties.title or (stack[0][1] if stack else "")
    return ParsedDocument(blocks=[b for b in blocks if b.text], title=title)


def _cell(value: object) -> str:
    return "" if value is None else " ".join(str(value).split())


def rows_to_blocks(rows: Iterable[Iterable[object]], heading: tuple[str, ...], max_rows: int) -> Iterator[Block]:
    """The first non-empty row is the header; the others become ``header: value`` lines, a few per block."""
    header: Optional[list[str]] = None
    lines: list[str] = []
    emitted = False
    for n, raw in enumerate(rows):
        if n >= max_rows:
            break
        cells = [_cell(v) for v in raw]
        if not any(cells):
            continue
        if header is None:
            header = cells
            continue
        pairs = [f"{h or f'#{i + 1}'}: {c}" for i, (h, c) in enumerate(zip(header + [""] * len(cells), cells)) if c]
        lines.append("; ".join(pairs))
        if len(lines) == ROWS_PER_BLOCK:
            yield Block("\n".join(lines), heading)
            lines, emitted = [], True
    if lines:
        yield Block("\n".join(lines), heading)
    elif header is not None and not emitted:
        yield Block(" | ".join(c for c in header if c), heading)


def parse_xlsx(data: bytes, limits: Limits) -> ParsedDocument:
    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        blocks: list[Block] = []
        for sheet in book.worksheets:
            blocks.extend(rows_to_blocks(sheet.iter_rows(values_only=True), (sheet.title,), limits.max_rows))
        return ParsedDocument(blocks=blocks)
    finally:
        book.close()


def parse_csv(data: bytes, limits: Limits) -> ParsedDocument:
    text = decode(data).replace("\x00", "")
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    return ParsedDocument(blocks=list(rows_to_blocks(csv.reader(io.StringIO(text), dialect), (), limits.max_rows)))

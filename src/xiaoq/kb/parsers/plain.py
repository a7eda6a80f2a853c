"""Plain text: paragraphs are separated by blank lines."""

from __future__ import annotations

import re

from xiaoq.kb.parsers import Limits
from xiaoq.kb.types import Block, ParsedDocument

_BLANK = re.compile(r"\n\s*\n")


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030 (Chinese Windows files), else Latin-1."""
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def paragraphs(text: str) -> list[str]:
    """Non-empty paragraphs of ``text``, NUL bytes dropped (they break SQLite text and FTS)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return [p.strip() for p in _BLANK.split(text) if p.strip()]


def parse(data: bytes, limits: Limits) -> ParsedDocument:
    return ParsedDocument(blocks=[Block(p) for p in paragraphs(decode(data))])

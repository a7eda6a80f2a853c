"""Markdown via markdown-it-py: headings make the heading path, their slugs the anchors.

Slugs follow GitHub's rule (lower case, punctuation dropped, spaces to ``-``, CJK kept, ``-1``,
``-2`` for repeats), which is what a Markdown viewer links ``#anchor`` to.
"""

from __future__ import annotations

import re
import unicodedata

from markdown_it import MarkdownIt
from markdown_it.token import Token

from xiaoq.kb.parsers import Limits
from xiaoq.kb.parsers.plain import decode
from xiaoq.kb.types import Block, ParsedDocument

_BLOCK_OPEN = {"paragraph_open", "bullet_list_open", "ordered_list_open", "table_open", "blockquote_open"}


def slugify(title: str, seen: dict[str, int]) -> str:
    """GitHub-style heading slug, unique within one document."""
    kept = "".join(ch for ch in title.strip().lower() if ch in " -_" or unicodedata.category(ch)[0] in "LNM")
    slug = re.sub(r" ", "-", kept)
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    return slug if n == 0 else f"{slug}-{n}"


class _Walker:
    """Walks the token stream keeping the heading stack; one block per top-level paragraph, list,
    table, quote or code fence."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, str]] = []
        self.anchor: str | None = None
        self.seen: dict[str, int] = {}
        self.blocks: list[Block] = []

    def heading(self, level: int, title: str) -> None:
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, title))
        self.anchor = slugify(title, self.seen)

    def add(self, text: str) -> None:
        if text.strip():
            self.blocks.append(Block(text.strip(), tuple(t for _, t in self.stack), self.anchor))


def _inline_text(tokens: list[Token]) -> str:
    """Text of the tokens between a block's open and close: one line per paragraph, list item or
    code line, and one ``a | b | c`` line per table row."""
    lines: list[str] = []
    row: list[str] | None = None
    for tok in tokens:
        if tok.type == "tr_open":
            row = []
        elif tok.type == "tr_close" and row is not None:
            lines.append(" | ".join(row))
            row = None
        elif tok.type in ("inline", "fence", "code_block"):
            text = tok.content.rstrip("\n")
            if row is not None:
                row.append(text)
            elif text.strip():
                lines.append(text)
    return "\n".join(lines)


def parse(data: bytes, limits: Limits) -> ParsedDocument:
    tokens = MarkdownIt("commonmark").enable("table").parse(decode(data).replace("\x00", ""))
    walker = _Walker()
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "heading_open":
            walker.heading(int(tok.tag[1]), tokens[i + 1].content.strip())
            i += 3
        elif tok.type in _BLOCK_OPEN and tok.level == 0:
            close = tok.type.replace("_open", "_close")
            j = i + 1
            while not (tokens[j].type == close and tokens[j].level == 0):
                j += 1
            walker.add(_inline_text(tokens[i + 1 : j]))
            i = j + 1
        elif tok.type in ("fence", "code_block", "html_block") and tok.level == 0:
            walker.add(tok.content)
            i += 1
        else:
            i += 1
    title = walker.blocks[0].heading[0] if walker.blocks and walker.blocks[0].heading else ""
    return ParsedDocument(blocks=walker.blocks, title=title)

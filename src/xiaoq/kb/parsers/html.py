"""HTML via BeautifulSoup: ``h1``–``h6`` make the heading path; the anchor is the id a browser can
jump to (the heading's own ``id``, an ``<a id|name>`` inside it, or its enclosing section's ``id``).
Navigation, tables of contents, scripts and styles are not content."""

from __future__ import annotations

from typing import Optional

from bs4 import BeautifulSoup, NavigableString, Tag

from xiaoq.kb.parsers import Limits
from xiaoq.kb.parsers.plain import decode
from xiaoq.kb.types import Block, ParsedDocument

HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
BLOCKS = frozenset({"p", "li", "pre", "blockquote", "dd", "dt", "tr", "figcaption", "caption", "td", "th"})
_SKIP_TAGS = ("script", "style", "noscript", "template", "nav", "head", "svg")
_SKIP_CLASSES = ("toc", "navheader", "navfooter", "list-of-tables", "list-of-figures", "list-of-examples")


def _anchor(h: Tag) -> Optional[str]:
    if h.get("id"):
        return str(h["id"])
    inner = h.find(lambda t: t.name == "a" and (t.get("id") or t.get("name")))
    if isinstance(inner, Tag):
        return str(inner.get("id") or inner.get("name"))
    for parent in h.parents:
        if isinstance(parent, Tag) and parent.get("id") and parent.name not in ("body", "html"):
            return str(parent["id"])
    return None


def _strip_noise(soup: BeautifulSoup) -> None:
    for tag in soup.find_all(_SKIP_TAGS):
        tag.decompose()
    for cls in _SKIP_CLASSES:
        for tag in soup.find_all(class_=cls):
            tag.decompose()


def _text(tag: Tag) -> str:
    sep = " | " if tag.name == "tr" else " "
    parts = (tag.find_all(["td", "th"]) if tag.name == "tr" else None) or [tag]
    cells = (" ".join(p.get_text(" ").split()) for p in parts)
    return sep.join(c for c in cells if c)


class _Walker:
    def __init__(self) -> None:
        self.stack: list[tuple[int, str]] = []
        self.anchor: Optional[str] = None
        self.blocks: list[Block] = []

    def heading(self, h: Tag) -> None:
        level, title = int(h.name[1]), " ".join(h.get_text(" ").split())
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, title))
        self.anchor = _anchor(h)

    def add(self, text: str) -> None:
        if text:
            self.blocks.append(Block(text, tuple(t for _, t in self.stack), self.anchor))

    def walk(self, node: Tag) -> None:
        """Depth-first: a block element is taken whole (unless it holds other blocks or headings),
        loose text between blocks becomes its own block."""
        loose: list[str] = []
        for child in node.children:
            if isinstance(child, NavigableString):
                loose.append(str(child))
                continue
            if not isinstance(child, Tag):
                continue
            if child.name in HEADINGS or child.name in BLOCKS or child.find(list(BLOCKS) + list(HEADINGS)):
                self.add(" ".join("".join(loose).split()))
                loose = []
            if child.name in HEADINGS:
                self.heading(child)
            elif child.name in BLOCKS and not child.find(list(BLOCKS - {"td", "th"}) + list(HEADINGS)):
                self.add(_text(child))
            elif child.find(list(BLOCKS) + list(HEADINGS)):
                self.walk(child)
            else:
                loose.append(child.get_text(" "))
        self.add(" ".join("".join(loose).split()))


def parse(data: bytes, limits: Limits) -> ParsedDocument:
    soup = BeautifulSoup(decode(data).replace("\x00", ""), "html.parser")
    title = " ".join(soup.title.get_text(" ").split()) if soup.title else ""
    _strip_noise(soup)
    walker = _Walker()
    walker.walk(soup.body or soup)
    return ParsedDocument(blocks=walker.blocks, title=title)

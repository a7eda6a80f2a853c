"""The small value types the knowledge-base pieces pass to each other."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from xiaoq.errors import InvalidRequest

#: Knowledge-base names: safe in URLs, paths and CLI arguments without quoting.
NAME_RE = re.compile(r"[a-z0-9_-]{1,64}")
DEFAULT_KB = "default"


def conversation_scope(conversation_id: str) -> str:
    """The internal knowledge base holding one conversation's attached files ('@' is never valid
    in a user's knowledge-base name, so the two can never collide)."""
    return f"@{conversation_id}"


def check_kb_name(name: str) -> str:
    """The name unchanged when valid; :class:`InvalidRequest` naming the rule otherwise."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidRequest(f"invalid knowledge base name {name!r}: use 1-64 of a-z, 0-9, '_' and '-'", code="invalid_kb_name")
    return name


class UnreadableFile(Exception):
    """A file that cannot be ingested; the message is the one line a user sees (and the rest goes on)."""


@dataclass
class Block:
    """One paragraph-sized piece of a document and where it sits.

    ``heading`` is the path of section titles above it (outermost first); ``anchor`` the id of the
    enclosing section when the format has one (HTML ``id``, Markdown heading slug), so a citation
    can link to ``source#anchor``; ``page`` is 1-based for paged formats.
    """

    text: str
    heading: tuple[str, ...] = ()
    anchor: Optional[str] = None
    page: Optional[int] = None


@dataclass
class ParsedDocument:
    """What a parser returns: the blocks in reading order, and the page count when paged."""

    blocks: list[Block] = field(default_factory=list)
    pages: Optional[int] = None
    title: str = ""


@dataclass
class Chunk:
    """A passage ready to index: its text, where it came from, and its place in the document."""

    text: str
    heading: tuple[str, ...]
    anchor: Optional[str]
    page: Optional[int]
    position: int
    tokens: int

    @property
    def heading_text(self) -> str:
        return " > ".join(self.heading)

    def index_text(self) -> str:
        """What search sees: the heading path helps a passage that never repeats its topic."""
        return f"{self.heading_text}\n{self.text}" if self.heading else self.text

"""Passages from blocks: within one section, paragraphs are packed up to a token target; a
paragraph too long on its own is cut at sentence ends (Chinese 。！？； as well as English . ! ?),
and each cut passage starts with the last sentences of the one before (overlap), so an answer that
straddles a cut is still whole in one passage.

Token counts are estimates (one per CJK character, about 1.3 per other word): close enough to
the chat model's and the embedder's tokenizers for packing, and free to compute while ingesting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import groupby
from typing import Iterable, Iterator

from xiaoq.kb.types import Block, Chunk

_CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_WORD = re.compile(r"[^\s\u2e80-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]+")
_SENTENCE_END = re.compile(r"[。！？；!?;]+[”’」』）)\]]*\s*|(?<=[^\s.])\.\s+|\n+")


@dataclass(frozen=True)
class ChunkSettings:
    """Passage size: about 200 tokens fits the e5 embedder's 512-token window with room, and keeps
    three or four passages inside a 600-token prompt budget."""

    target_tokens: int = 200
    max_tokens: int = 320
    overlap_tokens: int = 40


def _cost(text: str) -> float:
    return len(_CJK.findall(text)) + len(_WORD.findall(text)) * 1.3


def estimate_tokens(text: str) -> int:
    """Rough token count: CJK characters one each, other words 1.3 each."""
    return int(_cost(text) + 0.5)


def sentences(text: str) -> list[str]:
    """Sentences of ``text`` (delimiters kept), never empty strings; a run without any end mark
    longer than a passage is cut by length as a last resort."""
    out, pos = [], 0
    for m in _SENTENCE_END.finditer(text):
        out.append(text[pos : m.end()])
        pos = m.end()
    out.append(text[pos:])
    return [s for s in out if s.strip()] or [text]


def _hard_split(sentence: str, limit: int) -> list[str]:
    """A "sentence" over the limit (a table row dump, a URL list) cut into pieces of ~limit tokens."""
    if estimate_tokens(sentence) <= limit:
        return [sentence]
    words = re.findall(r"[\u2e80-\u9fff\uf900-\ufaff]|\S+\s*|\s+", sentence)
    pieces, buf, n = [], "", 0.0
    for w in words:
        cost = _cost(w)
        if n + cost > limit and buf:
            pieces.append(buf)
            buf, n = "", 0.0
        buf += w
        n += cost
    return pieces + ([buf] if buf.strip() else [])


def _units(blocks: Iterable[Block], limit: int) -> Iterator[tuple[str, int, bool]]:
    """(text, tokens, starts_paragraph) units: whole paragraphs when they fit, else their sentences."""
    for block in blocks:
        text = block.text.strip()
        n = estimate_tokens(text)
        if n <= limit:
            yield text, n, True
            continue
        first = True
        for sentence in sentences(text):
            for piece in _hard_split(sentence, limit):
                yield piece, estimate_tokens(piece), first
                first = False


def _overlap(parts: list[tuple[str, int, bool]], budget: int) -> list[tuple[str, int, bool]]:
    """The trailing units of a passage worth at most ``budget`` tokens (never the whole passage)."""
    tail: list[tuple[str, int, bool]] = []
    total = 0
    for part in reversed(parts[1:]):
        if total + part[1] > budget:
            break
        tail.insert(0, part)
        total += part[1]
    return tail


def _join(parts: list[tuple[str, int, bool]]) -> str:
    out = ""
    for text, _, starts_paragraph in parts:
        if not out:
            out = text
        elif starts_paragraph:
            out += "\n\n" + text
        else:
            out += text if _CJK.match(text[:1]) or out.endswith((" ", "\n")) else " " + text
    return out.strip()


def _section_chunks(blocks: list[Block], settings: ChunkSettings) -> Iterator[tuple[str, int]]:
    parts: list[tuple[str, int, bool]] = []
    total = 0
    for unit in _units(blocks, settings.max_tokens):
        if parts and total + unit[1] > settings.target_tokens:
            yield _join(parts), total
            # Overlap only where a paragraph was cut: whole paragraphs already stand alone.
            parts = [] if unit[2] else _overlap(parts, settings.overlap_tokens)
            total = sum(p[1] for p in parts)
        parts.append(unit)
        total += unit[1]
    if parts:
        yield _join(parts), total


def chunk_blocks(blocks: Iterable[Block], settings: ChunkSettings = ChunkSettings()) -> list[Chunk]:
    """Passages in reading order; a passage never crosses a heading (section anchor and page)."""
    out: list[Chunk] = []
    for (heading, anchor, page), group in groupby(blocks, key=lambda b: (b.heading, b.anchor, b.page)):
        for text, tokens in _section_chunks(list(group), settings):
            out.append(Chunk(text, heading, anchor, page, len(out), tokens))
    return out

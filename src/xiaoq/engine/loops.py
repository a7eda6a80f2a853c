"""Runaway repetition: a phrase or line repeating back to back, found as the reply is generated.

A 0.5B model at temperature 0.7 sometimes locks into a cycle ("坚固的防御路线、坚固的防御武器、" forty
times, one line over and over) and runs on to the length cap: seconds of CPU and a reply nobody
wants. :class:`LoopDetector` sees each generated symbol once (token ids in the engine, characters
when a finished text is cleaned) and says when the tail has become a repetition.

How it stays cheap: a back-to-back repetition with period ``p`` is a run of positions ``i`` where
``seq[i] == seq[i - p]``. The detector keeps, for every period with a live run, its length; a run at
``p`` can only continue when the new symbol also occurred ``p`` positions ago, so each step looks only
at the earlier positions of the *same* symbol within ``max_period`` (a handful) instead of at every
period. Nothing is rescanned; the cost per token is a few dictionary operations.

What counts (and what does not): a run triggers when it holds at least ``min_copies`` copies of the
unit, spans at least ``min_run`` repeated symbols, and the unit carries at least ``min_letters``
letters (letters or CJK characters). So "哈哈哈" or a chorus sung twice is too short, rows of a
Markdown table or numbers in a list differ from one another and never form a run, and
``0, 0, 0, …`` or ``|---|---|`` carry no letters. Only exact repeats count: what a person would call
"the same line again"; the repeated copies are what :attr:`Loop.keep` cuts away.

In the stream, :class:`StreamGuard` adds one line rule beside it (:class:`NumberedLines`): a list that
repeats one item, or cycles through a few, under growing numbers is the same lines again once the
numbers are left out, with the same thresholds.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Callable, Generic, Hashable, Optional, Sequence, TypeVar

T = TypeVar("T", bound=Hashable)


@dataclass(frozen=True)
class Loop:
    """A repetition found at the end of the symbols seen: copies of ``seq[start:start + period]``
    from ``start`` to ``end``. The first ``keep`` symbols read as the text without the repetition:
    everything up to one full copy, cut after a line or clause end when the unit has one (a cut
    anywhere in ``[start + period, start + 2 * period)`` keeps exactly one copy, rotated)."""

    start: int
    period: int
    end: int
    keep: int


@dataclass(frozen=True)
class LoopRules:
    """When a back-to-back run counts as a runaway repetition."""

    min_copies: int = 3
    min_run: int = 40
    max_period: int = 128
    min_period: int = 1
    min_letters: int = 2


#: For generated tokens: at least three copies and 40 repeated tokens (a few lines of text).
TOKEN_RULES = LoopRules()
#: For a finished text, character by character: three copies of a 3-60 character phrase.
TEXT_RULES = LoopRules(min_copies=3, min_run=0, max_period=60, min_period=3)


class LoopDetector(Generic[T]):
    """Feed symbols one by one with :meth:`push`; it returns a :class:`Loop` once the tail is a
    runaway repetition (and keeps returning it while the repetition goes on).

    ``letters(symbol)`` says how many letters a symbol holds (a token's text, a character);
    ``boundary(symbol)`` ranks where the kept text is best cut: 2 after a line, 1 after a sentence,
    0 elsewhere.
    """

    def __init__(self, letters: Callable[[T], int], rules: LoopRules = TOKEN_RULES, boundary: Optional[Callable[[T], int]] = None):
        self.rules = rules
        self._letters = letters
        self._boundary = boundary
        self._seq: list[T] = []
        self._where: dict[T, deque[int]] = {}
        self._runs: dict[int, int] = {}
        self._wordless: set[int] = set()

    def __len__(self) -> int:
        return len(self._seq)

    def push(self, sym: T) -> Optional[Loop]:
        i = len(self._seq)
        self._seq.append(sym)
        where = self._where.setdefault(sym, deque())
        while where and i - where[0] > self.rules.max_period:
            where.popleft()
        runs = {i - q: self._runs.get(i - q, 0) + 1 for q in where}
        where.append(i)
        self._wordless = {p for p in self._wordless if p in runs}
        self._runs = runs
        return self._found(i)

    def _found(self, i: int) -> Optional[Loop]:
        r = self.rules
        best: Optional[Loop] = None
        for p, run in self._runs.items():
            if p < r.min_period or run < max(r.min_run, (r.min_copies - 1) * p) or p in self._wordless:
                continue
            if best is not None and p >= best.period:
                continue
            if sum(self._letters(s) for s in self._seq[i - p + 1 : i + 1]) < r.min_letters:
                self._wordless.add(p)
                continue
            start = i + 1 - run - p
            best = Loop(start=start, period=p, end=i + 1, keep=self._cut(start + p, p))
        return best

    def _cut(self, keep: int, p: int) -> int:
        if self._boundary is None:
            return keep
        best, rank = keep, 0
        for k in range(keep, keep + p):
            r = self._boundary(self._seq[k - 1])
            if r > rank:
                best, rank = k, r
        return best


def _char_letters(ch: str) -> int:
    return 1 if ch.isalpha() else 0


#: Where a sentence ends: a good place to cut a repetition (after a line end is better). Commas are
#: not: "丝绸、瓷器、瓷器、瓷器" reads best as "丝绸、瓷器", not "丝绸、瓷器、".
SENTENCE_ENDS = frozenset("。！？；.!?;")


def boundary_rank(text: str) -> int:
    """How good a cut after ``text`` (a character or a token's text) is: 2 line end, 1 sentence end."""
    tail = text.rstrip(" ")
    if tail.endswith("\n"):
        return 2
    return 1 if tail[-1:] in SENTENCE_ENDS else 0


def piece_letters(piece: bytes) -> int:
    """Letters in a token's bytes; a token holding only part of a CJK character counts as one."""
    n = sum(ch.isalpha() for ch in piece.decode("utf-8", errors="ignore"))
    return n or (1 if any(b >= 0xE0 for b in piece) else 0)


def piece_boundary(piece: bytes) -> int:
    return boundary_rank(piece.decode("utf-8", errors="ignore"))


def find_loops(seq: Sequence[T], letters: Callable[[T], int], rules: LoopRules, boundary: Optional[Callable[[T], int]] = None) -> list[Loop]:
    """Every runaway repetition in a finished sequence, each extended to where its copies end."""
    found: list[Loop] = []
    i, n = 0, len(seq)
    detector: LoopDetector[T] = LoopDetector(letters, rules, boundary)
    base = 0
    while i < n:
        hit = detector.push(seq[i])
        i += 1
        if hit is None:
            continue
        p = hit.period
        while i < n and seq[i] == seq[i - p]:
            i += 1
        found.append(Loop(start=base + hit.start, period=p, end=i, keep=base + hit.keep))
        detector, base = LoopDetector(letters, rules, boundary), i
    return found


def trim_loops(text: str) -> str:
    """``text`` with every runaway repetition collapsed to one copy (for texts a model wrote in
    one go, such as summaries, where nothing was streamed yet)."""
    parts: list[str] = []
    at = 0
    for loop in find_loops(text, _char_letters, TEXT_RULES, boundary_rank):
        parts.append(text[at : loop.keep])
        at = loop.end
    parts.append(text[at:])
    return "".join(parts).strip()


#: What opens a list item and is not its content: a marker (``-``, ``*``, ``+``, ``•``), a number
#: in digits or Chinese numerals ("五、", "（十二）") with ``.``/``、``/``)`` (not a decimal such as
#: ``1.5``), or both.
_ENUMERATOR = re.compile(r"^\s*(?:[-*+•]\s+)?(?:[(（]?(?:\d{1,4}|[一二三四五六七八九十百零〇两]{1,4})[.．、)）](?!\d))?\s*")


def line_content(line: str) -> str:
    """A line without its list marker or item number: what makes two list items the same."""
    return _ENUMERATOR.sub("", line, count=1).rstrip()


class NumberedLines:
    """Lines that repeat back to back once their item numbers are left out: one item ("12. X",
    "13. X", …) or a cycle of a few ("20. A", "21. B", "22. C", "23. A", …), a runaway list the token
    detector cannot see, since each copy's numbers differ.

    The finished lines, numbers left out, go through a :class:`LoopDetector` of their own (a cycle
    of up to ``max_lines`` lines: the model also cycles through a few sections of a heading and two
    sub-items) with the token detector's thresholds: ``min_copies`` copies,
    ``min_run`` tokens in the copies after the first, ``min_letters`` letters in the repeated lines.
    Blank lines between items do not break a run; a table row (``| 3 | x |``) keeps its number, so
    rows stay different. Each token costs a check for a newline; a line's text is looked at once,
    when it ends.
    """

    def __init__(self, rules: LoopRules = TOKEN_RULES, max_lines: int = 16):
        self.rules = rules
        self._line = bytearray()
        self._detector: LoopDetector[str] = LoopDetector(_letters, LoopRules(min_copies=rules.min_copies, min_run=0, max_period=max_lines, min_letters=rules.min_letters))
        self._ends: list[int] = []

    def push(self, piece: bytes, seen: int) -> Optional[int]:
        """Record a token (``seen`` tokens in all, this one included); when the lines have become a
        runaway, how many tokens to keep (through the first copy)."""
        if b"\n" not in piece:
            self._line += piece
            return None
        head, *_, tail = piece.split(b"\n")
        line = (bytes(self._line) + head).decode("utf-8", errors="ignore")
        self._line = bytearray(tail)
        if not line.strip():
            return None
        self._ends.append(seen if not tail.strip() else seen - 1)
        hit = self._detector.push(line_content(line))
        if hit is None or self._ends[-1] - self._ends[hit.start + hit.period - 1] < self.rules.min_run:
            return None
        return self._ends[hit.keep - 1]


def _letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


class StreamGuard:
    """The detector on one generation's tokens, and where its text should end when it loops.

    The text of a token is not always out when the token is: a half UTF-8 character or the start
    of a stop string waits for the next one. So the guard is told, after each token, how many
    characters the stream has sent in all, and answers in characters of that text.
    """

    def __init__(self, piece: Callable[[int], bytes], rules: LoopRules = TOKEN_RULES):
        self._piece = piece
        self._detector: LoopDetector[int] = LoopDetector(lambda t: piece_letters(piece(t)), rules, lambda t: piece_boundary(piece(t)))
        self._lines = NumberedLines(rules)
        self._sent: list[int] = []

    def push(self, token: int, chars_sent: int) -> Optional[int]:
        """Record ``token``; when the reply has become a runaway repetition, the number of leading
        characters of the sent text to keep (the rest repeats what it kept)."""
        self._sent.append(chars_sent)
        hit = self._detector.push(token)
        keep = hit.keep if hit is not None else self._lines.push(self._piece(token), len(self._sent))
        if keep is None:
            return None
        return self._sent[keep - 1] if keep > 0 else 0

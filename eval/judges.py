"""Offline judges of one reply's text: runaway loop, language, Python blocks, prose in code fences.

They read only the final text (and the reply's ``finish_reason``), so a report can be recomputed
from stored results without generating again. The loop judge deliberately shares nothing with the
product's loop guard (``xiaoq.chat.loops``): it works on characters, not tokens, and with other
rules (exact periodic runs, and runs of near-identical clauses), so the eval cannot agree with the
guard merely because it is the guard.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Optional

# --- loops --------------------------------------------------------------------------------------

#: An exact back-to-back repeat is a loop when its copies span at least this many characters ...
MIN_LOOP_SPAN = 100
#: ... with at least this many copies of a unit holding two or more letters / CJK characters.
MIN_LOOP_COPIES = 4
MAX_PERIOD = 200

_CLAUSE_SPLIT = re.compile(r"[、，。；！？,;!?\n]+|\.(?=\s)")
_DIGITS = re.compile(r"\d+")
#: A run of this many near-identical clauses back to back is a loop (e.g. "坚固的防御路线、坚固的防御武器、…").
MIN_CLAUSE_RUN = 8
MIN_CLAUSE_RUN_CHARS = 80


def _letters(s: str) -> int:
    return sum(ch.isalpha() for ch in s)


def exact_repeat(text: str) -> Optional[tuple[int, int, int]]:
    """(start, period, span) of the longest back-to-back exact repetition that counts as a loop."""
    s = re.sub(r"\s+", " ", text)
    n = len(s)
    best: Optional[tuple[int, int, int]] = None
    for p in range(1, min(MAX_PERIOD, n // 2) + 1):
        run = 0
        for i in range(n - p):
            if s[i] == s[i + p]:
                run += 1
                continue
            best = _better(best, s, i - run, p, run)
            run = 0
        best = _better(best, s, n - p - run, p, run)
    return best


def _better(best: Optional[tuple[int, int, int]], s: str, start: int, p: int, run: int) -> Optional[tuple[int, int, int]]:
    span = run + p
    if run < (MIN_LOOP_COPIES - 1) * p or span < MIN_LOOP_SPAN or _letters(s[start : start + p]) < 2:
        return best
    if best is None or span > best[2]:
        return (start, p, span)
    return best


def _bigrams(s: str) -> set[str]:
    return {s[i : i + 2] for i in range(len(s) - 1)}


def _similar(a: str, b: str) -> bool:
    ga, gb = _bigrams(a), _bigrams(b)
    if not ga or not gb:
        return a == b and _letters(a) >= 2
    return len(ga & gb) / max(len(ga), len(gb)) >= 0.75


def clause_run(text: str) -> int:
    """Characters covered by the longest run of near-identical clauses back to back (0 if too short).

    Clauses are split at punctuation and newlines, digits are dropped (so "step 1", "step 2" do not
    count as different), and two clauses are near-identical when they share most of their character
    bigrams (75 %). Markdown table rows and list items differ in their content cells and do not qualify.
    """
    clauses = [_DIGITS.sub("", c).strip(" *-#|`>") for c in _CLAUSE_SPLIT.split(text)]
    clauses = [c for c in clauses if c]
    best = run = chars = 0
    for i in range(1, len(clauses)):
        if _similar(clauses[i], clauses[i - 1]) or (i >= 2 and _similar(clauses[i], clauses[i - 2])):
            run = run + 1 if run else 2
            chars = chars + len(clauses[i]) if run > 2 else len(clauses[i]) + len(clauses[i - 1])
        else:
            run = chars = 0
        if run >= MIN_CLAUSE_RUN and chars >= MIN_CLAUSE_RUN_CHARS:
            best = max(best, chars)
    return best


def is_loop(text: str, ran_to_cap: bool = False) -> bool:
    """A runaway repetition: an exact phrase or line repeated back to back (four copies, 100
    characters), or, in a reply that ran on to the length cap, a long run of near-identical clauses
    (near-identical alone would also flag a long table whose rows differ in one cell)."""
    return exact_repeat(text) is not None or (ran_to_cap and clause_run(text) > 0)


# --- language -----------------------------------------------------------------------------------

_FENCED = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?(^ {0,3}\1[ \t]*$|\Z)", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code."""
    return _INLINE_CODE.sub(" ", _FENCED.sub(" ", text))


def reply_language(text: str, fenced_is_prose: bool = False) -> str:
    """"zh" or "en" by the prose's Han characters vs Latin letters (a Han character weighs as much
    as four letters, about one English word); "none" when there is no prose. Code blocks do not
    count, unless ``fenced_is_prose`` (a reply that needs no code: an email in a fence is prose)."""
    p = text if fenced_is_prose else prose(text)
    han, latin = len(_HAN.findall(p)), len(_LATIN.findall(p))
    if han == 0 and latin == 0:
        return "none"
    return "zh" if han * 4 >= latin else "en"


# --- code blocks --------------------------------------------------------------------------------


@dataclass
class Block:
    info: str
    code: str
    closed: bool


_OPEN = re.compile(r"^(\s*(?:(?:[-*+]|\d+[.)])\s+)*)(`{3,}|~{3,})([^`\n]*)$")


def code_blocks(text: str) -> list[Block]:
    """Fenced blocks as a Markdown renderer sees them: a fence nested in a list item is indented,
    and its content loses that indentation (CommonMark strips up to the fence's own indent)."""
    lines = text.split("\n")
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m.group(1)), m.group(2), m.group(3).strip()
        body: list[str] = []
        i += 1
        closed = False
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                closed = True
                i += 1
                break
            line = lines[i]
            cut = len(line) - len(line.lstrip(" "))
            body.append(line[min(cut, indent) :])
            i += 1
        out.append(Block(info=info.split()[0].lower() if info else "", code="\n".join(body), closed=closed))
    return out


def python_blocks(text: str) -> list[Block]:
    return [b for b in code_blocks(text) if b.info in ("python", "py", "python3")]


def parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def fenced_prose(text: str) -> bool:
    """A reply that puts prose in a code fence (an email, poem or translation wrapped in ```python
    or ```text): any fenced block in a reply to a request that needs no code."""
    return bool(code_blocks(text))


@dataclass(frozen=True)
class LengthChange:
    """Prompts whose mean reply is more than 10 % shorter than before, of those compared, and the
    ratio of the total lengths (after / before)."""

    shorter: int
    compared: int
    total_ratio: float


def mean_lengths(rows: list[dict], sample: Optional[int] = None) -> dict[str, float]:
    """Mean reply length in characters per prompt id (failed replies left out), over every sample
    or over one (``sample``: the number after ``#`` in a row's key)."""
    acc: dict[str, list[int]] = {}
    for r in rows:
        if not r["error"] and (sample is None or r["key"].endswith(f"#{sample}")):
            acc.setdefault(r["id"], []).append(len(r["text"]))
    return {k: sum(v) / len(v) for k, v in acc.items()}


def length_change(before: dict[str, float], after: dict[str, float], leave_out: frozenset[str] | set[str] = frozenset()) -> LengthChange:
    """Compare the prompts both have, except ``leave_out`` (e.g. prompts whose reply looped or ran
    to the cap before: shortening those is the point). One sampled reply's length varies a lot,
    so read this next to the same figure between two samples of one run (the noise)."""
    common = [k for k in after if k in before and before[k] > 0 and k not in leave_out]
    shorter = sum(after[k] < 0.9 * before[k] for k in common)
    total = sum(before[k] for k in common)
    return LengthChange(shorter, len(common), sum(after[k] for k in common) / total if total else 0.0)


def ratio_by_kind(before: dict[str, float], after: dict[str, float], kinds: dict[str, str], leave_out: frozenset[str] | set[str] = frozenset()) -> dict[str, float]:
    """:func:`length_change`'s total ratio within each kind of prompt (``kinds``: prompt id → kind),
    since one kind growing (longer code) can hide another shrinking (lists cut to titles)."""
    out: dict[str, float] = {}
    for kind in sorted(set(kinds.values())):
        ids = {k for k, v in kinds.items() if v == kind}
        change = length_change({k: v for k, v in before.items() if k in ids}, {k: v for k, v in after.items() if k in ids}, leave_out)
        if change.compared:
            out[kind] = change.total_ratio
    return out

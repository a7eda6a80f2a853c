"""Word error rate, for the speech benchmark and the tests that hold ASR to a figure.

Words are compared after lower-casing and dropping punctuation, as WER is usually reported;
Chinese has no spaces, so each CJK character counts as a word (character error rate).
"""

from __future__ import annotations

import re
from typing import Iterable

_TOKEN = re.compile(r"[\u3400-\u9fff]|[a-z0-9']+")


def words(text: str) -> list[str]:
    """Lower-cased words (and single CJK characters), punctuation dropped."""
    return _TOKEN.findall(text.lower().replace("’", "'"))


def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance over words: substitutions, insertions and deletions."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def word_error_rate(pairs: Iterable[tuple[str, str]]) -> float:
    """Total word edits over total reference words, for (reference, hypothesis) pairs."""
    edits = total = 0
    for ref, hyp in pairs:
        r = words(ref)
        edits += edit_distance(r, words(hyp))
        total += len(r)
    return edits / total if total else 0.0

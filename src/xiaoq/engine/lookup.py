"""Prompt lookup: draft the next tokens of a reply from an earlier place in the same sequence.

Answers that quote their context (a passage of a knowledge-base answer, the function being fixed,
the sentence being summarized) repeat runs of tokens that are already in the prompt. When the
last few tokens of the sequence occurred before, the tokens that followed them then are a cheap
guess for what comes next. The scheduler checks the guess in one batch (on a CPU, a 0.5B model
evaluates k rows for little more than the cost of one, since reading the weights dominates) and
keeps the longest prefix the model agrees with, so greedy output is what it would have been.

No draft model is needed. The search is a byte search (C speed) over the int32 tokens, newest
occurrence first: a quote continues where it was last seen.
"""

from __future__ import annotations

from array import array
from typing import Sequence

#: Longest and shortest suffix searched for (longer first: a longer match predicts better).
NGRAM_MAX = 4
NGRAM_MIN = 2


def find_draft(tokens: Sequence[int], n_max: int, *, ngram_max: int = NGRAM_MAX, ngram_min: int = NGRAM_MIN) -> list[int]:
    """Up to ``n_max`` tokens that followed the newest earlier occurrence of the sequence's last
    ``ngram_max`` .. ``ngram_min`` tokens; [] when none occurred before."""
    if n_max <= 0 or len(tokens) <= ngram_min:
        return []
    hist = array("i", tokens).tobytes()
    for n in range(min(ngram_max, len(tokens) - 1), ngram_min - 1, -1):
        start = _newest_earlier(hist, n)
        if start >= 0:
            return list(tokens[start + n : start + n + n_max])
    return []


def _newest_earlier(hist: bytes, n: int) -> int:
    """Token index of the newest occurrence of the last ``n`` tokens that ends before the end."""
    pattern = hist[-4 * n :]
    end = len(hist) - 4  # the occurrence must be followed by at least one token
    while end >= len(pattern):
        i = hist.rfind(pattern, 0, end)
        if i < 0:
            return -1
        if i % 4 == 0:
            return i // 4
        end = i + len(pattern) - 1  # a match across token boundaries: look further back
    return -1


#: Longest pause (in decode steps) of a reply's drafting after drafts keep failing.
PAUSE_MAX = 32


class DraftSize:
    """How many tokens to draft for one reply: doubled after a fully accepted draft, halved after
    a rejected one, so ordinary chat (few matches hold) spends few extra rows and a quote runs on
    long drafts.

    A one-token draft rejected outright also pauses drafting for a few steps (2, 4, … up to
    ``PAUSE_MAX``; any accepted draft ends the pauses): a draft row is a logits row and a Python
    check each step, which ordinary answers paid for nothing (quiet bench: 0.94 of no drafting on
    an ordinary answer, target ≥ 0.98)."""

    def __init__(self, n_max: int):
        self.n_max = n_max
        self.n = max(1, n_max // 2)
        self.pause = 0  # the next pause's length in steps (0: none yet)
        self.skip = 0  # steps left in the current pause

    def ready(self) -> bool:
        """Whether to draft at this step (counts a paused step down)."""
        if self.skip > 0:
            self.skip -= 1
            return False
        return True

    def update(self, drafted: int, accepted: int) -> None:
        if drafted == 0:
            return
        if accepted > 0:
            self.pause = 0
        if accepted == drafted:
            self.n = min(self.n_max, self.n * 2)
        elif accepted == 0:
            if self.n == 1:
                self.pause = min(PAUSE_MAX, max(2, self.pause * 2))
                self.skip = self.pause
            self.n = max(1, self.n // 2)

"""Prompt lookup: draft the next tokens of a reply from an earlier place in the same sequence.

Answers that quote their context (a passage of a knowledge-base answer, the function being fixed,
the sentence being summarized) repeat runs of tokens that are already in the prompt. When the
last few tokens of the sequence occurred before, the tokens that followed them then are a cheap
guess for what comes next. The scheduler checks the guess in one batch and keeps the longest
prefix the model agrees with, so greedy output is what it would have been. A row of a batch costs
less than a step of its own, but on a small CPU not much less (the 0.5B model's matmuls are
compute-bound there: 8 rows cost ~4x one row, 48 rows ~17x), so drafts must be long and likely:
their length follows how long the match already is.

No draft model is needed. The search is a byte search (C speed) over the int32 tokens, newest
occurrence first: a quote continues where it was last seen.
"""

from __future__ import annotations

from array import array
from typing import Sequence

#: Shortest run of the sequence's last tokens that must have occurred before for a draft. Shorter
#: matches (2-4 tokens: "the", "of the", an indent) predict a continuation too rarely to pay for
#: the rows: on this kind of CPU decoding is compute-bound, so checking k draft rows costs about
#: half as much per row as k steps for small k, not next to nothing (measured: 2 rows 1.85x one row,
#: 8 rows 4.1x, 48 rows 17x).
NGRAM_MIN = 5
#: How far back a match is measured (its length sets the draft's).
MATCH_MAX = 64
#: Tokens drafted per matched token: a quote that has run for l tokens is likely to run on for
#: about as many again, a short match earns a short draft.
DRAFT_PER_MATCH = 2
#: A match at least this long is a quote under way: it drafts the whole ``n_long`` at once rather
#: than twice its length (llama.cpp's ngram-simple drafts 48 tokens after a 12-token match).
LONG_MATCH = 12


def find_draft(tokens: Sequence[int], n_max: int, *, n_long: int = 0, ngram_min: int = NGRAM_MIN,
               long_match: int = LONG_MATCH) -> list[int]:
    """The tokens that followed the newest earlier occurrence of the sequence's last ``ngram_min``
    tokens: at most ``n_max`` and at most ``DRAFT_PER_MATCH`` times the length of the match there
    (measured backwards up to ``MATCH_MAX``); a match of ``long_match`` tokens or more may draft
    up to ``n_long`` instead; [] when those tokens did not occur before.

    Offline, on greedy replies of the real model (``bench/lookup_sim.py``), this rule drafted
    answers that quote their prompt 1.13-2.81x as fast as no drafting, against 1.03-1.90 for the
    earlier "newest 4..2-gram, 8 tokens" rule and 1.19-2.62 for llama.cpp's ngram-simple (a
    12-token match, 48 tokens); the ``n_long`` step added 0.00-0.06 (one prompt -0.01)."""
    if n_max <= 0 or len(tokens) <= ngram_min:
        return []
    start = _newest_earlier(array("i", tokens).tobytes(), ngram_min)
    if start < 0:
        return []
    length = ngram_min
    end = len(tokens) - 1
    while length < MATCH_MAX and start - (length - ngram_min) - 1 >= 0 \
            and tokens[start - (length - ngram_min) - 1] == tokens[end - length]:
        length += 1
    n = min(n_max, DRAFT_PER_MATCH * length)
    if length >= long_match:
        n = max(n, n_long)
    return list(tokens[start + ngram_min : start + ngram_min + n])


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

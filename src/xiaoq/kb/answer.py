"""Grounding an answer: the passages that fit the budget, put into the LAST user message as data,
and the citations the reply carries.

Where the passages go, and why: after the stable prefix (system prompt, earlier turns), inside the
user message of this turn only, in a block labelled as data (a document saying "ignore your
instructions" is a passage to quote, not an instruction). The block comes before the question and
lists its passages in reading order (source, position), so the same passage set gives the same
tokens whatever the question: many employees ask the same few things, and the engine's KV cache
then reuses the whole block and prefills only the question.

How the model is told (:func:`grounded_messages`): XiaoQ's rules go in the system message, in the
reply's language, and two worked turns come before the conversation (:mod:`xiaoq.kb.prompts`: a
refusal and a cited answer, or, once the retrieval gate passed, a partial and a cited answer);
both depend only on that language and the mode, so they are part of the cached prefix.
The user message holds just the data block and the labelled question. With the rules between the
passages and the question, in both languages, the 0.5B model answered with a bare "[1]" and never
refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from xiaoq.chat.language import Language, reply_language
from xiaoq.chat.prompt import data_text as data_block  # the one format of every data block
from xiaoq.engine.types import ChatMessage
from xiaoq.kb.gate import answerable
from xiaoq.kb.prompts import ANSWER_PASSAGES, ANSWER_RULES, ANSWER_TURNS, JUDGE_PASSAGES, JUDGE_TURNS, REFUSAL, RULES
from xiaoq.kb.retrieve import Hit, Retriever, snippet

#: Passages retrieved before the budget picks; more rarely fit 600 tokens.
CANDIDATES = 8
DATA_LABEL = "retrieved passages"

QUESTION_LABEL: dict[Language, str] = {"zh": "问题：", "en": "Question: "}


@dataclass
class Grounding:
    """The passages chosen for one turn, numbered, and the user message that carries them."""

    question: str
    passages: list[Hit] = field(default_factory=list)
    retrieved: list[Hit] = field(default_factory=list)
    content: str = ""
    #: The retrieval gate's verdict (:mod:`xiaoq.kb.gate`): False, the passages cannot answer and
    #: the reply is :attr:`refusal` without the model; True, they can; None, no gate ran.
    answerable: Optional[bool] = None

    @property
    def refusal(self) -> Optional[str]:
        """The reply decided without the model (the fixed refusal in the question's language), if any."""
        return REFUSAL[reply_language(self.question)] if self.answerable is False else None

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

    def fields(self, retrieved: str = "retrieved") -> dict[str, Any]:
        """What a reply carries: ``citations`` and what was retrieved (under ``retrieved``: the
        stored message names it ``retrieval``)."""
        return {"citations": self.citations(), retrieved: self.retrieval_report()}

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
    """The user message: the passages as data, then the question (labelled in its language)."""
    body = "\n\n".join(format_passage(n, h) for n, h in enumerate(passages, 1)) or "(no passage matched)"
    return _user(reply_language(question), body, question)


def _user(lang: Language, body: str, question: str) -> str:
    return f"{data_block(DATA_LABEL, body)}\n\n{QUESTION_LABEL[lang]}{question}"


def example_turns(lang: Language, answer: bool = False) -> list[ChatMessage]:
    """The worked turns in ``lang`` (:mod:`xiaoq.kb.prompts`). Judge mode: the refusal (one passage,
    beside the point), then the cited answer (two passages). ``answer`` mode (the retrieval gate
    passed): a question the passages cover in part, answered in part, then a cited answer, both
    over all three passages."""
    first, second = ANSWER_TURNS[lang] if answer else JUDGE_TURNS[lang]
    passages: tuple[str, ...] = ANSWER_PASSAGES[lang] if answer else JUDGE_PASSAGES[lang]
    both = "\n\n".join(passages)
    return [
        ChatMessage(role="user", content=_user(lang, both if answer else passages[0], first[0])),
        ChatMessage(role="assistant", content=first[1]),
        ChatMessage(role="user", content=_user(lang, both, second[0])),
        ChatMessage(role="assistant", content=second[1]),
    ]


def grounded_messages(messages: Sequence[ChatMessage], grounding: "Grounding") -> list[ChatMessage]:
    """``messages`` answered from ``grounding``: the rules after the system prompt (or as it), the
    worked turns before the conversation, the last user message replaced by the grounded one. All
    but the last message depend only on the reply's language, so the prefix stays cached."""
    head = [m for m in messages[:1] if m["role"] == "system"]
    answer = grounding.answerable is True
    system = grounded_system(head[0]["content"] if head else "", grounding.question, answer)
    past = list(messages[len(head) : -1])
    turns = example_turns(reply_language(grounding.question), answer)
    return [ChatMessage(role="system", content=system), *turns, *past, ChatMessage(role="user", content=grounding.content)]


def grounded_system(system: str, question: str, answer: bool = False) -> str:
    """The system message of an answer from passages: the operator's prompt (if any), then XiaoQ's
    rules in the reply's language (``answer``: the mode without refusal, once the gate passed)."""
    rules = ANSWER_RULES if answer else RULES
    return "\n\n".join(t for t in [system, rules[reply_language(question)]] if t)


def ground(retriever: Retriever, kb_ids: Sequence[int], question: str, budget: int, count: Callable[[str], int], threshold: float = 0.0) -> Grounding:
    """Retrieve, judge whether the candidates can answer (``threshold``: :mod:`xiaoq.kb.gate`),
    choose within ``budget`` tokens, and compose (blocking: run it in a thread). A refused question
    keeps what was retrieved (the user sees why) and gets no passages, so no citations."""
    hits = retriever.search(kb_ids, question, k=CANDIDATES) if kb_ids else []
    verdict = answerable(hits, threshold)
    chosen = select(hits, budget, count) if verdict is not False else []
    return Grounding(question, chosen, hits, compose(question, chosen), verdict)

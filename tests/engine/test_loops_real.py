"""The loop detector over the real Qwen2.5 tokenizer (``XIAOQ_TEST_MODEL``): the legitimate and
held-out texts of test_loops.py stay silent as real token ids, real loops are found and cut to one
copy."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from xiaoq.engine.context import LlamaModel
from xiaoq.engine.loops import LoopDetector, piece_boundary, piece_letters

from tests.engine.test_loops import HELD_OUT, LEGITIMATE

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def model(real_model_path: Path) -> Iterator[LlamaModel]:
    m = LlamaModel(real_model_path, n_ctx_per_seq=256, n_seq=1, n_batch=32, n_threads=1)
    yield m
    m.close()


def first_hit(model: LlamaModel, text: str):
    toks = model.tokenize(text, add_special=False, parse_special=False)
    d: LoopDetector[int] = LoopDetector(lambda t: piece_letters(model.token_bytes(t)), boundary=lambda t: piece_boundary(model.token_bytes(t)))
    for i, t in enumerate(toks):
        hit = d.push(t)
        if hit:
            return i, b"".join(model.token_bytes(x) for x in toks[: hit.keep]).decode("utf-8", "replace")
    return None


@pytest.mark.parametrize("name", sorted(LEGITIMATE) + sorted(HELD_OUT))
def test_legitimate_repetition_as_real_tokens(model: LlamaModel, name: str) -> None:
    assert first_hit(model, {**LEGITIMATE, **HELD_OUT}[name]) is None


@pytest.mark.parametrize(
    "head,unit",
    [
        ("防御体系包括：", "坚固的防御路线、坚固的防御武器、"),
        ("Steps:\n", "Open the file and read the next line.\n"),
        ("def f():\n", "    return f()\n"),
    ],
)
def test_real_loops_are_found_and_cut_to_one_copy(model: LlamaModel, head: str, unit: str) -> None:
    found = first_hit(model, head + unit * 40)
    assert found is not None
    kept = found[1]
    assert kept.startswith(head) and kept.count(unit.strip()) == 1, kept
    assert len(kept) <= len(head) + 2 * len(unit)


def test_a_laugh_that_runs_away_is_found_but_a_long_one_is_not(model: LlamaModel) -> None:
    assert first_hit(model, "太好笑了" + "哈" * 30) is None
    found = first_hit(model, "太好笑了" + "哈" * 400)
    assert found is not None and found[1].startswith("太好笑了") and len(found[1]) < 40

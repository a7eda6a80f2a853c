"""Prompt lookup drafting (``engine/lookup.py``) and its check in the scheduler: the greedy output
is the same with and without drafting (under --deterministic), and drafts are really accepted."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from xiaoq.engine.lookup import DraftSize, find_draft


def reference_draft(tokens: list[int], n_max: int, ngram_max: int = 4, ngram_min: int = 2) -> list[int]:
    """The obvious quadratic version: newest earlier occurrence of the longest suffix that has one."""
    if n_max <= 0 or len(tokens) <= ngram_min:
        return []
    for n in range(min(ngram_max, len(tokens) - 1), ngram_min - 1, -1):
        suffix = tokens[-n:]
        for start in range(len(tokens) - n - 1, -1, -1):
            if tokens[start:start + n] == suffix:
                return tokens[start + n:start + n + n_max]
    return []


def test_draft_continues_the_newest_earlier_occurrence():
    assert find_draft([7, 1, 2, 3, 4, 5, 9, 1, 2, 3], 3) == [4, 5, 9]
    assert find_draft([1, 2, 8, 1, 2, 6, 1, 2], 5) == [6, 1, 2]  # newest first, stops at the end
    assert find_draft([1, 2, 3, 4], 4) == []  # no suffix occurred before
    assert find_draft([1, 2, 1, 2], 0) == []


def test_draft_matches_token_boundaries_only():
    rng = random.Random(5)
    vocab = [0, 1, 2, 256, 65536, 16777216, 131328]  # values whose bytes can match across tokens
    for _ in range(3000):
        tokens = [rng.choice(vocab) for _ in range(rng.randint(0, 24))]
        n = rng.randint(0, 6)
        assert find_draft(tokens, n) == reference_draft(tokens, n), tokens


def test_draft_size_grows_on_accepted_drafts_and_shrinks_on_rejected_ones():
    size = DraftSize(8)
    assert size.n == 4
    size.update(4, 4)
    assert size.n == 8
    size.update(8, 8)
    assert size.n == 8
    size.update(8, 0)
    size.update(4, 0)
    size.update(2, 0)
    assert size.n == 1
    size.update(1, 0)
    assert size.n == 1
    size.update(0, 0)
    size.update(1, 1)
    assert size.n == 2


def test_drafts_that_keep_failing_pause_drafting_for_longer_each_time_until_one_is_accepted():
    size = DraftSize(4)
    size.update(2, 0)
    assert size.n == 1 and size.ready()  # halving first: no pause yet

    def paused_steps() -> int:
        n = 0
        while not size.ready():
            n += 1
        return n

    lengths = []
    for _ in range(6):
        size.update(1, 0)  # a one-token draft rejected outright
        lengths.append(paused_steps())
    assert lengths == [2, 4, 8, 16, 32, 32]
    size.update(1, 1)  # accepted: drafting grows again, no pause left
    assert size.n == 2 and size.ready()
    size.update(2, 1)  # partly accepted: neither grows nor pauses
    assert size.n == 2 and size.ready()
    size.update(2, 0)
    size.update(1, 0)
    assert paused_steps() == 2  # the pauses start over after an accepted draft


async def _generate(model: Path, tmp_path: Path, draft: int, prompts: list[str], max_tokens: int) -> tuple[list[str], dict]:
    from xiaoq.config import Settings
    from xiaoq.engine.llama_engine import LlamaEngine
    from xiaoq.engine.types import GenerationRequest, SamplingParams

    settings = Settings(threads=2, parallel=2, ctx=1024, batch=64, kv_cache_mb=0, kv_disk_mb=0, seed=1,
                        db=tmp_path / "x.db", lookup_draft=draft)
    engine = LlamaEngine(model, settings, deterministic=True)
    await engine.start()
    try:
        sampling = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True, loop_guard=False)
        gens = [await engine.submit(GenerationRequest(messages=[{"role": "user", "content": p}], sampling=sampling))
                for p in prompts]
        texts = await asyncio.gather(*(g.text() for g in gens))
        assert all(g.result is not None and g.result.usage.completion_tokens == max_tokens for g in gens)
        return list(texts), engine.stats()
    finally:
        await engine.close()


async def test_greedy_output_is_the_same_with_drafting_on_the_tiny_model(tiny_gguf: Path, tmp_path: Path):
    """Two streams at once, quoting prompts, --deterministic: byte-identical replies, and drafted
    tokens were accepted (the tiny model repeats itself, so lookup finds its continuations)."""
    prompts = ["copy this: the model is fast and small and the model is fast " * 4,
               "hello world hello world, says the test, hello world " * 3]
    plain, plain_stats = await _generate(tiny_gguf, tmp_path, 0, prompts, 64)
    drafted, stats = await _generate(tiny_gguf, tmp_path, 8, prompts, 64)
    assert drafted == plain
    assert plain_stats["draft_tokens_total"] == 0
    assert stats["draft_accepted_total"] > 0, stats
    assert stats["decode_steps_total"] < plain_stats["decode_steps_total"], (stats, plain_stats)


@pytest.mark.real_model
async def test_greedy_output_is_the_same_with_drafting_on_the_real_model(real_model_path: Path, tmp_path: Path):
    passage = ("The lighthouse keeper climbed the one hundred and twelve steps every evening, lit the lamp, "
               "wrote the weather in the log book and watched the ships pass until dawn.")
    prompts = [f"Repeat this passage exactly, word for word:\n\n{passage}",
               "Write a short poem about autumn rain."]
    plain, _ = await _generate(real_model_path, tmp_path, 0, prompts, 48)
    drafted, stats = await _generate(real_model_path, tmp_path, 8, prompts, 48)
    assert drafted == plain
    assert stats["draft_accepted_total"] > 10, stats

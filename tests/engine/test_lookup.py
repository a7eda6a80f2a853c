"""Prompt lookup drafting (``engine/lookup.py``) and its check in the scheduler: the greedy output
is the same with and without drafting (under --deterministic), and drafts are really accepted."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from xiaoq.engine.lookup import DraftSize, find_draft


def reference_draft(tokens: list[int], n_max: int, n_long: int = 0, ngram: int = 5, match_max: int = 64,
                    per_match: int = 2, long_match: int = 12) -> list[int]:
    """The obvious quadratic version: the newest earlier occurrence of the last ``ngram`` tokens,
    the match there measured backwards, a draft of at most ``per_match`` tokens per matched one, or
    of ``n_long`` from a ``long_match``-token match on."""
    if n_max <= 0 or len(tokens) <= ngram:
        return []
    for start in range(len(tokens) - ngram - 1, -1, -1):
        if tokens[start:start + ngram] == tokens[-ngram:]:
            length = ngram
            while (length < match_max and start - (length - ngram) - 1 >= 0
                   and tokens[start - (length - ngram) - 1] == tokens[-length - 1]):
                length += 1
            n = max(n_long, min(n_max, per_match * length)) if length >= long_match else min(n_max, per_match * length)
            return tokens[start + ngram:start + ngram + n]
    return []


def test_draft_continues_the_newest_earlier_occurrence():
    assert find_draft([7, 1, 2, 3, 4, 5, 6, 9, 1, 2, 3, 4, 5], 3) == [6, 9, 1]
    assert find_draft([1, 2, 3, 4, 5, 8, 1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5], 5) == [6, 1, 2, 3, 4]  # newest first
    assert find_draft([1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5], 99) == [6, 7, 8, 1, 2, 3, 4, 5]  # stops at the end
    assert find_draft([1, 2, 3, 4, 9, 1, 2, 3, 4], 4) == []  # a 4-token match is too short to draft from
    assert find_draft([1, 2, 3, 4, 5, 1, 2, 3, 4, 5], 0) == []


def test_a_longer_match_earns_a_longer_draft():
    quote = list(range(100, 300))
    for matched in (5, 8, 20, 40, 80):
        tokens = [1] + quote + [2] + quote[:matched]  # the reply has quoted `matched` tokens so far
        draft = find_draft(tokens, 64)
        assert draft == quote[matched:matched + min(64, 2 * min(matched, 64))], matched
    assert len(find_draft([1] + quote + [2] + quote[:5], 64)) == 10


def test_a_quote_under_way_drafts_the_whole_limit_at_once():
    """From a 12-token match on, a draft may take ``n_long`` (the --lookup-draft limit) even when
    the reply's draft size has shrunk: a quote that long is copying, as llama.cpp's ngram-simple
    assumes after its 12-token match."""
    quote = list(range(100, 300))
    for matched, want in ((5, 10), (8, 16), (11, 22), (12, 48), (30, 48), (80, 48)):
        tokens = [1] + quote + [2] + quote[:matched]
        assert find_draft(tokens, 4, n_long=48) == quote[matched:matched + (want if matched >= 12 else 4)], matched
        assert find_draft(tokens, 64, n_long=48) == quote[matched:matched + max(want, min(64, 2 * matched))], matched
    assert find_draft([1] + quote[:20] + [2] + quote[:12], 4, n_long=48) == quote[12:20] + [2] + quote[:12]  # to the end


def test_draft_matches_token_boundaries_only():
    rng = random.Random(5)
    vocab = [0, 1, 2, 256, 65536, 16777216, 131328]  # values whose bytes can match across tokens
    for _ in range(3000):
        tokens = [rng.choice(vocab[:rng.randint(2, 7)]) for _ in range(rng.randint(0, 60))]
        n, n_long = rng.randint(0, 40), rng.choice((0, rng.randint(0, 64)))
        assert find_draft(tokens, n, n_long=n_long) == reference_draft(tokens, n, n_long), tokens


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
    drafted, stats = await _generate(tiny_gguf, tmp_path, 48, prompts, 64)
    assert drafted == plain
    assert plain_stats["draft_tokens_total"] == 0
    assert stats["draft_accepted_total"] > 0, stats
    # Fewer steps for the same tokens: compared on one stream alone, since how two streams share
    # steps depends on when the second is admitted (a loaded machine admitted it a step late: 82 vs 66)
    _, alone_plain = await _generate(tiny_gguf, tmp_path, 0, prompts[:1], 64)
    _, alone_drafted = await _generate(tiny_gguf, tmp_path, 48, prompts[:1], 64)
    assert alone_drafted["draft_accepted_total"] > 0, alone_drafted
    assert alone_drafted["decode_steps_total"] < alone_plain["decode_steps_total"], (alone_drafted, alone_plain)


@pytest.mark.real_model
async def test_greedy_output_is_the_same_with_drafting_on_the_real_model(real_model_path: Path, tmp_path: Path):
    passage = ("The lighthouse keeper climbed the one hundred and twelve steps every evening, lit the lamp, "
               "wrote the weather in the log book and watched the ships pass until dawn.")
    prompts = [f"Repeat this passage exactly, word for word:\n\n{passage}",
               "Write a short poem about autumn rain."]
    plain, _ = await _generate(real_model_path, tmp_path, 0, prompts, 48)
    drafted, stats = await _generate(real_model_path, tmp_path, 48, prompts, 48)
    assert drafted == plain
    assert stats["draft_accepted_total"] > 10, stats

"""Idle slots parked in the state cache while other slots decode (real llama.cpp, tiny GGUF).

With one unified KV cache, llama.cpp attends over every cell up to the highest one in use, so an
idle conversation's cells make every running stream's step wider. A slot idle for longer than
``--park-idle-after`` while another slot works is saved to the RAM state cache and its cells are
freed; its conversation's next turn is restored from the cache instead of prefilled again.
Cells are checked with llama.cpp's own memory API, on the scheduler thread.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.engine.test_llama_engine import engine, until
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.types import GenerationRequest, GenerationResult, SamplingParams

DOC = "the river flows past the old mill and the miller counts his sacks of grain " * 6


def turn(msgs: list[dict[str, str]], max_tokens: int) -> GenerationRequest:
    return GenerationRequest(messages=msgs, sampling=SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True))


def idle_cells(e: LlamaEngine) -> list[int]:
    """For every slot without a job: the highest position llama.cpp holds for its sequence (-1: none)."""
    sched = e._scheduler
    assert sched is not None
    return e.call_on_scheduler(lambda: [sched.model.seq_pos_max(s.id) for s in sched.slots if s.job is None])


async def run_turns(e: LlamaEngine, *, park: bool) -> tuple[str, str, GenerationResult, GenerationResult]:
    """A's first turn; B streams; (when parking) A's slot is parked meanwhile; then A's second turn."""
    a1 = [{"role": "user", "content": DOC + "what does the miller count?"}]
    g1 = await e.submit(turn(a1, 12))
    reply1 = await g1.text()
    assert g1.result is not None
    # a raw prompt sharing no token with A's: B takes the empty slot, not A's
    b = await e.submit(GenerationRequest(prompt="Once upon a time a lighthouse keeper",
                                         sampling=SamplingParams(temperature=0, max_tokens=400, ignore_eos=True)))
    if park:
        await until(lambda: e.stats()["kv_idle_parked_total"] >= 1)
        assert b.result is None, "parked while B was decoding"
        assert idle_cells(e) == [-1], "the idle slot's cells are freed"
    text_b = await b.text()
    a2 = a1 + [{"role": "assistant", "content": reply1}, {"role": "user", "content": "and then?"}]
    g2 = await e.submit(turn(a2, 24))
    text_a2 = await g2.text()
    assert g2.result is not None
    return text_b, text_a2, g1.result, g2.result


async def test_idle_slot_is_parked_while_another_decodes_and_its_next_turn_is_restored(tiny_gguf: Path):
    async with engine(tiny_gguf, deterministic=True, parallel=2, park_idle_after=0.02, kv_disk_mb=0) as e:
        text_b, text_a2, first, second = await run_turns(e, park=True)
        s = e.stats()
        assert s["kv_idle_parked_total"] >= 1
        assert s["kv_cache_hits_total"] >= 1
        # the second turn restored the first turn's whole prompt from the cache: no full re-prefill
        assert second.usage.cached_tokens >= first.usage.prompt_tokens
        assert second.timings.prompt_tokens_evaluated == second.usage.prompt_tokens - second.usage.cached_tokens
    async with engine(tiny_gguf, deterministic=True, parallel=2, park_idle_after=0, kv_disk_mb=0) as e:
        kept_b, kept_a2, _, second_kept = await run_turns(e, park=False)
        assert e.stats()["kv_idle_parked_total"] == 0
        assert e.stats()["kv_slot_reuse_total"] >= 1  # without parking A's turn found its slot
    # greedy output is the same with and without parking, for the stream that ran while A's slot
    # was parked (its cells were moved) and for the restored conversation
    assert text_b == kept_b
    assert text_a2 == kept_a2
    assert second.usage.cached_tokens == second_kept.usage.cached_tokens


async def test_a_turn_within_the_idle_delay_keeps_its_slot(tiny_gguf: Path):
    async with engine(tiny_gguf, parallel=2, park_idle_after=60) as e:
        _, _, first, second = await run_turns(e, park=False)
        s = e.stats()
        assert s["kv_idle_parked_total"] == 0
        assert s["kv_slot_reuse_total"] >= 1
        assert second.usage.cached_tokens >= first.usage.prompt_tokens


async def test_nothing_is_parked_without_a_state_cache(tiny_gguf: Path):
    async with engine(tiny_gguf, parallel=2, park_idle_after=0.01, kv_cache_mb=0) as e:
        g = await e.submit(turn([{"role": "user", "content": DOC}], 8))
        await g.text()
        b = await e.submit(GenerationRequest(prompt="Once upon a time", sampling=SamplingParams(temperature=0, max_tokens=120)))
        await asyncio.sleep(0.1)
        await b.text()
        assert e.stats()["kv_idle_parked_total"] == 0
        assert all(p >= 0 for p in idle_cells(e))  # both conversations stayed in their slots


@pytest.mark.real_model
async def test_parking_keeps_greedy_output_on_the_real_model(real_model_path: Path):
    texts = []
    for park in (0.02, 0):
        async with engine(real_model_path, deterministic=True, parallel=2, park_idle_after=park, kv_disk_mb=0, threads=1) as e:
            text_b, text_a2, _, _ = await run_turns(e, park=park > 0)
            texts.append((text_b, text_a2))
    assert texts[0] == texts[1]

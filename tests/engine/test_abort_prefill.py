"""Stop during a long prompt's step: cancelling the one request whose prompt fills the running
``llama_decode`` aborts that step (llama.cpp's abort callback, read natively: ``AbortFlag``)
instead of waiting for it (a 512-token step is ~2.5 s on 2 cores). Real llama.cpp, tiny GGUF.

The tiny model's steps take under a millisecond, far too short to cancel into by timing, so the
cancel is made from inside the step: the wrapped ``decode`` cancels the request just before
llama.cpp runs, as a Stop arriving at that moment would."""

from __future__ import annotations

from pathlib import Path

from tests.engine.test_llama_engine import engine
from tests.engine.test_prefill_batches import long_prompt, raw
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.scheduler import PREFILL


def cancel_inside_step(e: LlamaEngine, at_step: int) -> list[int]:
    """Wrap the model's decode: at the ``at_step``-th step carrying more than 64 tokens, cancel the
    request whose prompt is in it first. Returns every step's return code."""
    sched = e._scheduler
    assert sched is not None
    model, codes, big = sched.model, [], [0]
    inner = model.decode

    def decode() -> int:
        assert model.batch is not None
        if model.batch.n > 64:
            big[0] += 1
            if big[0] == at_step:
                prefilling = [s for s in sched.slots if s.job is not None and s.state == PREFILL and s.n_chunk]
                assert len(prefilling) == 1
                prefilling[0].job.gen.cancel()  # type: ignore[union-attr]
        codes.append(inner())
        return codes[-1]

    def install() -> None:
        model.decode = decode  # type: ignore[method-assign]

    e.call_on_scheduler(install)
    return codes


async def greedy(e: LlamaEngine, prompt: str) -> str:
    return await (await e.submit(raw(prompt, 24))).text()


async def test_cancel_aborts_the_running_lone_prompt_step_and_the_slot_stays_consistent(tiny_gguf: Path):
    # kv_disk_mb=0: the second engine must not restore the first one's state from the disk tier
    async with engine(tiny_gguf, deterministic=True, parallel=1, batch=64, prefill_batch=256, kv_disk_mb=0) as fresh:
        prompt = long_prompt(fresh, 900, "stop")
        expected = await greedy(fresh, prompt)

    # --deterministic: a 256-token step is 8 ubatches of 32, so the abort comes after some of them
    # are in the KV cache; the slot must come out consistent: the next turn's greedy text is a
    # fresh engine's
    async with engine(tiny_gguf, deterministic=True, parallel=1, batch=64, prefill_batch=256, kv_disk_mb=0) as e:
        codes = cancel_inside_step(e, at_step=2)
        gen = await e.submit(raw(prompt, 24))
        assert await gen.text() == ""
        assert gen.result is not None and gen.result.finish_reason == "cancelled"
        assert 2 in codes, codes  # llama_decode returned "aborted"
        assert e.stats()["prefill_steps_aborted_total"] == 1
        codes_before = len(codes)
        # the same prompt again: reuses the slot's first step, prefills the rest, same greedy text
        assert await greedy(e, prompt) == expected
        assert 2 not in codes[codes_before:], "the flag was left raised"


async def test_a_step_shared_with_a_decoding_stream_is_not_aborted(tiny_gguf: Path):
    async with engine(tiny_gguf, parallel=2, batch=128, prefill_batch=256, prefill_chunk=100) as e:
        a = await e.submit(raw("Once upon a time a lighthouse keeper", 400))
        async for _ in a:
            break
        codes = cancel_inside_step(e, at_step=1)
        b = await e.submit(raw(long_prompt(e, 600, "mixed"), 8))
        await b.text()
        assert b.result is not None and b.result.finish_reason == "cancelled"
        assert 2 not in codes and e.stats()["prefill_steps_aborted_total"] == 0
        assert a.result is None  # A's stream went on
        a.cancel()
        await a.text()
        assert a.result is not None and a.result.finish_reason == "cancelled"

"""How prompts are cut into llama_decode steps (real llama.cpp, tiny GGUF).

A prompt with nobody decoding goes in steps of ``--prefill-batch`` tokens (bigger ubatches use the
matmul kernels better); beside a decoding stream it goes in chunks the scheduler caps (its own
step-time fit, or ``--prefill-chunk``), so that stream's pauses stay short. Every step is recorded
from the scheduler thread by wrapping the model's ``decode``: what is counted is what llama.cpp got.

The tiny model's steps take a fraction of a millisecond, which any other process on the machine
swamps, so the scheduler's step clock is given a simulated machine: each real ``llama_decode``
advances it by ``A + B·tokens``. The chunk the fit must then choose is known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.engine.test_llama_engine import engine, until
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.scheduler import DECODE
from xiaoq.engine.types import Generation, GenerationRequest, SamplingParams


@dataclass
class Step:
    tokens: int
    decoding: int  # slots with a decode row in this step
    prompt: int  # prompt tokens in this step
    chunk: int  # the scheduler's chunk for mixed steps when this step was built


#: The simulated machine: a step of n tokens takes A + B·n seconds. Beside one decoding stream a
#: step may then carry int((RATIO - 1)·(A + B)/B) = 43 prompt tokens (the default ratio, 8).
A, B, RATIO = 0.021, 0.004, 8.0
FITTED = int((RATIO - 1.0) * (A + B) / B)


class SimulatedClock:
    """Seconds that pass only in llama_decode, A + B·tokens per call."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record_steps(e: LlamaEngine) -> list[Step]:
    """Record every step, and time them on the simulated machine."""
    sched = e._scheduler
    assert sched is not None
    steps: list[Step] = []
    model = sched.model
    inner = model.decode
    clock = SimulatedClock()

    def decode() -> int:
        assert model.batch is not None
        active = [s for s in sched.slots if s.job is not None]
        steps.append(Step(model.batch.n, sum(s.state == DECODE for s in active),
                          sum(s.n_chunk for s in active if s.state != DECODE), sched.chunk.value))
        clock.now += A + B * model.batch.n
        return inner()

    def install() -> None:
        model.decode = decode  # type: ignore[method-assign]
        sched.step_clock = clock

    e.call_on_scheduler(install)
    return steps


def long_prompt(e: LlamaEngine, n_tokens: int, word: str = "word") -> str:
    words = [f"{word}{i}" for i in range(n_tokens)]
    n = next(n for n in range(50, n_tokens, 10) if len(e.tokenize(" ".join(words[:n]))) >= n_tokens)
    return " ".join(words[:n])


def raw(prompt: str, max_tokens: int) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, sampling=SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True))


async def beside_a_stream(e: LlamaEngine, n_prompt: int) -> tuple[Generation, Generation, str]:
    """Stream A decodes; once it has tokens, B's long prompt is submitted; returns both and B's text."""
    before = e.stats()["tokens_generated_total"]
    a = await e.submit(raw("Once upon a time a lighthouse keeper", 2000))
    await until(lambda: e.stats()["tokens_generated_total"] >= before + 3)
    b = await e.submit(raw(long_prompt(e, n_prompt), 8))
    text_b = await b.text()
    assert a.result is None, "A was still decoding while B prefilled"
    return a, b, text_b


async def test_lone_prompt_goes_in_big_steps_and_beside_a_stream_in_fitted_chunks(tiny_gguf: Path):
    async with engine(tiny_gguf, parallel=2, batch=64, prefill_batch=256) as e:
        steps = record_steps(e)
        g = await e.submit(raw(long_prompt(e, 1000, "alone"), 4))
        await g.text()
        alone = [s for s in steps if s.prompt]
        assert [s.tokens for s in alone[:-1]] == [256] * (len(alone) - 1), "steps of --prefill-batch, not --batch"
        assert sum(s.prompt for s in alone) == g.prompt_tokens

        del steps[:]
        a, b, _ = await beside_a_stream(e, 1000)
        mixed = [s for s in steps if s.prompt and s.decoding]
        assert sum(s.prompt for s in mixed) >= b.prompt_tokens - 64, "B was prefilled beside A"
        # A's own prompt step and the decode steps gave the fit both ends before B came
        assert {s.chunk for s in mixed} == {FITTED}
        assert all(s.prompt <= FITTED and s.tokens <= 64 for s in mixed)
        stats = e.stats()
        # the chunk beside the streams decoding at the last step: A, or A and B (a wider decode step)
        assert stats["prefill_chunk_tokens"] in (FITTED, int((RATIO - 1.0) * (A + 2 * B) / B))
        assert stats["step_fit_base_ms"] == pytest.approx(A * 1000) and stats["step_fit_token_ms"] == pytest.approx(B * 1000)
        a.cancel()
        await a.text()


async def test_pinned_chunk_is_what_a_mixed_step_carries(tiny_gguf: Path):
    async with engine(tiny_gguf, parallel=2, batch=64, prefill_chunk=8) as e:
        steps = record_steps(e)
        a, b, _ = await beside_a_stream(e, 300)
        mixed = [s for s in steps if s.prompt and s.decoding]
        assert mixed and max(s.prompt for s in mixed) == 8 and {s.chunk for s in mixed} == {8}
        assert e.stats()["prefill_chunk_tokens"] == 8
        a.cancel()
        await a.text()


async def test_greedy_output_is_the_same_with_fitted_chunks_and_big_steps(tiny_gguf: Path):
    # --deterministic: the kernels are batch invariant, so how a prompt is cut into steps must not
    # change a token: the fitted chunk and 256-token lone steps against the old pinned half batch
    async def run(**kw) -> tuple[str, str, list[Step]]:
        async with engine(tiny_gguf, deterministic=True, parallel=2, batch=64, **kw) as e:
            steps = record_steps(e)
            solo = await (await e.submit(raw(long_prompt(e, 700, "solo"), 24))).text()
            a, b, text_b = await beside_a_stream(e, 600)
            a.cancel()
            await a.text()
            return solo, text_b, list(steps)

    fitted = await run(prefill_batch=256)
    pinned = await run(prefill_batch=64, prefill_chunk=32)
    assert max(s.tokens for s in fitted[2]) > 64 and max(s.tokens for s in pinned[2]) <= 65  # +1: the filler
    assert {s.chunk for s in fitted[2] if s.prompt and s.decoding} == {FITTED}
    assert fitted[:2] == pinned[:2]


@pytest.mark.real_model
async def test_greedy_output_is_the_same_with_fitted_chunks_on_the_real_model(real_model_path: Path):
    texts = []
    for kw in (dict(prefill_batch=512), dict(prefill_batch=64, prefill_chunk=32)):
        async with engine(real_model_path, deterministic=True, parallel=2, batch=64, kv_disk_mb=0, threads=1, **kw) as e:
            steps = record_steps(e)
            a, b, text_b = await beside_a_stream(e, 300)
            a.cancel()
            text_a = await a.text()
            texts.append((text_b, text_a))
            assert {s.chunk for s in steps if s.prompt and s.decoding} == ({32} if "prefill_chunk" in kw else {FITTED})
    (b1, a1), (b2, a2) = texts
    assert b1 == b2
    assert a1.startswith(a2) or a2.startswith(a1), "A was cancelled at different points, same tokens up to there"

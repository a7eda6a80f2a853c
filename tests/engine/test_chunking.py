"""The prefill chunk beside decoding streams, sized from step times (synthetic ones here; the real
engine's use of it is in test_prefill_batches.py)."""

from __future__ import annotations

import pytest

from xiaoq.engine.chunking import FLOOR, PrefillChunk, StepFit, chunk_for


def machine(a: float, b: float):
    """A machine whose step of n tokens takes a + b·n seconds."""
    return lambda n: a + b * n


def feed(fit: StepFit, step, sizes: list[tuple[int, int]]) -> None:
    for n, n_prompt in sizes:
        fit.observe(n, n_prompt, step(n))


def test_fit_recovers_the_line_from_decode_and_prefill_steps():
    fit = StepFit(small_batch=128)
    step = machine(0.020, 0.005)
    feed(fit, step, [(1, 0), (2, 0), (4, 0), (1, 0)] * 10 + [(17, 16), (33, 32), (65, 64)] * 5)
    line = fit.line()
    assert line is not None
    assert line[0] == pytest.approx(0.020, rel=1e-6) and line[1] == pytest.approx(0.005, rel=1e-6)


def test_no_line_until_both_kinds_of_step_were_seen():
    fit = StepFit(small_batch=128)
    feed(fit, machine(0.02, 0.005), [(1, 0)] * 50)
    assert fit.line() is None
    fit = StepFit(small_batch=128)
    feed(fit, machine(0.02, 0.005), [(64, 64)] * 50)
    assert fit.line() is None


def test_big_lone_prefill_steps_are_not_fitted():
    # a 512-token step runs in a bigger ubatch, cheaper per token than a mixed step
    fit = StepFit(small_batch=128)
    feed(fit, machine(0.02, 0.005), [(1, 0)] * 5)
    fit.observe(512, 512, 0.9)
    assert fit.line() is None
    fit.observe(33, 32, 0.02 + 0.005 * 33)
    assert fit.line() == pytest.approx((0.02, 0.005))


def test_a_slope_that_noise_made_negative_gives_no_line():
    fit = StepFit(small_batch=128)
    fit.observe(1, 0, 0.050)  # a decode step that was preempted
    fit.observe(17, 16, 0.030)
    assert fit.line() is None


def test_the_decode_steps_are_remembered_through_a_long_prefill():
    # during a long prefill every step is a mixed one of the same size: one running regression
    # would lose its slope; the two means keep it
    fit = StepFit(small_batch=128)
    step = machine(0.02, 0.005)
    feed(fit, step, [(1, 0)] * 20 + [(17, 16)] * 2000)
    assert fit.line() == pytest.approx((0.02, 0.005))


@pytest.mark.parametrize(("a", "b", "ratio", "n_decode", "expected"), [
    (0.020, 0.005, 2.0, 1, FLOOR),     # 2 cores: a prompt token costs a quarter of a decode step
    (0.020, 0.005, 8.0, 1, 35),        # 7 x 25 ms of prompt tokens at 5 ms each
    (0.020, 0.005, 8.0, 4, 56),        # a wider decode step allows a bigger chunk
    (0.008, 0.0005, 8.0, 1, 119),      # many cores: prompt tokens are cheap
    (0.008, 0.0001, 8.0, 1, 128),      # capped at the mixed batch size
])
def test_chunk_keeps_a_mixed_step_within_ratio_decode_steps(a, b, ratio, n_decode, expected):
    chunk = chunk_for((a, b), n_decode, ratio, FLOOR, 128)
    assert chunk == expected
    if chunk > FLOOR and chunk < 128:
        mixed, decode = a + b * (n_decode + chunk), a + b * n_decode
        assert mixed <= ratio * decode + 1e-12 < a + b * (n_decode + chunk + 1)


def run_mixed_steps(chunker: PrefillChunk, step, n_steps: int = 200) -> list[int]:
    """A stream decoding while a prompt prefills: decode steps until the fit has one, then mixed
    steps of the chunk the chunker picks; returns the chunks."""
    chunks = []
    for _ in range(5):
        chunker.observe(1, 0, step(1))
    for _ in range(n_steps):
        c = chunker.shared(1)
        chunks.append(c)
        chunker.observe(1 + c, c, step(1 + c))
        chunker.observe(1, 0, step(1))  # the prompt's owner and the stream alternate with plain steps
    return chunks


def test_closed_loop_slow_machine_gets_small_chunks_and_fast_machine_big_ones():
    slow = run_mixed_steps(PrefillChunk(128, ratio=8.0, initial=64), machine(0.020, 0.005))
    fast = run_mixed_steps(PrefillChunk(128, ratio=8.0, initial=64), machine(0.008, 0.0005))
    assert slow[0] == 64 and fast[0] == 64, "the starting chunk, before any mixed step was timed"
    assert slow[-1] == 35 and fast[-1] == 119
    step = machine(0.020, 0.005)
    assert step(1 + slow[-1]) <= 8.0 * step(1)


def test_pinned_chunk_ignores_the_fit_and_is_reported():
    chunker = PrefillChunk(128, ratio=2.0, pinned=64)
    assert chunker.value == 64
    assert run_mixed_steps(chunker, machine(0.02, 0.005))[-1] == 64


def test_chunk_never_exceeds_a_small_mixed_batch():
    chunker = PrefillChunk(8, ratio=8.0)
    assert chunker.floor == 8 and chunker.value == 8
    assert max(run_mixed_steps(chunker, machine(0.008, 0.0001))) == 8


def test_slow_first_steps_and_preempted_steps_barely_move_the_fit():
    fit = StepFit(small_batch=128)
    step = machine(0.020, 0.005)
    fit.observe(1, 0, 0.5)  # a fresh context's first step: its buffers' pages touched
    fit.observe(33, 32, 1.5)
    feed(fit, step, [(1, 0), (33, 32)] * 20)
    fit.observe(1, 0, 2.0)  # preempted by the OS
    a, b = fit.line()  # type: ignore[misc]
    assert a + b == pytest.approx(0.025, rel=0.15) and b == pytest.approx(0.005, rel=0.2)

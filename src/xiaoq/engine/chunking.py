"""How many prompt tokens a step may carry while other streams decode, from this machine's own steps.

A prompt prefilled beside running streams goes in chunks, one per step, and every running stream
waits for the whole step: its longest pause is one mixed step. A constant chunk suits one machine
only: where a prompt token is cheap next to a decode step (many cores, little bandwidth) a bigger
chunk costs the streams little and prefills faster; where it is dear (two cores) the same chunk
is a long pause. So the scheduler times each ``llama_decode`` and fits

    step seconds ≈ a + b · tokens in the batch

and caps the chunk so a mixed step takes at most ``ratio`` times a decode step of the same
streams: ``a + b·(n_decode + chunk) ≤ ratio · (a + b·n_decode)``.

The fit is the line through two running means: of the steps without prompt tokens (decode steps)
and of the steps with some (prefill chunks of the small-batch kind, mixed or not). A single
exponentially weighted regression would forget the decode steps during a long prefill (every
step is then a mixed one, all of one size) and lose its slope exactly when it is needed; two
means keep both ends. Each observation is O(1): this runs on every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

#: Fewest prompt tokens a mixed step carries: below this a prompt crawls (each step's fixed cost,
#: the weights read once per step, is paid for a handful of tokens).
FLOOR = 16
#: Weight of each new step in the running means: about the last 20 steps count.
ALPHA = 0.05
#: Least distance (tokens) between the two means for their slope to mean anything.
MIN_SPREAD = 4.0
#: A step slower than this many times the mean (per token, for steps bigger than the mean) is
#: counted as this: the first steps of a fresh context (pages of its buffers touched for the first
#: time) and steps the OS preempted are ten to a thousand times slower, and one of them would move
#: an exponential mean for dozens of steps.
SPIKE = 3.0
#: The mean starts from the cheapest (per token) of this many first observations: a fresh
#: context's first steps are the slow ones, and a mean seeded by one would take 1/alpha steps to
#: forget it.
SETTLE = 4


@dataclass
class RunningMean:
    """Mean of (tokens, seconds): seeded as above, then plain until ``1/alpha`` observations, then
    exponentially weighted; spikes are clipped (see SPIKE)."""

    x: float = 0.0
    t: float = 0.0
    n: int = 0

    def add(self, x: float, t: float, alpha: float) -> None:
        self.n += 1
        if self.n <= SETTLE:
            if self.n == 1 or t * self.x < self.t * x:
                self.x, self.t = x, t
            return
        t = min(t, SPIKE * self.t * max(1.0, x / self.x))
        w = max(alpha, 1.0 / self.n)
        self.x += w * (x - self.x)
        self.t += w * (t - self.t)


class StepFit:
    """Step time as a line in the batch's token count, from the steps the scheduler times."""

    def __init__(self, small_batch: int, alpha: float = ALPHA):
        #: Steps above this many tokens are not fitted: they run in bigger ubatches, whose cost per
        #: token is lower than a mixed step's, so they would understate its slope.
        self.small_batch = small_batch
        self.alpha = alpha
        self.decode = RunningMean()
        self.prefill = RunningMean()

    def observe(self, n_tokens: int, n_prompt: int, seconds: float) -> None:
        """Record one ``llama_decode`` of ``n_tokens`` tokens, ``n_prompt`` of them prompt tokens."""
        if n_tokens <= 0 or seconds <= 0.0:
            return
        if n_prompt == 0:
            self.decode.add(n_tokens, seconds, self.alpha)
        elif n_tokens <= self.small_batch:
            self.prefill.add(n_tokens, seconds, self.alpha)

    def line(self) -> Optional[tuple[float, float]]:
        """``(a, b)`` in seconds and seconds per token; None until both kinds of step were seen
        far enough apart and more tokens cost more time (noise can say otherwise for a while)."""
        d, p = self.decode, self.prefill
        if not d.n or not p.n or p.x - d.x < MIN_SPREAD:
            return None
        b = (p.t - d.t) / (p.x - d.x)
        if b <= 0.0:
            return None
        return max(0.0, d.t - b * d.x), b


class PrefillChunk:
    """The scheduler's decision: prompt tokens in a step beside ``n_decode`` decoding rows."""

    def __init__(self, ceiling: int, *, ratio: float, pinned: int = 0, initial: Optional[int] = None):
        #: Most prompt tokens a mixed step may carry (the batch size for mixed steps).
        self.ceiling = max(1, ceiling)
        self.floor = min(FLOOR, self.ceiling)
        self.ratio = ratio
        #: A fixed chunk (benchmarks, tests); 0: sized from the fit.
        self.pinned = pinned
        self.fit = StepFit(self.ceiling)
        #: The chunk of the last mixed step (what /metrics shows), and the one used until the fit
        #: has both kinds of step.
        self.value = pinned or min(self.ceiling, initial or self.ceiling)

    def observe(self, n_tokens: int, n_prompt: int, seconds: float) -> None:
        self.fit.observe(n_tokens, n_prompt, seconds)

    def stats(self) -> dict[str, float]:
        """The chunk and the fit behind it, for /metrics (the fit's terms are 0 until it has one)."""
        a, b = self.fit.line() or (0.0, 0.0)
        return {"prefill_chunk_tokens": self.value, "step_fit_base_ms": round(a * 1000.0, 3),
                "step_fit_token_ms": round(b * 1000.0, 4)}

    def shared(self, n_decode: int) -> int:
        """Prompt tokens for a step that also decodes ``n_decode`` rows."""
        if self.pinned:
            return self.pinned
        line = self.fit.line()
        if line is not None:
            self.value = chunk_for(line, n_decode, self.ratio, self.floor, self.ceiling)
        return self.value


def chunk_for(line: tuple[float, float], n_decode: int, ratio: float, floor: int, ceiling: int) -> int:
    """The largest chunk whose step stays within ``ratio`` decode steps, within [floor, ceiling]."""
    a, b = line
    decode_step = a + b * n_decode
    allowed = int((ratio - 1.0) * decode_step / b)
    return max(floor, min(ceiling, allowed))

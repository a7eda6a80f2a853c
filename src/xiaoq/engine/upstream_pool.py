"""Which upstream serves a request: affinity, bounded load, health and a circuit breaker.

Affinity: rendezvous (highest-random-weight) hashing of the conversation's key over the upstream
URLs. Every XiaoQ replica computes the same order from the same URLs, with no shared state, so a
conversation reaches the upstream that already holds its KV prefix whichever front end took the
request; adding an upstream moves only the conversations that now rank it first (about 1/n).

Bounded load (consistent hashing with bounded loads, c = 1.5): an upstream is skipped while it has
``ceil(1.5 x mean)`` requests in flight, the mean counted with this request; the next in the
conversation's order takes it. One busy conversation cannot pile every request onto one replica.

Health: a probe task asks each upstream for ``/v1/models`` (every OpenAI-compatible server has it;
not all have ``/health``). Failures of real requests count too: after ``BREAK_AFTER`` in a row the
breaker opens and the upstream gets no traffic for a cool-down that doubles on each new opening
(up to ``MAX_COOLDOWN_S``); a successful probe or request closes it.

All state here belongs to the event loop thread (the engine and its probe task run there), so no
locks.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

BREAK_AFTER = 3
FIRST_COOLDOWN_S = 2.0
MAX_COOLDOWN_S = 60.0
LOAD_FACTOR = 1.5


@dataclass
class Upstream:
    """One OpenAI-compatible server and what we know of it."""

    url: str
    #: The model id it serves (from /v1/models; vLLM wants it in each request).
    model: Optional[str] = None
    in_flight: int = 0
    up: bool = True
    failures_in_row: int = 0
    open_until: float = 0.0
    cooldown: float = FIRST_COOLDOWN_S
    counters: dict[str, int] = field(
        default_factory=lambda: {"requests": 0, "failures": 0, "retries_from": 0, "tokens": 0, "cached_tokens": 0, "prompt_tokens": 0}
    )

    def available(self, now: float) -> bool:
        return self.up and now >= self.open_until

    def weight(self, key: str) -> int:
        digest = hashlib.blake2b(f"{key}\x00{self.url}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")


class UpstreamPool:
    """The upstreams, their order for a key, and their health."""

    def __init__(self, urls: list[str], clock: Callable[[], float] = time.monotonic):
        self.upstreams = [Upstream(u.rstrip("/")) for u in urls]
        self.clock = clock

    def order(self, key: str) -> list[Upstream]:
        """Available upstreams for ``key``: rendezvous order, overloaded ones moved to the back.

        When none is available (all down or broken), all are returned in rendezvous order: trying
        is better than refusing, and a success closes a breaker early.
        """
        now = self.clock()
        ranked = sorted(self.upstreams, key=lambda u: u.weight(key), reverse=True)
        live = [u for u in ranked if u.available(now)]
        if not live:
            return ranked
        cap = math.ceil(LOAD_FACTOR * (sum(u.in_flight for u in live) + 1) / len(live))
        fits = [u for u in live if u.in_flight + 1 <= cap]
        return fits + [u for u in live if u not in fits]

    def succeeded(self, upstream: Upstream) -> None:
        upstream.up = True
        upstream.failures_in_row = 0
        upstream.open_until = 0.0
        upstream.cooldown = FIRST_COOLDOWN_S

    def failed(self, upstream: Upstream) -> None:
        """A request or probe failed: open the breaker after ``BREAK_AFTER`` in a row."""
        upstream.counters["failures"] += 1
        upstream.failures_in_row += 1
        if upstream.failures_in_row >= BREAK_AFTER:
            upstream.open_until = self.clock() + upstream.cooldown
            upstream.cooldown = min(upstream.cooldown * 2, MAX_COOLDOWN_S)

    def probed(self, upstream: Upstream, ok: bool) -> None:
        """A health probe's answer: down when it fails, back at once when it answers."""
        if ok:
            self.succeeded(upstream)
        else:
            upstream.up = False

    def stats(self) -> dict[str, dict[str, int]]:
        """Per-upstream figures for /metrics (label ``upstream``)."""
        now = self.clock()
        out: dict[str, dict[str, int]] = {
            "upstream_up": {u.url: int(u.available(now)) for u in self.upstreams},
            "upstream_in_flight": {u.url: u.in_flight for u in self.upstreams},
        }
        for name in ("requests", "failures", "retries_from", "tokens", "cached_tokens", "prompt_tokens"):
            out[f"upstream_{name}_total"] = {u.url: u.counters[name] for u in self.upstreams}
        return out


def affinity_key(conversation: Optional[str], messages: list[dict]) -> str:
    """The conversation id, else (stateless calls) a hash of the system prompt and first user message:
    the part of the prompt every later turn of the same chat starts with."""
    if conversation:
        return f"c:{conversation}"
    system = next((m.get("content") or "" for m in messages if m.get("role") == "system"), "")
    first = next((m.get("content") or "" for m in messages if m.get("role") == "user"), "")
    return "h:" + hashlib.blake2b(f"{system}\x00{first}".encode(), digest_size=16).hexdigest()

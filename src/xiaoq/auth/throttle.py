"""Login throttling: a guessing loop gets slower and slower, a person who mistyped twice does not.

Failures are counted per username and per client address. The first ``free`` failures cost
nothing; after them each attempt must wait ``base`` seconds, doubling with every further failure
up to ``ceiling``; ``window`` seconds without a failure forget the count. So a loop guessing one
account's password gets about log2(time) guesses instead of thousands. Memory is bounded: the
oldest entries go first. In memory, per process: a restart forgets, which only helps a guesser a
little (and restarts are not his to cause).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Iterable


class LoginThrottle:
    def __init__(
        self,
        *,
        free: int = 5,
        base: float = 1.0,
        ceiling: float = 300.0,
        window: float = 900.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.free, self.base, self.ceiling, self.window = free, base, ceiling, window
        self.max_entries = max_entries
        self.clock = clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, keys: Iterable[str]) -> float:
        """Seconds before another attempt for these keys may be checked (0: now)."""
        now = self.clock()
        with self._lock:
            return max((self._wait(key, now) for key in keys), default=0.0)

    def _wait(self, key: str, now: float) -> float:
        count, last = self._failures.get(key, (0, now))
        if now - last >= self.window:
            self._failures.pop(key, None)
            return 0.0
        if count < self.free:
            return 0.0
        delay = min(self.ceiling, self.base * 2 ** (count - self.free))
        return max(0.0, last + delay - now)

    def failed(self, keys: Iterable[str]) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                count, last = self._failures.pop(key, (0, now))
                self._failures[key] = (0 if now - last >= self.window else count) + 1, now
            while len(self._failures) > self.max_entries:
                self._failures.popitem(last=False)

    def succeeded(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)

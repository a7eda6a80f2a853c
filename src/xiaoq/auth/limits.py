"""Per-user limits: streams at once and generation requests per minute, so one person (or one
runaway script) cannot take every decoding slot and queue place from everyone else.

A sliding one-minute window of request times and a counter of open streams per user, in memory.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from typing import Callable

from xiaoq.errors import TooManyRequests


class UserLimits:
    def __init__(self, streams: int, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.streams, self.per_minute, self.clock = streams, per_minute, clock
        self._open: defaultdict[int, int] = defaultdict(int)
        self._recent: defaultdict[int, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def release(self, user_id: int) -> None:
        """The stream :meth:`acquire` counted has ended."""
        with self._lock:
            self._open[user_id] -= 1
            if self._open[user_id] <= 0:
                del self._open[user_id]

    def acquire(self, user_id: int) -> None:
        """Count one more stream and request of the user (pair with :meth:`release`), or
        :class:`TooManyRequests` when the user already has ``streams`` open or started
        ``per_minute`` in the last minute."""
        now = self.clock()
        with self._lock:
            recent = self._recent[user_id]
            while recent and now - recent[0] >= 60:
                recent.popleft()
            if self.per_minute and len(recent) >= self.per_minute:
                raise TooManyRequests(f"At most {self.per_minute} replies per minute per user; wait a little.", 60 - (now - recent[0]), code="user_rate_limited")
            if self.streams and self._open[user_id] >= self.streams:
                raise TooManyRequests(f"At most {self.streams} replies at once per user; wait for one to finish.", 1, code="user_streams_limited")
            recent.append(now)
            self._open[user_id] += 1

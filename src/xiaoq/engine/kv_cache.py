"""A RAM cache of sequence KV states, keyed by the tokens they hold.

When users alternate between conversations, the slot that held conversation A is given to B; before
that its KV state (about 12 KiB per token for Qwen2.5-0.5B) is copied here. When A's next turn comes,
its prompt extends the cached tokens, the state is restored into a slot and only the new tokens are
prefilled. Stateless OpenAI clients that resend the whole history hit the same way: the key is the
token list, not a conversation id.

The cache is a small class with ``lookup``/``put`` so a disk tier (issue 3: spill evicted entries to
files) can sit behind the same calls: ``on_evict`` is where a spill would go.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence


def common_prefix_len(a: bytes, b: bytes) -> int:
    """Length in tokens of the common prefix of two int32 token strings (binary search in C)."""
    n = min(len(a), len(b)) // 4
    if a[: n * 4] == b[: n * 4]:
        return n
    lo, hi = 0, n  # a[:lo] matches, a[:hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[: mid * 4] == b[: mid * 4]:
            lo = mid
        else:
            hi = mid
    return lo


def token_key(tokens: Sequence[int]) -> bytes:
    return array("i", tokens).tobytes()


@dataclass
class CacheEntry:
    key: bytes  # int32 tokens held by the state
    data: Any  # an opaque buffer with len() (a ctypes byte array from llama_state_seq_get_data)

    @property
    def n_tokens(self) -> int:
        return len(self.key) // 4

    @property
    def nbytes(self) -> int:
        return len(self.data) + len(self.key)


class StateCache:
    """LRU of sequence states under a byte cap. Not thread-safe: the scheduler thread owns it."""

    def __init__(self, max_bytes: int, on_evict: Optional[Callable[[CacheEntry], None]] = None):
        self.max_bytes = max_bytes
        self.on_evict = on_evict
        self._entries: OrderedDict[bytes, CacheEntry] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        #: Second tier (``kv_spill.DiskSpill``): evicted states go there and are found by lookup.
        self.spill: Optional[Any] = None

    def attach_spill(self, spill: Any) -> None:
        """Evict into ``spill`` and look it up after RAM (issue 3's disk tier)."""
        self.spill = spill
        self.on_evict = spill.put

    def __len__(self) -> int:
        """Entries in RAM, plus on disk when a spill is attached (so callers look it up)."""
        return len(self._entries) + (len(self.spill) if self.spill is not None else 0)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def lookup(self, key: bytes, min_tokens: int = 1) -> tuple[Optional[CacheEntry], int]:
        """The entry sharing the longest token prefix with ``key`` (and that length).

        Does not count a hit or miss: the caller decides whether it used the entry (see
        :meth:`record`), since a live slot may offer a longer prefix.
        """
        best: Optional[CacheEntry] = None
        best_n = 0
        for entry in self._entries.values():
            n = common_prefix_len(entry.key, key)
            if n > best_n:
                best, best_n = entry, n
        if self.spill is not None:
            spilled, n = self.spill.lookup(key, min_tokens)
            if spilled is not None and n > best_n:
                best, best_n = spilled, n
        if best is None or best_n < min_tokens:
            return None, 0
        return best, best_n

    def record(self, entry: Optional[CacheEntry]) -> None:
        """Count a hit (and refresh the entry's LRU position) or a miss."""
        if entry is None:
            self.misses += 1
            return
        self.hits += 1
        if getattr(entry, "spill", None) is not None:  # restored from disk: the slot holds it now
            entry.spill.take(entry)  # type: ignore[attr-defined]
        elif entry.key in self._entries:
            self._entries.move_to_end(entry.key)

    def contains_prefix_of_or_equal(self, key: bytes) -> bool:
        """True when some entry already holds ``key`` or more (saving it again adds nothing)."""
        n = len(key) // 4
        return any(e.n_tokens >= n and common_prefix_len(e.key, key) == n for e in self._entries.values())

    def put(self, key: bytes, data: Any) -> bool:
        """Store a state; drops entries it supersedes (their tokens are a prefix of ``key``)."""
        if not self.enabled or not key:
            return False
        entry = CacheEntry(key, data)
        if entry.nbytes > self.max_bytes:
            return False
        n = entry.n_tokens
        for k in [k for k, e in self._entries.items() if e.n_tokens <= n and common_prefix_len(k, key) == e.n_tokens]:
            self._drop(k)
        if self.spill is not None:
            self.spill.discard_prefixes_of(key)
        self._entries[key] = entry
        self.bytes += entry.nbytes
        while self.bytes > self.max_bytes and self._entries:
            _, old = self._entries.popitem(last=False)
            self.bytes -= old.nbytes
            if self.on_evict is not None:
                self.on_evict(old)
        return True

    def spill_all(self) -> int:
        """Hand every RAM entry, oldest first, to the disk tier (at shutdown, so a restarted server
        finds them); returns how many went. Without a disk tier nothing happens."""
        if self.spill is None or self.on_evict is None:
            return 0
        entries = list(self._entries.values())
        for entry in entries:
            self.on_evict(entry)
        self.clear()
        return len(entries)

    def _drop(self, key: bytes) -> None:
        old = self._entries.pop(key)
        self.bytes -= old.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

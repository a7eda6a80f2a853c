"""The RAM state cache's bookkeeping: longest-prefix lookup, LRU under a byte cap, superseding."""

from __future__ import annotations

import random

from xiaoq.engine.kv_cache import StateCache, common_prefix_len, token_key


def test_common_prefix_len_matches_a_plain_loop():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.randrange(5) for _ in range(rng.randrange(0, 40))]
        b = a[: rng.randrange(0, len(a) + 1)] + [rng.randrange(5) for _ in range(rng.randrange(0, 10))]
        expect = 0
        while expect < min(len(a), len(b)) and a[expect] == b[expect]:
            expect += 1
        assert common_prefix_len(token_key(a), token_key(b)) == expect


def test_lookup_finds_longest_shared_prefix():
    c = StateCache(10_000)
    c.put(token_key([1, 2, 3]), b"x" * 10)
    c.put(token_key([1, 2, 9, 9, 9]), b"y" * 10)
    entry, n = c.lookup(token_key([1, 2, 9, 9, 4]))
    assert entry is not None and entry.data == b"y" * 10 and n == 4
    assert c.lookup(token_key([7]))[0] is None
    c.record(entry)
    c.record(None)
    assert (c.hits, c.misses) == (1, 1)


def test_longer_state_supersedes_its_prefix():
    c = StateCache(10_000)
    c.put(token_key([1, 2]), b"a" * 10)
    c.put(token_key([1, 2, 3, 4]), b"b" * 10)
    assert len(c) == 1
    assert c.contains_prefix_of_or_equal(token_key([1, 2, 3]))
    assert not c.contains_prefix_of_or_equal(token_key([1, 2, 3, 4, 5]))


def test_lru_eviction_under_byte_cap():
    evicted = []
    c = StateCache(100, on_evict=lambda e: evicted.append(e.n_tokens))
    c.put(token_key([1]), b"a" * 40)  # 44 bytes with its key
    c.put(token_key([2]), b"b" * 40)
    c.record(c.lookup(token_key([1]))[0])  # 1 is now most recent
    c.put(token_key([3]), b"c" * 40)
    assert c.bytes <= 100 and len(c) == 2
    assert c.lookup(token_key([2]))[0] is None and c.lookup(token_key([1]))[0] is not None
    assert evicted == [1]


def test_disabled_or_oversized_puts_are_refused():
    assert not StateCache(0).put(token_key([1]), b"a")
    assert not StateCache(10).put(token_key([1]), b"a" * 100)

"""Upstream choice without servers: rendezvous affinity, bounded load, breaker, affinity keys."""

from __future__ import annotations

from collections import Counter

from xiaoq.engine.upstream_pool import BREAK_AFTER, UpstreamPool, affinity_key

URLS = ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]


def test_same_order_on_every_replica_and_spread() -> None:
    a, b = UpstreamPool(URLS), UpstreamPool(list(reversed(URLS)))
    firsts = Counter()
    for i in range(400):
        key = f"c:{i:032x}"
        assert [u.url for u in a.order(key)] == [u.url for u in b.order(key)]
        firsts[a.order(key)[0].url] += 1
    assert min(firsts.values()) > 150, firsts  # about half each


def test_adding_an_upstream_moves_only_its_share() -> None:
    two, three = UpstreamPool(URLS), UpstreamPool([*URLS, "http://10.0.0.3:8080"])
    keys = [f"c:{i}" for i in range(600)]
    moved = [k for k in keys if two.order(k)[0].url != three.order(k)[0].url]
    assert all(three.order(k)[0].url == "http://10.0.0.3:8080" for k in moved)
    assert 120 < len(moved) < 280, len(moved)  # about a third


def test_bounded_load_sends_the_overflow_to_the_next() -> None:
    pool = UpstreamPool(URLS)
    key = "c:busy"
    first, second = pool.order(key)
    first.in_flight = 3  # cap with 4 requests over 2 upstreams: ceil(1.5 * 4 / 2) = 3
    assert pool.order(key)[0] is second
    first.in_flight = 2
    assert pool.order(key)[0] is first


def test_breaker_opens_after_failures_in_a_row_and_closes_on_success() -> None:
    now = [100.0]
    pool = UpstreamPool(URLS, clock=lambda: now[0])
    key = "c:x"
    first, second = pool.order(key)
    for _ in range(BREAK_AFTER - 1):
        pool.failed(first)
    assert pool.order(key)[0] is first
    pool.failed(first)
    assert [u.url for u in pool.order(key)] == [second.url]
    now[0] += 2.5  # the first cool-down is 2 s
    assert pool.order(key)[0] is first
    for _ in range(BREAK_AFTER):
        pool.failed(first)
    now[0] += 2.5  # the second opening lasts twice as long
    assert pool.order(key)[0] is second
    pool.succeeded(first)
    assert pool.order(key)[0] is first and first.cooldown == 2.0


def test_all_down_still_tries_in_rendezvous_order() -> None:
    pool = UpstreamPool(URLS)
    for u in pool.upstreams:
        pool.probed(u, False)
    assert len(pool.order("c:y")) == 2


def test_stateless_affinity_follows_system_prompt_and_first_user_message() -> None:
    turn1 = [{"role": "system", "content": "S"}, {"role": "user", "content": "你好"}]
    turn2 = [*turn1, {"role": "assistant", "content": "嗨"}, {"role": "user", "content": "再见"}]
    assert affinity_key(None, turn1) == affinity_key(None, turn2)
    assert affinity_key(None, turn1) != affinity_key(None, [{"role": "user", "content": "你好"}])
    assert affinity_key("abc", turn1) == "c:abc"

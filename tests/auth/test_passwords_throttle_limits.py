"""Password hashes, the login throttle and the per-user limits, with injected clocks."""

from __future__ import annotations

import pytest

from xiaoq.auth.limits import UserLimits
from xiaoq.auth.passwords import check_strength, hash_password, verify_password
from xiaoq.auth.throttle import LoginThrottle
from xiaoq.errors import TooManyRequests


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_hashes_are_salted_scrypt_and_verify():
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a != b and a.startswith("scrypt$15$8$1$") and "correct" not in a
    assert verify_password("correct horse", a) and verify_password("correct horse", b)
    assert not verify_password("correct horsE", a)
    for broken in (None, "", "plain", "scrypt$99$8$1$AA==$AA==", a.replace("scrypt", "md5")):
        assert not verify_password("correct horse", broken)


def test_password_rules():
    with pytest.raises(ValueError):
        check_strength("short")
    with pytest.raises(ValueError):
        check_strength("x" * 2000)
    check_strength("long enough")


def test_a_guessing_loop_is_slowed_to_a_handful_of_tries():
    """An attacker hammering one account for an hour, once a second: every attempt the throttle
    lets through counts; with doubling waits that is a few dozen, not 3600."""
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    keys = ["user:alice", "addr:10.0.0.9"]
    checked = 0
    for _ in range(3600):
        if throttle.wait(keys) == 0:
            checked += 1
            throttle.failed(keys)
        clock.t += 1
    print(f"guesses checked in one simulated hour: {checked}")
    assert 5 < checked <= 30  # 5 free, waits doubling to the 300 s ceiling, then one per 300 s


def test_the_wait_grows_and_a_success_or_the_window_resets_it():
    clock = Clock()
    throttle = LoginThrottle(free=2, base=1, ceiling=8, window=100, clock=clock)
    keys = ["user:bob"]
    throttle.failed(keys)
    throttle.failed(keys)
    assert throttle.wait(keys) == 1
    throttle.failed(keys)
    assert throttle.wait(keys) == 2
    for _ in range(10):
        throttle.failed(keys)
    assert throttle.wait(keys) == 8  # the ceiling
    clock.t += 100
    assert throttle.wait(keys) == 0
    throttle.failed(keys)
    throttle.failed(keys)
    throttle.succeeded(keys)
    assert throttle.wait(keys) == 0


def test_throttle_memory_is_bounded():
    throttle = LoginThrottle(max_entries=100, clock=Clock())
    for i in range(1000):
        throttle.failed([f"addr:{i}"])
    assert len(throttle._failures) == 100


def test_user_limits_streams_and_per_minute():
    clock = Clock()
    limits = UserLimits(streams=2, per_minute=3, clock=clock)
    limits.acquire(1)
    limits.acquire(1)
    with pytest.raises(TooManyRequests) as e:
        limits.acquire(1)
    assert e.value.code == "user_streams_limited"
    limits.acquire(2)  # another user is not affected
    limits.release(1)
    limits.acquire(1)  # third of the minute
    limits.release(1)
    with pytest.raises(TooManyRequests) as e:
        limits.acquire(1)
    assert e.value.code == "user_rate_limited" and e.value.headers["Retry-After"] == "60"
    clock.t += 60
    limits.acquire(1)

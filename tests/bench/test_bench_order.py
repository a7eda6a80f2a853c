"""bench/restore_pause.py compares its two modes fairly: neither always runs second."""

from __future__ import annotations

from bench import restore_pause


def test_restore_pause_alternates_which_mode_runs_first():
    modes = ["read on the scheduler thread", "prefetched"]
    orders = [restore_pause.mode_order(modes, rep) for rep in range(4)]
    assert orders[0] == modes and orders[1] == modes[::-1] and orders[2] == modes and orders[3] == modes[::-1]
    assert modes == ["read on the scheduler thread", "prefetched"]  # the caller's list is left alone

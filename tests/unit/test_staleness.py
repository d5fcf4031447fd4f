"""When a send valued at a head may still leave (keeper/execution/staleness.py)."""

from __future__ import annotations

import time

from keeper.execution.staleness import HEARD_KEPT, Staleness


def test_a_rise_makes_older_valuations_stale_and_later_ones_not() -> None:
    staleness = Staleness()
    staleness.rose(10)
    staleness.rose(8)  # an older rise heard late does not move it back
    assert staleness.stale(9) == "price rose since valued"
    assert staleness.stale(10) is None and staleness.stale(11) is None


def test_the_deadline_counts_from_when_the_head_was_first_heard() -> None:
    staleness = Staleness(deadline=1.9)  # 0.95 of a 2 s block time
    now = time.perf_counter()
    staleness.heard_head(5, at=now - 1.95)  # its next block is due
    staleness.heard_head(6, at=now - 1.4)  # half a second left
    staleness.heard_head(6, at=now - 100)  # heard again (a log of it): the first time counts
    assert staleness.stale(5) == "next block due since valued"
    assert staleness.stale(5, clock=False) is None  # arming a level: not by the clock
    assert staleness.stale(6) is None
    assert staleness.stale(7) is None  # a head never heard (a step's own): no deadline


def test_without_a_deadline_only_rises_count() -> None:
    staleness = Staleness()  # bundles: the builder drops what would revert
    staleness.heard_head(1, at=time.perf_counter() - 3600)
    assert staleness.stale(1) is None


def test_only_the_latest_heads_are_kept() -> None:
    staleness = Staleness(deadline=0.95)
    old = time.perf_counter() - 10
    for number in range(HEARD_KEPT + 10):
        staleness.heard_head(number, at=old)
    assert staleness.stale(0) is None  # forgotten: no deadline known
    assert staleness.stale(HEARD_KEPT + 9) == "next block due since valued"

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


def test_a_head_heard_late_counts_from_its_seal_read_from_the_chain_rhythm() -> None:
    staleness = Staleness(deadline=0.95, block_time=1.0)
    now = time.perf_counter()
    start = now - 6.96  # head 6 sealed 0.96 s ago: its successor is due
    for number in range(1, 6):  # heard on time, one a second
        staleness.heard_head(number, at=start + number - 0.01)
    staleness.heard_head(6, at=now - 0.66)  # heard 0.3 s late: the loop was busy
    assert staleness.sealed(6) == start + 5 - 0.01 + 1.0
    assert staleness.stale(6) == "next block due since valued"
    assert Staleness(deadline=0.95).stale(6) is None  # by hearing alone it would still go


def test_a_chain_without_a_rhythm_is_taken_as_sealed_when_heard() -> None:
    staleness = Staleness(deadline=0.95, block_time=1.0)
    now = time.perf_counter()
    staleness.heard_head(1, at=now - 30)  # a quiet spell, then blocks as sends arrive
    staleness.heard_head(2, at=now - 0.5)
    staleness.heard_head(3, at=now - 0.4)  # faster than the block time: no earlier seal
    assert staleness.sealed(2) == now - 0.5 and staleness.sealed(3) == now - 0.4
    assert staleness.stale(2) is None and staleness.stale(3) is None
    slow = Staleness(deadline=0.95, block_time=1.0)  # blocks every 3 s, 1 s configured
    slow.heard_head(1, at=now - 3.5)
    slow.heard_head(2, at=now - 0.5)  # the rhythm would say 2.5 s earlier: not taken
    assert slow.sealed(2) == now - 0.5 and slow.stale(2) is None

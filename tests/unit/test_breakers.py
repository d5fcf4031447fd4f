"""Circuit breakers: each trigger trips and halts sending; reset and a restored balance resume."""

from __future__ import annotations

from decimal import Decimal

import pytest
import structlog

from keeper.breakers import BALANCE, GAS, REVERTS, BreakerLimits, Breakers

ETH = 10**18


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def breakers(**limits: int | None) -> tuple[Breakers, Clock]:
    clock = Clock()
    return Breakers(BreakerLimits(**limits), clock=clock), clock


def test_nothing_tripped_allows_sending() -> None:
    b, _ = breakers(max_consecutive_reverts=3, max_gas_per_hour_wei=ETH, min_balance_wei=ETH)
    assert b.allow_send()
    assert [s.name for s in b.states()] == [REVERTS, GAS, BALANCE]
    assert all(s.enabled and not s.tripped for s in b.states())
    assert b.tripped() == []


def test_consecutive_reverts_trip_at_the_limit() -> None:
    b, clock = breakers(max_consecutive_reverts=3)
    b.record_outcome("reverted", 1)
    b.record_outcome("reverted", 1)
    assert b.allow_send() and b.consecutive_reverts == 2
    with structlog.testing.capture_logs() as logs:
        b.record_outcome("reverted", 1)
    assert not b.allow_send()
    (state,) = b.tripped()
    assert state.name == REVERTS and state.tripped_at == clock.now
    assert "3 liquidations reverted in a row" in state.reason
    assert logs[0]["log_level"] == "error" and logs[0]["breaker"] == REVERTS
    assert logs[0]["reason"] == state.reason


def test_a_confirmation_ends_the_streak_and_other_statuses_do_not() -> None:
    b, _ = breakers(max_consecutive_reverts=2)
    b.record_outcome("reverted")
    b.record_outcome("confirmed")
    b.record_outcome("reverted")
    for status in ("simulation-failed", "duplicate", "fee-cap", "lost", "error"):
        b.record_outcome(status)
    assert b.allow_send() and b.consecutive_reverts == 1
    b.record_outcome("reverted")
    assert not b.allow_send()


def test_latched_breakers_log_one_trip_and_keep_the_first_reason() -> None:
    b, clock = breakers(max_consecutive_reverts=1)
    b.record_outcome("reverted")
    first = b.tripped()[0]
    clock.now += 10
    with structlog.testing.capture_logs() as logs:
        b.record_outcome("reverted")
        b.record_outcome("confirmed")  # a later success does not unlatch it
    assert logs == []
    assert b.tripped() == [first] and not b.allow_send()


def test_gas_above_the_hourly_cap_trips() -> None:
    b, _ = breakers(max_gas_per_hour_wei=ETH)
    b.record_outcome("confirmed", ETH // 2)
    b.record_outcome("reverted", ETH // 2)
    assert b.allow_send() and b.gas_last_hour() == ETH  # at the cap is allowed
    b.record_gas(1)  # an approval
    assert not b.allow_send()
    assert b.tripped()[0].name == GAS and "above the cap 1.000000 ETH" in b.tripped()[0].reason


def test_gas_window_rolls_over_an_hour() -> None:
    b, clock = breakers(max_gas_per_hour_wei=ETH)
    b.record_outcome("confirmed", ETH)
    clock.now += 1800
    b.record_outcome("confirmed", ETH // 2)
    assert not b.allow_send()
    b.reset(GAS)
    assert b.allow_send() and b.gas_last_hour() == 0
    b.record_outcome("confirmed", ETH)
    clock.now += 3600  # the first spend leaves the window
    b.record_outcome("confirmed", ETH)
    assert b.gas_last_hour() == ETH and b.allow_send()
    # explicit times work too (and go through the same window)
    b.record_gas(ETH // 2, now=clock.now + 3599)
    assert not b.allow_send()


def test_balance_below_the_floor_trips_and_a_top_up_clears_it() -> None:
    b, _ = breakers(min_balance_wei=ETH)
    b.record_balance(ETH)
    assert b.allow_send()
    b.record_balance(ETH - 1)
    assert not b.allow_send() and b.tripped()[0].name == BALANCE
    assert "below the floor 1.000000 ETH" in b.tripped()[0].reason
    with structlog.testing.capture_logs() as logs:
        b.record_balance(2 * ETH)
    assert b.allow_send()
    assert logs[0]["log_level"] == "warning" and logs[0]["breaker"] == BALANCE


def test_reset_one_or_all() -> None:
    b, _ = breakers(max_consecutive_reverts=1, max_gas_per_hour_wei=ETH, min_balance_wei=ETH)
    b.record_outcome("reverted", 2 * ETH)
    b.record_balance(0)
    assert {s.name for s in b.tripped()} == {REVERTS, GAS, BALANCE}
    assert b.reset(REVERTS) == [REVERTS]
    assert not b.allow_send() and b.consecutive_reverts == 0
    with structlog.testing.capture_logs() as logs:
        assert b.reset() == [GAS, BALANCE]
    assert b.allow_send() and logs[0]["breakers"] == [GAS, BALANCE]
    assert b.reset() == []  # nothing tripped: nothing to do
    b.record_balance(0)  # the condition persists: it trips again at the next reading
    assert not b.allow_send()


def test_reset_of_an_unknown_breaker_is_an_error() -> None:
    b, _ = breakers()
    with pytest.raises(ValueError, match="unknown breaker 'nope'"):
        b.reset("nope")


def test_disabled_breakers_never_trip() -> None:
    b, _ = breakers(max_consecutive_reverts=None, max_gas_per_hour_wei=None,
                    min_balance_wei=None)
    for _ in range(10):
        b.record_outcome("reverted", 10 * ETH)
    b.record_balance(0)
    assert b.allow_send() and not any(s.enabled for s in b.states())


def test_limits_from_config_units() -> None:
    limits = BreakerLimits.from_eth(3, Decimal("0.5"), Decimal("0.05"))
    assert limits == BreakerLimits(3, ETH // 2, ETH // 20)
    assert BreakerLimits.from_eth(None, None, None) == BreakerLimits(None, None, None)


def test_reverts_mined_in_one_block_count_once() -> None:
    """Many reverts of one block (one backrun bundle behind a sale of ours that moved its
    pools) are one step of the streak; three blocks in a row with reverts trip it."""
    b, _ = breakers(max_consecutive_reverts=3)
    for _ in range(23):
        b.record_outcome("reverted", 1, block=1958)
    assert b.consecutive_reverts == 1 and b.allow_send()
    b.record_outcome("reverted", 1, block=1959)
    assert b.allow_send()
    b.record_outcome("reverted", 1, block=1960)
    assert [state.name for state in b.tripped()] == [REVERTS]

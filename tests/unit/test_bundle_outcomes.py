"""An outbid bundle is a lost race: the outcome the bundle submitter reports for it
(status "lost", the winner's transaction) is counted in keeper_races_lost_total and never by
the revert breaker, however many come in a row."""

from __future__ import annotations

from keeper.breakers import BreakerLimits, Breakers
from keeper.health import Health
from keeper.metrics import Metrics
from keeper.monitor import Monitor
from keeper.types import Outcome


def test_outbid_bundles_count_as_lost_races_and_trip_no_breaker() -> None:
    breakers = Breakers(BreakerLimits(max_consecutive_reverts=1))
    monitor = Monitor(Metrics(strategies=["aave_v3"]), Health(breakers=breakers), breakers)
    for n in range(5):
        winner = "0x" + f"{n:064x}"
        monitor.outcome(Outcome(f"k{n}", "lost", winner=winner,
                                reason=f"outbid: {winner} took the position first"), "aave_v3")
    assert breakers.tripped() == [] and breakers.allow_send()
    assert monitor.metrics.races_lost.labels("aave_v3")._value.get() == 5
    # One revert nobody explains still trips it (the breaker is on).
    monitor.outcome(Outcome("k9", "reverted"), "aave_v3")
    assert [state.name for state in breakers.tripped()]

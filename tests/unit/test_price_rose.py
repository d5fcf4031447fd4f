"""The dispatcher leaves to the next step what was ranked before a feed posted a higher
answer (`Dispatcher.price_rose`): sent, it would revert if the rise made it healthy. And a
reverted batch is one revert for the breakers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

from keeper.breakers import BreakerLimits, Breakers
from keeper.execution.dispatch import Dispatcher, LivePositions
from keeper.execution.executor import Executor
from keeper.execution.intents import IntentBuilder
from keeper.health import Health
from keeper.metrics import Metrics
from keeper.monitor import Monitor
from keeper.types import Opportunity, Outcome
from tests.unit.test_journal import opportunity


class Grouping:
    """The part of the intent builder `dispatch` uses first: it records what it groups and
    groups nothing (so nothing is launched)."""

    def __init__(self) -> None:
        self.grouped: list[str] = []

    def sends(self, opportunities: Sequence[Opportunity]) -> list[tuple[Opportunity, ...]]:
        self.grouped += [o.key for o in opportunities]
        return []


async def test_what_was_ranked_before_a_rise_is_not_sent() -> None:
    grouping = Grouping()
    d = Dispatcher(cast(Executor, object()), cast(IntentBuilder, grouping), LivePositions())
    before = opportunity("before", block=10)
    at_rise = opportunity("at", account="0x" + "0b" * 20, block=12)
    after = opportunity("after", account="0x" + "0c" * 20, block=13)
    async with asyncio.TaskGroup() as tasks:
        assert d.dispatch([before, at_rise, after], tasks) == 3
        grouping.grouped.clear()
        d.price_rose(12)
        d.price_rose(11)  # an older rise heard late changes nothing
        assert d.dispatch([before, at_rise, after], tasks) == 2
    # Ranked at the rise's own block (its step applied it) or later: sent.
    assert grouping.grouped == ["at", "after"]


def test_a_reverted_batch_is_one_revert_for_the_breakers() -> None:
    """A batch of four liquidations in one transaction that reverted: each liquidation has
    its outcome, the breakers hear one reverted transaction (it counted as four in a row)."""
    breakers = Breakers(BreakerLimits(max_consecutive_reverts=3))
    monitor = Monitor(Metrics(strategies=["aave_v3"]), Health(breakers=breakers), breakers)
    d = Dispatcher(cast(Executor, object()), cast(IntentBuilder, Grouping()), LivePositions(),
                   monitor=monitor)
    batch = tuple(opportunity(f"k{n}", account=f"0x{n + 1:040x}") for n in range(4))
    d._record(batch, Outcome("k0", "reverted", gas_paid=400))
    assert len(d.outcomes.recent) == 4 and all(o.status == "reverted" for o in d.outcomes.recent)
    assert breakers.tripped() == [] and breakers.allow_send()
    d._record(batch, Outcome("k0", "reverted", gas_paid=400))
    d._record(batch, Outcome("k0", "reverted", gas_paid=400))
    assert [s.name for s in breakers.tripped()] == ["consecutive_reverts"]  # three transactions

"""The dispatcher leaves to the next step what was ranked before a feed posted a higher
answer (`Dispatcher.price_rose`): sent, it would revert if the rise made it healthy."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

from keeper.execution.dispatch import Dispatcher, LivePositions
from keeper.execution.executor import Executor
from keeper.execution.intents import IntentBuilder
from keeper.types import Opportunity
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

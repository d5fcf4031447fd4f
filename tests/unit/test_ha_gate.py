"""The dispatcher's send gate (`[ha]`): a standby dispatches nothing and settles nothing;
once promoted, the journal's unsettled sends are recovered exactly once, whether the
promotion comes before or after the loop started."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from keeper.execution.dispatch import Dispatcher, LivePositions
from keeper.execution.executor import Executor
from keeper.execution.intents import IntentBuilder
from keeper.types import Outcome
from tests.unit.test_journal import opportunity


class Gate:
    def __init__(self) -> None:
        self.open = False

    def sending(self) -> bool:
        return self.open


class Recovering:
    """The part of an executor `recover` and `promoted` use: one recovery job per call."""

    def __init__(self) -> None:
        self.calls = 0

    def recovery(self) -> list[tuple[str, str, Any]]:
        self.calls += 1

        async def job() -> Outcome:
            return Outcome("k", "confirmed")

        return [("aave_v3", f"0x{self.calls:040x}", job())]


def dispatcher(gate: Gate, executor: Recovering) -> Dispatcher:
    return Dispatcher(cast(Executor, executor), cast(IntentBuilder, object()), LivePositions(),
                      gate=gate)


async def test_a_standby_sends_nothing_and_recovers_once_promoted() -> None:
    gate, executor = Gate(), Recovering()
    d = dispatcher(gate, executor)
    async with asyncio.TaskGroup() as tasks:
        assert d.dispatch([opportunity()], tasks) == 0  # never reaches the intent builder
        d.recover(tasks)  # the loop's start: a standby settles nothing
        assert executor.calls == 0
        gate.open = True
        d.promoted()
        assert executor.calls == 1 and d.inflight == 1
    assert d.inflight == 0  # the job ran and settled


async def test_promoted_before_the_loop_started_recovers_at_its_start() -> None:
    gate, executor = Gate(), Recovering()
    d = dispatcher(gate, executor)
    gate.open = True
    d.promoted()  # no task group yet: the loop's own `recover` does it
    assert executor.calls == 0
    async with asyncio.TaskGroup() as tasks:
        d.recover(tasks)
        assert executor.calls == 1

"""An early answer (keeper/intake/wire.py `EarlyFire`): the prepared level it reaches goes
at once, stamped with the head and behind the oracle transaction; past that level, what
opened between is valued once the level's bundles are out and goes behind the same
transaction; with no level reached, the answer is valued on its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from keeper.execution.bundles import Backrun
from keeper.intake import wire
from keeper.intake.answers import PendingAnswer
from keeper.intake.wire import EarlyFire
from keeper.prepared import Level, PreparedLiquidations
from keeper.types import BlockRef, Opportunity

FEED = "0x" + "ab" * 20


@dataclass(frozen=True)
class Ready:
    """Stands in for a ranked `Opportunity`: what the fire reads and re-stamps."""

    key: str
    block: int = 10
    strategy: str = "aave_v3"
    account: str = "0xabc"


@dataclass
class Dispatcher:
    sent: list[tuple[list[str], list[int], bool, str]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def touched_after(self, strategy: str, account: str, block: int) -> bool:
        return False

    def dispatch(self, opportunities: Sequence[Any], tasks: object, *, armed: object = None,
                 backrun: Backrun | None = None) -> int:
        assert backrun is not None
        self.sent.append(([o.key for o in opportunities], [o.block for o in opportunities],
                          armed is not None, backrun.hash))
        self.events.append("dispatch")
        return len(opportunities)

    async def launched(self) -> None:
        self.events.append("launched")


class Prepared:
    def __init__(self, levels: list[Level]) -> None:
        self.engine = type("Engine", (), {"dispatcher": Dispatcher()})()
        self.tasks: asyncio.TaskGroup | None = None
        self.levels = levels

    def ready(self, feed: str) -> list[Level]:
        return self.levels


def _fire(answer: int, levels: list[Level], monkeypatch: pytest.MonkeyPatch,
          ) -> tuple[int, Dispatcher, EarlyFire]:
    async def evaluated(engine: object, pending: PendingAnswer, head: BlockRef,
                        ) -> list[Opportunity]:
        return [cast(Opportunity, Ready("between", head.number))]

    monkeypatch.setattr(wire, "evaluated", evaluated)
    prepared = Prepared(levels)
    fire = EarlyFire(cast(PreparedLiquidations, prepared))
    head = BlockRef(number=12, hash="0x" + "11" * 32, parent_hash="0x" + "00" * 32,
                    timestamp=1_700_000_012)

    async def scenario() -> int:
        async with asyncio.TaskGroup() as tasks:
            prepared.tasks = tasks
            return fire(PendingAnswer(FEED, answer, "0xoracle", "hint", time.time()), head)

    sent = asyncio.run(scenario())
    return sent, prepared.engine.dispatcher, fire


LEVEL = Level(FEED, 99, -1, (cast(Opportunity, Ready("level")),))


def test_an_answer_on_the_level_sends_the_level_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    sent, dispatcher, fire = _fire(99, [LEVEL], monkeypatch)
    assert sent == 1 and dispatcher.sent == [(["level"], [12], False, "0xoracle")]
    assert (fire.levels, fire.evaluated, len(fire.seconds)) == (1, 0, 1)


def test_past_the_level_the_rest_follows_once_the_level_is_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent, dispatcher, fire = _fire(98, [LEVEL], monkeypatch)
    assert sent == 1  # the level, at once; the rest is dispatched by the task
    assert dispatcher.sent == [(["level"], [12], False, "0xoracle"),
                               (["between"], [12], False, "0xoracle")]
    assert dispatcher.events == ["dispatch", "launched", "dispatch"]
    # One handover time per answer: the level's.
    assert (fire.levels, fire.evaluated, fire.sent, len(fire.seconds)) == (1, 1, 2, 1)


def test_no_level_reached_values_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    sent, dispatcher, fire = _fire(100, [LEVEL], monkeypatch)
    assert sent == 0 and dispatcher.sent == [(["between"], [12], False, "0xoracle")]
    assert dispatcher.events == ["dispatch"]  # not waiting for any launch
    assert (fire.levels, fire.evaluated) == (0, 1)

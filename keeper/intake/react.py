"""What the keeper does with a pending answer: fire the prepared liquidations it reaches,
for the block the oracle transaction is expected in, as a backrun of that transaction.

The same path as a mined `AnswerUpdated` log (keeper/prepared.py `fire`): the deepest
prepared level the answer reaches is handed to the dispatcher, nothing is re-ranked. The
block is the one after the engine's head (the oracle transaction is not mined yet); an
answer that reaches no level is left to the block's own step once the transaction is
mined, as a log that reaches none is. The liquidations go behind the oracle transaction
(`fire(answer, block)` is given the transaction's hash by the wiring: a backrun bundle
when the keeper submits bundles, else the public path).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from keeper.intake.answers import PendingAnswer
from keeper.intake.sources import AnswerSource
from keeper.types import BlockRef

log = structlog.get_logger(__name__)

Fire = Callable[[PendingAnswer, int], int]  # (answer, block) -> liquidations handed over
LATENCIES_KEPT = 4096


@dataclass
class IntakeStats:
    """What the intake heard and did (tests, metrics and benchmarks read it)."""

    heard: dict[str, int] = field(default_factory=dict)  # by origin: pool, hint
    fired: int = 0  # answers that reached a prepared level
    sent: int = 0  # liquidations handed to the dispatcher
    # Seconds from the source reading the transaction to the dispatcher having the sends.
    handover: list[float] = field(default_factory=list)


class Intake:
    """Runs the sources; each new answer fires the prepared liquidations it reaches."""

    def __init__(self, sources: Sequence[AnswerSource], fire: Fire,
                 head: Callable[[], BlockRef | None]) -> None:
        self.sources = list(sources)
        self._fire, self._head = fire, head
        self.stats = IntakeStats()

    def heard(self, answer: PendingAnswer) -> int:
        """A source's answer: fire it for the block after the head; how many were sent."""
        stats = self.stats
        stats.heard[answer.origin] = stats.heard.get(answer.origin, 0) + 1
        head = self._head()
        if head is None:
            return 0
        sent = self._fire(answer, head.number + 1)
        if sent:
            stats.fired += 1
            stats.sent += sent
            stats.handover = [*stats.handover[-(LATENCIES_KEPT - 1):], time.time() - answer.seen]
        log.info("pending answer", feed=answer.feed, answer=answer.answer,
                 tx=answer.tx_hash, origin=answer.origin, block=head.number + 1, sent=sent)
        return sent

    async def run(self, stop: asyncio.Event) -> None:
        """Every source until `stop` (each retries on its own; none ends the others)."""
        async with asyncio.TaskGroup() as tasks:
            for source in self.sources:
                tasks.create_task(source.run(stop))

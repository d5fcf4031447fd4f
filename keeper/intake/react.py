"""What the keeper does with a pending answer: the sources' answers, de-duplicated by
their sources, are handed one by one to `fire` (keeper/intake/wire.py `EarlyFire`: the
liquidations the answer opens, valued at the engine's head, go as backruns of the oracle
transaction for the block after it), and counted.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from keeper.intake.answers import PendingAnswer
from keeper.intake.sources import AnswerSource
from keeper.types import BlockRef

log = structlog.get_logger(__name__)

# (answer, the engine's head) -> liquidations handed over now (more may follow later).
Fire = Callable[[PendingAnswer, BlockRef], int]
LATENCIES_KEPT = 4096
# Seconds the intake's log lines wait: written at once, the two lines of an answer (1-2 ms
# on the 2 shared cores) came before the first bundle's header and request, which run in
# the tasks the answer's dispatch had just made (the hint benchmark's traces).
LOG_DELAY = 0.05


def later(line: Callable[[], object]) -> None:
    """Write a log line LOG_DELAY seconds from now (at once outside a running loop)."""
    try:
        asyncio.get_running_loop().call_later(LOG_DELAY, line)
    except RuntimeError:  # no running loop (tests calling in directly)
        line()


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
        sent = self._fire(answer, head)
        if sent:
            stats.fired += 1
            stats.sent += sent
            stats.handover = [*stats.handover[-(LATENCIES_KEPT - 1):], time.time() - answer.seen]
        later(functools.partial(log.info, "pending answer", feed=answer.feed,
                                answer=answer.answer, tx=answer.tx_hash, origin=answer.origin,
                                block=head.number + 1, sent=sent))
        return sent

    async def run(self, stop: asyncio.Event) -> None:
        """Every source until `stop` (each retries on its own; none ends the others)."""
        async with asyncio.TaskGroup() as tasks:
            for source in self.sources:
                tasks.create_task(source.run(stop))

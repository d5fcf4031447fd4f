"""`Monitor`: what the engine reports to, fanned out to metrics, health and circuit breakers.

The engine knows one object with a handful of calls (a block processed, a ranking
done, an outcome, the sender's balance, the socket's state, an RPC request) and
asks it one question: may liquidations be sent now? The breakers answer; a tripped
breaker holds sends back while the keeper keeps watching, and shows in `/health`
as degraded and in the `keeper_breaker_tripped` metric.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import structlog

from keeper.breakers import Breakers
from keeper.health import Health
from keeper.metrics import Metrics
from keeper.types import BlockRef, Candidate, Opportunity, Outcome

log = structlog.get_logger(__name__)


class Monitor:
    """Metrics, health and breakers behind the engine's few reporting calls."""

    def __init__(self, metrics: Metrics, health: Health, breakers: Breakers) -> None:
        self.metrics = metrics
        self.health = health
        self.breakers = breakers
        metrics.track_breakers(breakers)
        self._socket_up: bool | None = None

    def block(self, head: BlockRef, blocks: int) -> None:
        """Blocks up to `head` were applied (`blocks` of them in this step)."""
        self.metrics.block_processed(head.number, head.timestamp, blocks=blocks)
        self.health.head(head.number, head.timestamp)

    def events(self, counts: Mapping[str, int]) -> None:
        for kind, count in counts.items():
            self.metrics.events(kind, count)

    def evaluated(
        self, tracked: Mapping[str, int], candidates: Sequence[Candidate],
        opportunities: Sequence[Opportunity],
    ) -> None:
        """A ranking: positions tracked and unhealthy, and opportunities found, per strategy."""
        unhealthy = Counter(c.strategy for c in candidates)
        found = Counter(o.strategy for o in opportunities)
        for strategy, count in tracked.items():
            self.metrics.positions(strategy, count, unhealthy.get(strategy, 0))
            self.metrics.opportunities(strategy, found.get(strategy, 0))

    def allow_send(self, opportunities: Sequence[Opportunity]) -> bool:
        """False while a breaker is tripped (the held-back opportunities are counted)."""
        if self.breakers.allow_send():
            return True
        for strategy, count in Counter(o.strategy for o in opportunities).items():
            self.metrics.held_back(strategy, count)
        return False

    def outcome(self, outcome: Outcome, strategy: str) -> None:
        """One liquidation's outcome. A lost race has status "lost", never "reverted": the
        revert breaker counts only reverts nobody explained."""
        self.breakers.record_outcome(outcome.status, outcome.gas_paid)
        self.metrics.outcome(strategy, outcome.status, outcome.realized_profit,
                             outcome.gas_paid, race_lost=bool(outcome.winner))

    def balance(self, wei: int) -> None:
        """The sending account's native balance (for the balance-floor breaker)."""
        self.breakers.record_balance(wei)

    def socket(self, up: bool) -> None:
        """The WebSocket's state, reported on every change."""
        if up == self._socket_up:
            return
        self._socket_up = up
        if up:
            self.health.clear("websocket")
        else:
            self.health.flag("websocket", "degraded", "websocket down; polling heads over HTTP")

    def rpc(self, url: str, seconds: float, ok: bool) -> None:
        self.metrics.rpc(url, seconds, ok)

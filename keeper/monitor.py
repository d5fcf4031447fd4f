"""`Monitor`: what the engine reports to, fanned out to metrics, health and circuit breakers.

The engine knows one object with a handful of calls (a block processed, a ranking
done, an outcome, the sender's balance, the socket's state, an RPC request) and
asks it one question: may liquidations be sent now? The breakers answer; a tripped
breaker holds sends back while the keeper keeps watching, and shows in `/health`
as degraded and in the `keeper_breaker_tripped` metric.

It also keeps this run's own account (`RunTally`: outcomes by status with their reasons,
realized profit, gas paid; the stop summary prints it, not the journal's whole life) and
logs a `status` line every `status_every` blocks: head, positions tracked, at risk (health
below 1), liquidations in flight, and this run's outcomes and profit.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from keeper import units
from keeper.breakers import BALANCE, Breakers
from keeper.health import Health
from keeper.log import flush_repeats
from keeper.metrics import Metrics
from keeper.types import BlockRef, Candidate, Opportunity, Outcome

log = structlog.get_logger(__name__)


ABANDONED = ("no-capital", "simulation-failed", "fee-cap")
"""Outcomes the journal records as abandoned: claimed, never sent."""
REASON_WIDTH = 120  # characters of one reason in the summary (revert data can be long)


@dataclass
class RunTally:
    """This run's outcomes (not the journal's whole life)."""

    started: float = field(default_factory=time.monotonic)
    counts: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, Counter[str]] = field(default_factory=dict)
    realized_profit: int = 0  # quote-token base units, net of gas
    gas_paid: int = 0  # native wei

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.status] += 1 + len(outcome.members)
        self.realized_profit += outcome.realized_profit
        self.gas_paid += outcome.gas_paid
        reason = reason_of(outcome)
        if reason:
            self.reasons.setdefault(outcome.status, Counter())[reason] += 1

    @property
    def abandoned(self) -> int:
        return sum(self.counts[s] for s in ABANDONED)

    def abandoned_reasons(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for status in ABANDONED:
            out.update(self.reasons.get(status, Counter()))
        return out


def reason_of(outcome: Outcome) -> str:
    """Why an outcome is not a confirmed liquidation, in a few words."""
    if outcome.status == "lost":
        return "a rival liquidated it first" if outcome.winner else (
            outcome.reason or "its nonce went to another transaction")
    label = {"no-capital": "not enough debt asset on hand",
             "simulation-failed": "simulation reverted",
             "fee-cap": "base fee above max_fee_per_gas"}.get(outcome.status)
    detail = " ".join(outcome.reason.split())
    if label is None:
        return _cut(detail)
    if outcome.status in {"no-capital", "fee-cap"} or not detail:
        return label
    return _cut(f"{label}: {detail}")


def _cut(text: str) -> str:
    return text if len(text) <= REASON_WIDTH else text[: REASON_WIDTH - 1] + "…"


class Monitor:
    """Metrics, health and breakers behind the engine's few reporting calls."""

    def __init__(
        self, metrics: Metrics, health: Health, breakers: Breakers, *, status_every: int = 0,
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.breakers = breakers
        metrics.track_breakers(breakers)
        self._socket_up: bool | None = None
        self.tally = RunTally()
        self.status_every = status_every  # blocks between status lines; 0: none
        self.inflight: Callable[[], int] = lambda: 0  # set once the keeper is built
        self.alerts: Callable[[str, dict[str, object]], None] | None = None
        self._tracked = 0
        self._at_risk = 0
        self._last_status: int | None = None
        self.unnamed: set[str] = set()  # candidates' tokens with no symbol yet (run_support)
        self._status_due: int | None = None

    def block(self, head: BlockRef, blocks: int) -> None:
        """Blocks up to `head` were applied (`blocks` of them in this step)."""
        self.metrics.block_processed(head.number, head.timestamp, blocks=blocks)
        self.health.head(head.number, head.timestamp)
        flush_repeats()
        if self.status_every and (self._last_status is None
                                  or head.number - self._last_status >= self.status_every):
            self._last_status = head.number
            self._status_due = head.number  # logged after this block's ranking (`evaluated`)

    def status(self, head: int) -> None:
        """One `status` line: where the keeper is and what this run did so far."""
        tally = self.tally
        log.info("status", head=head, tracked=self._tracked, at_risk=self._at_risk,
                 in_flight=self.inflight(), confirmed=tally.counts["confirmed"],
                 lost=tally.counts["lost"], abandoned=tally.abandoned,
                 reverted=tally.counts["reverted"], pnl=tally.realized_profit,
                 breakers="tripped" if not self.breakers.allow_send() else "ok")

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
        self._tracked = sum(tracked.values())
        self._at_risk = len({(c.strategy, c.account) for c in candidates})
        self.unnamed.update(t for c in candidates for t in (c.collateral, c.debt)
                            if units.token(t) is None)
        if self._status_due is not None:
            self.status(self._status_due)
            self._status_due = None
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

    def outcome(self, outcome: Outcome, strategy: str, *, breakers: bool = True) -> None:
        """One liquidation's outcome. A lost race has status "lost", never "reverted": the
        revert breaker counts only reverts nobody explained. `breakers=False`: a member of a
        batch, whose transaction the breakers hear once (`transaction`)."""
        self.tally.add(outcome)
        before = self._tripped_names()
        if breakers:
            self.breakers.record_outcome(outcome.status, outcome.gas_paid, block=outcome.block)
        if self.alerts is not None and outcome.status == "confirmed":
            self.alerts("liquidation_confirmed", {
                "strategy": strategy, "tx": outcome.tx_hash, "block": outcome.block,
                "realized_profit": outcome.realized_profit, "gas_paid": outcome.gas_paid})
        self._alert_trips(before)
        self.metrics.outcome(strategy, outcome.status, outcome.realized_profit,
                             outcome.gas_paid, race_lost=bool(outcome.winner))

    def transaction(self, outcome: Outcome) -> None:
        """A batch's one transaction, for the breakers: one revert (or success) and all its
        gas, however many liquidations it held (a reverted batch of four counted as four
        reverts in a row and tripped the three-revert breaker on its own)."""
        before = self._tripped_names()
        self.breakers.record_outcome(outcome.status, outcome.gas_paid, block=outcome.block)
        self._alert_trips(before)

    def balance(self, wei: int) -> None:
        """The sending account's native balance (for the balance-floor breaker)."""
        before = self._tripped_names()
        self.breakers.record_balance(wei)
        self._alert_trips(before, balance=wei)

    def _tripped_names(self) -> set[str]:
        return {state.name for state in self.breakers.tripped()}

    def _alert_trips(self, before: set[str], balance: int | None = None) -> None:
        """An alert for each breaker that tripped just now (the balance floor's is
        `low_balance`, the others' `breaker_tripped`)."""
        if self.alerts is None:
            return
        for state in self.breakers.tripped():
            if state.name in before:
                continue
            kind = "low_balance" if state.name == BALANCE else "breaker_tripped"
            details: dict[str, object] = {"breaker": state.name, "reason": state.reason}
            if balance is not None:
                details["balance"] = balance
            self.alerts(kind, details)

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

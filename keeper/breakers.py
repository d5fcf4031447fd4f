"""Circuit breakers: stop *sending* liquidations when something is wrong; watching goes on.

Three breakers, each disabled by a limit of None:

- `consecutive_reverts`: N liquidations in a row reverted on chain (status
  "reverted"). A confirmed liquidation ends the streak; outcomes that never
  reached the chain (duplicate, simulation-failed, fee-cap, ...) and "lost"
  (someone else liquidated first: competition, not a bug) leave it as it is.
  Reverts mined in one block count once: they share that block's state (seen: 23
  liquidations of one backrun bundle reverted together behind an earlier bundle
  of ours that sold into the same pools, and stopped the keeper for the crash); a
  real fault reverts block after block.
- `gas_per_hour`: gas paid (wei, confirmed or reverted, plus approvals and
  replacements through `record_gas`) in the last rolling hour above a cap.
- `min_balance`: the sending account's native balance below a floor.

The first two describe events whose cause is unknown, so they latch: they stay
tripped until `reset` (an operator's command) or a restart. The balance breaker
describes a condition the keeper keeps measuring, so a later reading at or above
the floor clears it by itself (a top-up resumes sending).

State lives in memory only, on purpose: resuming "by config" is a restart with a
changed config, and a restart must not be blocked by a stale file. A crash loop
that keeps spending gas is bounded by systemd's start limit (deploy/keeper.service).

Pure logic: no I/O but logging (an error line when a breaker trips, a warning when
it is reset or clears). Time comes from an injectable clock (`time.time` by default)
or the `now` argument.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import structlog

log = structlog.get_logger(__name__)

REVERTS = "consecutive_reverts"
GAS = "gas_per_hour"
BALANCE = "min_balance"
NAMES = (REVERTS, GAS, BALANCE)
WINDOW = 3600.0  # seconds in the rolling gas window
WEI_PER_ETH = 10**18


@dataclass(frozen=True)
class BreakerLimits:
    """The limits; None disables that breaker."""

    max_consecutive_reverts: int | None = 3
    max_gas_per_hour_wei: int | None = None
    min_balance_wei: int | None = None

    @classmethod
    def from_eth(
        cls,
        max_consecutive_reverts: int | None,
        max_gas_per_hour_eth: Decimal | None,
        min_balance_eth: Decimal | None,
    ) -> BreakerLimits:
        """Limits from config units (whole native tokens) to wei."""

        def wei(eth: Decimal | None) -> int | None:
            return None if eth is None else int(eth * WEI_PER_ETH)

        return cls(max_consecutive_reverts, wei(max_gas_per_hour_eth), wei(min_balance_eth))


@dataclass(frozen=True)
class BreakerState:
    """One breaker as seen from outside (health, metrics, logs)."""

    name: str
    enabled: bool
    tripped: bool
    reason: str = ""
    tripped_at: float | None = None  # clock time of the trip


def _eth(wei: int) -> str:
    return f"{wei / WEI_PER_ETH:.6f}"


class Breakers:
    """The three breakers of one sending account; `allow_send()` is False while any is tripped."""

    def __init__(
        self, limits: BreakerLimits, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._tripped: dict[str, tuple[str, float]] = {}  # name -> (reason, tripped_at)
        self._reverts = 0
        self._revert_block: int | None = None  # the block of the last revert counted
        self._gas: deque[tuple[float, int]] = deque()  # (time, wei) inside the window
        self._gas_sum = 0
        self._balance: int | None = None

    # -- queries ----------------------------------------------------------------------------

    def allow_send(self) -> bool:
        """True when no breaker is tripped."""
        return not self._tripped

    def tripped(self) -> list[BreakerState]:
        """The tripped breakers only."""
        return [s for s in self.states() if s.tripped]

    def states(self) -> list[BreakerState]:
        """Every breaker, in a fixed order."""
        enabled = {
            REVERTS: self.limits.max_consecutive_reverts is not None,
            GAS: self.limits.max_gas_per_hour_wei is not None,
            BALANCE: self.limits.min_balance_wei is not None,
        }
        out = []
        for name in NAMES:
            trip = self._tripped.get(name)
            out.append(BreakerState(
                name, enabled[name], trip is not None,
                trip[0] if trip else "", trip[1] if trip else None,
            ))
        return out

    @property
    def consecutive_reverts(self) -> int:
        return self._reverts

    def gas_last_hour(self, now: float | None = None) -> int:
        """Gas paid (wei) in the rolling hour ending `now`."""
        self._expire(self._now(now))
        return self._gas_sum

    # -- inputs -----------------------------------------------------------------------------

    def record_outcome(self, status: str, gas_wei: int = 0, now: float | None = None,
                       block: int | None = None) -> None:
        """One liquidation's outcome (`Outcome.status`), the gas it paid in wei, and the
        block it was mined in (reverts of one block count once)."""
        at = self._now(now)
        if status == "reverted" and block and block == self._revert_block:
            pass  # this block's reverts are counted already (0/None: the block is unknown)
        elif status == "reverted":
            self._reverts += 1
            self._revert_block = block
            limit = self.limits.max_consecutive_reverts
            if limit is not None and self._reverts >= limit:
                self._trip(REVERTS, f"{self._reverts} liquidations reverted in a row "
                                    f"(limit {limit})", at)
        elif status == "confirmed":
            self._reverts = 0
        self.record_gas(gas_wei, at)

    def record_gas(self, gas_wei: int, now: float | None = None) -> None:
        """Gas paid (wei) outside a liquidation's outcome: approvals, replacements, cancels."""
        at = self._now(now)
        if gas_wei > 0:
            self._gas.append((at, gas_wei))
            self._gas_sum += gas_wei
        self._expire(at)
        cap = self.limits.max_gas_per_hour_wei
        if cap is not None and self._gas_sum > cap:
            self._trip(GAS, f"gas spent in the last hour {_eth(self._gas_sum)} ETH "
                            f"above the cap {_eth(cap)} ETH", at)

    def record_balance(self, wei: int, now: float | None = None) -> None:
        """The sending account's native balance; below the floor trips, at or above clears."""
        self._balance = wei
        floor = self.limits.min_balance_wei
        if floor is None:
            return
        if wei < floor:
            self._trip(BALANCE, f"account balance {_eth(wei)} ETH below the floor "
                                f"{_eth(floor)} ETH", self._now(now))
        elif BALANCE in self._tripped:
            del self._tripped[BALANCE]
            log.warning("circuit breaker cleared: balance restored", breaker=BALANCE,
                        balance_eth=_eth(wei), sending=self.allow_send())

    def reset(self, name: str | None = None) -> list[str]:
        """Resume by command: clear breaker `name` (or all); returns the names cleared.

        Resetting also forgets what tripped it (the revert streak, the gas window), so
        it does not trip again on the next outcome. The balance breaker trips again at
        the next low reading.
        """
        if name is not None and name not in NAMES:
            raise ValueError(f"unknown breaker {name!r}; known: {', '.join(NAMES)}")
        names = NAMES if name is None else (name,)
        if REVERTS in names:
            self._reverts = 0
        if GAS in names:
            self._gas.clear()
            self._gas_sum = 0
        cleared = [n for n in names if self._tripped.pop(n, None) is not None]
        if cleared:
            log.warning("circuit breaker reset: sending resumed" if self.allow_send()
                        else "circuit breaker reset; others still tripped",
                        breakers=cleared, sending=self.allow_send())
        return cleared

    # -- internals --------------------------------------------------------------------------

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def _expire(self, now: float) -> None:
        while self._gas and self._gas[0][0] <= now - WINDOW:
            self._gas_sum -= self._gas.popleft()[1]

    def _trip(self, name: str, reason: str, at: float) -> None:
        if name in self._tripped:
            return  # already tripped: keep the first reason and time, log once
        self._tripped[name] = (reason, at)
        log.error("circuit breaker tripped: sending halted, still watching", breaker=name,
                  reason=reason)

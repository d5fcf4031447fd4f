"""Liquidatable positions the keeper did not take, told once each: the daemon's side of the
missed-opportunity report (`keeper journal --missed --log`).

The journal holds what the keeper ranked profitable and claimed. A position that is
liquidatable but never ranked (worth less than `min_profit_quote` at every size after gas
and its bid, sized to nothing for want of capital, or with no size valued: no exit route)
leaves nothing there. After each ranking, each such position gets one log line,
"liquidatable, not taken", with its reason and, where ranking valued it, the best net
profit it found (wei of the quote token, below the minimum, possibly negative). A position
is told again only after it was taken or stopped being liquidatable, so a crash's hundred
small positions give a hundred lines once, not a hundred per block. Under a running loop
the lines are written `WRITE_AFTER` seconds later: they are found while a crash block's
ranking finishes, and written there (~0.1 ms each) they held back its last wave's sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from keeper.types import Candidate, Opportunity

log = structlog.get_logger("keeper.passed_over")

EVENT = "liquidatable, not taken"
WRITE_AFTER = 0.05  # seconds: after the step's sends have left
# Reasons, short enough for a report's cell (24 characters).
BELOW_MINIMUM = "below min_profit_quote"  # at its best size, after gas and its bid
NO_CAPITAL = "no capital to size it"  # sized to nothing: no debt asset, no lender
NOT_VALUED = "no size valued"  # no exit route for its collateral, or nothing to repay


def reason(candidate: Candidate, rejected: Mapping[str, int]) -> tuple[str, int | None]:
    """Why ranking passed `candidate` over, and the best net profit it found, if any."""
    if candidate.key in rejected:
        return BELOW_MINIMUM, rejected[candidate.key]
    if candidate.max_repay <= 0:
        return NO_CAPITAL, None
    return NOT_VALUED, None


def _write(lines: Sequence[dict[str, Any]]) -> None:
    for line in lines:
        log.info(EVENT, **line)


def _valued(candidate: Candidate, rejected: Mapping[str, int]) -> tuple[bool, int]:
    return candidate.key in rejected, rejected.get(candidate.key, 0)


class PassedOver:
    """One log line per liquidatable position ranking passed over (see the docstring)."""

    def __init__(self, *, enabled: bool = False) -> None:
        self.enabled = enabled  # a keeper that sends (a scan or a backtest's engine: not)
        self._told: set[tuple[str, str]] = set()

    def note(self, candidates: Sequence[Candidate], opportunities: Sequence[Opportunity],
             rejected: Mapping[str, int], block: int) -> int:
        """After a ranking at `block`: tell the positions newly passed over; how many."""
        if not self.enabled:
            return 0
        taken = {(o.strategy, o.account) for o in opportunities}
        passed: dict[tuple[str, str], Candidate] = {}
        for c in candidates:  # an account's best-valued pair speaks for it
            who = (c.strategy, c.account)
            if who not in taken and (who not in passed or _valued(c, rejected)
                                     > _valued(passed[who], rejected)):
                passed[who] = c
        lines: list[dict[str, Any]] = []
        for who, candidate in passed.items():
            if who in self._told:
                continue
            why, best = reason(candidate, rejected)
            # The key names the pair (the console shows it as pair=WETH/USDC); `net_profit`:
            # the best ranking found, below the minimum (console: "profit").
            line: dict[str, Any] = {"strategy": candidate.strategy, "account": candidate.account,
                                    "key": candidate.key, "reason": why, "block": block}
            if best is not None:
                line["net_profit"] = best
            lines.append(line)
        # Taken now, or no longer liquidatable: told again if passed over later.
        self._told = set(passed)
        try:
            asyncio.get_running_loop().call_later(WRITE_AFTER, _write, lines)
        except RuntimeError:  # no loop running (a test, a tool): now
            _write(lines)
        return len(lines)

"""Start-up check: every debt asset a strategy may repay has a route to the quote token.

Ranking values what a liquidation leaves in the debt asset at the debt/quote price, and a
flash liquidation sells that surplus for the quote token in the same transaction, so a
debt asset with no pool against the quote token on any venue (`[dex]`: the V2 pairs and
every `[[dex.venues]]` entry, any fee tier) can never be liquidated profitably: that is a
configuration error, reported in one line naming the strategy and the token. No venue in
particular is required (no V2 pair either). A collateral only needs some way to the debt
asset (one pool or two hops through the quote token); one without any is skipped by
ranking like any candidate it cannot value, not an error (one odd collateral must not
stop the keeper), but not silently: `UnroutedCollateral` logs one warning line per
collateral and debt pair the first time a candidate shows it.

A strategy tells its debt assets through the optional `DebtAssets` capability (known after
its `sync`); one without it is not checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import structlog

from keeper.dex.venue import Venue
from keeper.errors import ConfigError
from keeper.strategy import Strategy
from keeper.types import Candidate

log = structlog.get_logger(__name__)


@runtime_checkable
class DebtAssets(Protocol):
    """A strategy that can say which tokens its borrowers may owe (known after `sync`)."""

    def debt_assets(self) -> Sequence[str]: ...


def unrouted(strategies: Sequence[Strategy], dex: Venue, quote_token: str
             ) -> list[tuple[str, str]]:
    """(strategy, token) of every debt asset without a pool against the quote token."""
    quote = quote_token.lower()
    missing: list[tuple[str, str]] = []
    for strategy in strategies:
        if not isinstance(strategy, DebtAssets):
            continue
        for token in strategy.debt_assets():
            if token.lower() != quote and dex.mid_price(token.lower(), quote) is None:
                missing.append((strategy.name, token.lower()))
    return missing


def check_routes(strategies: Sequence[Strategy], dex: Venue, quote_token: str) -> None:
    """Raise ConfigError (one line) when a debt asset has no route to the quote token."""
    missing = unrouted(strategies, dex, quote_token)
    if missing:
        what = ", ".join(f"{token} ({name})" for name, token in missing)
        raise ConfigError(
            f"no route to the quote token {quote_token.lower()} for the debt asset {what}: "
            "no pool of it against the quote token on any [dex] venue; add the pool's venue "
            "to [[dex.venues]] or disable the market")


class UnroutedCollateral:
    """Warns once per (collateral, debt) pair that candidates show with no way to sell the
    collateral into the debt asset on the exit venues (the price ranking needs: a pool of
    the pair or two hops through the quote token); ranking skips those candidates."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    def note(self, candidates: Sequence[Candidate], dex: Venue) -> list[tuple[str, str]]:
        """The pairs newly found without a route (each logged in one line)."""
        found: list[tuple[str, str]] = []
        for c in candidates:
            pair = (c.collateral.lower(), c.debt.lower())
            if pair in self.seen or pair[0] == pair[1]:
                continue
            self.seen.add(pair)
            if dex.mid_price(*pair) is None:
                found.append(pair)
                log.warning("no route for a collateral: its liquidations are skipped; add a "
                            "venue with a pool of it to [[dex.venues]]",
                            collateral=pair[0], debt=pair[1], strategy=c.strategy,
                            symbol=c.collateral_symbol)
        return found

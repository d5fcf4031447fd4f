"""Start-up check: every debt asset a strategy may repay has a route to the quote token.

Ranking values what a liquidation leaves in the debt asset at the debt/quote price, and a
flash liquidation sells that surplus for the quote token in the same transaction, so a
debt asset with no pool against the quote token on any venue (`[dex]`: the V2 pairs and
every `[[dex.venues]]` entry, any fee tier) can never be liquidated profitably: that is a
configuration error, reported in one line naming the strategy and the token. No venue in
particular is required (no V2 pair either). A collateral only needs some way to the debt
asset (one pool or two hops through the quote token); one without any is skipped by
ranking like any candidate it cannot value, not an error.

A strategy tells its debt assets through the optional `DebtAssets` capability (known after
its `sync`); one without it is not checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from keeper.dex.venue import Venue
from keeper.errors import ConfigError
from keeper.strategy import Strategy


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

"""Morpho Blue's liquidation curve: every market's positions at a moved oracle price.

A Morpho oracle quotes the collateral in loan-token units (1e36-scaled). When an asset
drops by d %, a market whose collateral it is sees its price times (1 - d); a market
that lends it sees the price divided by (1 - d) (the debt got cheaper); other markets are
unchanged. Health is `math.is_healthy` (Morpho._isHealthy) at that price, values are in
each market's loan-token units (so points are per loan token), and a position's bad debt
is its borrowed assets above its collateral's value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from keeper.liquidation_curve import CurvePoint, dropped
from strategies.morpho_blue import math
from strategies.morpho_blue.math import MarketParams, MarketState, PositionState

PROTOCOL = "morpho_blue"


@dataclass(frozen=True)
class MarketView:
    """A market as the risk view needs it: params, interest accrued to now, oracle price."""

    params: MarketParams
    accrued: MarketState
    price: int  # 1e36-scaled collateral price in loan-token units


def moved_price(view: MarketView, asset: str, drop_pct: int) -> int:
    """The market's oracle price after `asset` drops by `drop_pct` %."""
    asset = asset.lower()
    if asset == view.params.collateral_token:
        return dropped(view.price, drop_pct)
    if asset == view.params.loan_token:
        return view.price * 100 // (100 - drop_pct)
    return view.price


def curve_point(
    markets: Mapping[str, MarketView], positions: Mapping[str, Mapping[str, PositionState]],
    asset: str, drop_pct: int, loan_token: str,
) -> CurvePoint:
    """One point over the markets lending `loan_token` (values in its units)."""
    with_debt = liquidatable = collateral = bad_debt = 0
    for market_id, view in markets.items():
        if view.params.loan_token != loan_token:
            continue
        price = moved_price(view, asset, drop_pct)
        for position in positions.get(market_id, {}).values():
            if position.borrow_shares == 0:
                continue
            with_debt += 1
            value = math.mul_div_down(position.collateral, price, math.ORACLE_PRICE_SCALE)
            if not math.is_healthy(position, view.accrued, price, view.params.lltv):
                liquidatable += 1
                collateral += value
            bad_debt += max(0, math.borrowed_assets(position, view.accrued) - value)
    return CurvePoint(
        protocol=PROTOCOL, asset=asset.lower(), drop_pct=drop_pct, unit=loan_token,
        decimals=None, positions=with_debt, liquidatable=liquidatable,
        liquidatable_collateral=collateral, bad_debt=bad_debt,
    )


def liquidation_curve(
    markets: Mapping[str, MarketView], positions: Mapping[str, Mapping[str, PositionState]],
    drops: Sequence[int],
) -> list[CurvePoint]:
    """The curve of every asset of a priced market, at every drop, per loan token."""
    priced = {i: v for i, v in markets.items() if v.price > 0}
    assets = sorted({a for v in priced.values()
                     for a in (v.params.collateral_token, v.params.loan_token)})
    loans = sorted({v.params.loan_token for v in priced.values()})
    return [
        curve_point(priced, positions, asset, drop, loan)
        for asset in assets for loan in loans for drop in drops
    ]

"""Aave V3's liquidation curve: the book re-valued with one reserve's price dropped.

Pure and exact: each account is re-valued with `market.account_data` (the mirror of
Pool.getUserAccountData) on a copy of the market whose reserve carries the dropped price,
so a point equals what the Pool would report if the oracle moved by that much. Values are
in the oracle's base currency (USD, 8 decimals). An e-mode category with its own price
source keeps that price (a reserve drop does not move it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from keeper.liquidation_curve import BASE_CURRENCY, CurvePoint, dropped
from strategies.aave_v3 import math
from strategies.aave_v3.market import Account, Market, account_data

PROTOCOL = "aave_v3"
BASE_DECIMALS = 8  # AaveOracle BASE_CURRENCY_UNIT 1e8 (USD) on the devnet and mainnet


def shocked(market: Market, asset: str, drop_pct: int) -> Market:
    """`market` with `asset`'s oracle price lowered by `drop_pct` %."""
    reserves = tuple(
        replace(r, price=dropped(r.price, drop_pct)) if r.asset == asset.lower() else r
        for r in market.reserves
    )
    return replace(market, reserves=reserves)


def curve_point(
    market: Market, accounts: Sequence[Account], timestamp: int, asset: str, drop_pct: int,
    *, protocol: str = PROTOCOL,
) -> CurvePoint:
    """One point: every account with debt re-valued after `asset` drops by `drop_pct` %.
    `protocol`: the market's name (one strategy instance per Aave market)."""
    moved = shocked(market, asset, drop_pct)
    with_debt = liquidatable = collateral = bad_debt = 0
    for account in accounts:
        data = account_data(moved, account, timestamp)
        if data.total_debt_base == 0:
            continue
        with_debt += 1
        if math.is_liquidatable(data.health_factor):
            liquidatable += 1
            collateral += data.total_collateral_base
        bad_debt += max(0, data.total_debt_base - data.total_collateral_base)
    return CurvePoint(
        protocol=protocol, asset=asset.lower(), drop_pct=drop_pct, unit=BASE_CURRENCY,
        decimals=BASE_DECIMALS, positions=with_debt, liquidatable=liquidatable,
        liquidatable_collateral=collateral, bad_debt=bad_debt,
    )


def liquidation_curve(
    market: Market, accounts: Iterable[Account], timestamp: int, drops: Sequence[int],
    *, protocol: str = PROTOCOL,
) -> list[CurvePoint]:
    """The curve of every priced reserve at every drop (reserves in id order), named
    `protocol` (two Aave markets are two rows of the risk view, not one)."""
    listed = list(accounts)
    return [
        curve_point(market, listed, timestamp, reserve.asset, drop, protocol=protocol)
        for reserve in market.reserves if reserve.price > 0
        for drop in drops
    ]

"""Perp v2's liquidation curve: every account revalued with one market's mark dropped.

When a market's price drops by d %, its mark is taken d % lower (every other market's
unchanged) and each account is valued with the mirrored math (math.py): liquidatable when
its account value is under the liquidation margin requirement; its collateral is the
Vault's view of it (settlement balance, owed PnL, pending fee less funding), and its bad
debt is a negative account value. Values are USD with 18 decimals. A maker's orders are
taken as they stand at the current pool price (the pool's reshaping under the move is not
modelled).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from keeper.liquidation_curve import BASE_CURRENCY, CurvePoint, dropped
from strategies.perp_v2 import math as pm

PROTOCOL = "perp_v2"


def curve_point(
    accounts: Sequence[pm.AccountState], marks: Mapping[str, int], *, base: str,
    drop_pct: int, mm_ratio: int, decimals: int,
) -> CurvePoint:
    """One point: `base`'s mark `drop_pct` % lower."""
    moved = {b: dropped(m, drop_pct) if b == base else m for b, m in marks.items()}
    held = liquidatable = collateral = bad_debt = 0
    for account in accounts:
        if not any(p.total_size() for p in account.markets.values()):
            continue
        held += 1
        value = pm.account_value(account, moved, decimals)
        if pm.is_liquidatable(account, moved, mm_ratio, decimals):
            liquidatable += 1
            collateral += pm.collateral_and_account_value(account, moved, decimals)[0]
        bad_debt += max(0, -value)
    return CurvePoint(
        protocol=PROTOCOL, asset=base, drop_pct=drop_pct, unit=BASE_CURRENCY, decimals=18,
        positions=held, liquidatable=liquidatable, liquidatable_collateral=collateral,
        bad_debt=bad_debt,
    )


def liquidation_curve(
    accounts: Sequence[pm.AccountState], marks: Mapping[str, int], drops: Sequence[int], *,
    mm_ratio: int, decimals: int,
) -> list[CurvePoint]:
    """The curve of every market at every drop."""
    return [curve_point(accounts, marks, base=base, drop_pct=drop, mm_ratio=mm_ratio,
                        decimals=decimals)
            for base in sorted(marks) for drop in drops]

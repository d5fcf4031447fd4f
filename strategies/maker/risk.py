"""Maker's liquidation curve: every vault of the watched ilks at a lower collateral price.

Spotter.poke sets `spot = val * 1e9 / par / mat`, linear in the pip's price, so a drop of
d % in the collateral's price is `spot * (100 - d) / 100` (rounded down, as the integer
units round). A vault is then liquidatable when `ink * spot < art * rate` (Dog.bark's and
Cat.bite's test); values are Maker DAI (wad): the collateral at the dropped feed price
(spot times the ilk's liquidation ratio) and the debt `art * rate`; bad debt is the debt
above the collateral's value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from keeper.liquidation_curve import CurvePoint, dropped
from strategies.maker.book import VaultBook
from strategies.maker.math import RAY, is_unsafe

PROTOCOL = "maker"


def curve_point(
    book: VaultBook, gems: Mapping[str, str], mats: Mapping[str, int], asset: str,
    drop_pct: int, *, dai: str,
) -> CurvePoint:
    """One point: the vaults of every ilk whose gem is `asset`, after its drop (DAI wad)."""
    with_debt = liquidatable = collateral = bad_debt = 0
    for (name, _urn), vault in book.urns.items():
        ilk = book.ilks.get(name)
        if ilk is None or gems.get(name) != asset or vault.art == 0 or ilk.spot == 0:
            continue
        spot = dropped(ilk.spot, drop_pct)
        with_debt += 1
        value = vault.ink * spot * mats[name] // RAY // RAY
        debt = vault.art * ilk.rate // RAY
        if is_unsafe(vault.ink, vault.art, spot, ilk.rate):
            liquidatable += 1
            collateral += value
        bad_debt += max(0, debt - value)
    return CurvePoint(
        protocol=PROTOCOL, asset=asset, drop_pct=drop_pct, unit=dai, decimals=18,
        positions=with_debt, liquidatable=liquidatable, liquidatable_collateral=collateral,
        bad_debt=bad_debt)


def liquidation_curve(
    book: VaultBook, gems: Mapping[str, str], mats: Mapping[str, int], dai: str,
    drops: Sequence[int],
) -> list[CurvePoint]:
    """The curve of every watched ilk's gem, at every drop."""
    return [curve_point(book, gems, mats, asset, drop, dai=dai)
            for asset in sorted(set(gems.values())) for drop in drops]

"""The liquidation curve's data: what each strategy's risk function returns to `keeper risk`.

A point answers: if `asset`'s price drops by `drop_pct` % (every other price unchanged),
how many positions of this protocol are liquidatable, how much collateral they hold, and
how much debt exceeds its collateral (the bad debt the protocol would be left with).
Kept apart from `keeper.risk` (the command) so strategies can import it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_DROPS = tuple(range(0, 55, 5))  # 0, 5, ..., 50 %
BASE_CURRENCY = "base"  # `unit` of values in a protocol's oracle base currency (Aave: USD, 8 dec.)


@dataclass(frozen=True)
class CurvePoint:
    """One protocol's liquidatable collateral and bad debt after one asset's price drop.

    Values are integers in `unit`: BASE_CURRENCY (with `decimals`), or a token address
    (raw token units; e.g. a Morpho market's loan token).
    """

    protocol: str
    asset: str  # the token whose price drops (address, lower-case)
    drop_pct: int
    unit: str
    decimals: int | None  # of `unit` when known (None: a token; read its decimals())
    positions: int  # positions with debt
    liquidatable: int  # of them, liquidatable after the drop
    liquidatable_collateral: int
    bad_debt: int


def dropped(price: int, drop_pct: int) -> int:
    """`price` after a drop of `drop_pct` %, rounded down (integer oracle units)."""
    if not 0 <= drop_pct < 100:
        raise ValueError(f"a price drop must be in [0, 100) %, not {drop_pct}")
    return price * (100 - drop_pct) // 100

"""Aave V3's liquidation as a leg of the flash executor (`keeper.types.FlashLeg`).

The FlashLiquidator calls `Pool.liquidationCall(collateral, debt, borrower,
debtToCover, false)` for a leg whose protocol is `AAVE_V3`, after approving the
pool exactly `max_repay` of the plan's debt token. Aave has no market
parameters nor repaid shares: those fields are zeros.
"""

from __future__ import annotations

from collections.abc import Sequence

from keeper.types import FlashLeg, FlashMarket

AAVE_V3 = 0  # FlashLiquidator.Protocol.AaveV3
_ZERO = "0x" + "00" * 20
NO_MARKET: FlashMarket = (_ZERO, _ZERO, _ZERO, _ZERO, 0)


def aave_flash_leg(
    *,
    collateral: str,
    borrower: str,
    debt_to_cover: int,
    swap_pairs: Sequence[str],
    min_out: int = 0,
    max_repay: int | None = None,
) -> FlashLeg:
    """A `liquidationCall` of `debt_to_cover`; `max_repay` defaults to `debt_to_cover`."""
    return FlashLeg(
        protocol=AAVE_V3,
        collateral=collateral,
        borrower=borrower,
        amount=debt_to_cover,
        repaid_shares=0,
        max_repay=debt_to_cover if max_repay is None else max_repay,
        market=NO_MARKET,
        swap_pairs=tuple(swap_pairs),
        min_out=min_out,
    )

"""Morpho Blue's liquidation as a leg of the flash executor (`keeper.types.FlashLeg`).

The FlashLiquidator calls `Morpho.liquidate(marketParams, borrower, seizedAssets,
repaidShares, "")` for a leg whose protocol is `MORPHO_BLUE`, after approving
Morpho `max_repay` of the plan's debt token. The checks here are the ones Morpho
would revert on (exactly one of seized assets and repaid shares) and the ones
that make the leg fit its plan (the market lends the debt token and holds the
collateral being sold).
"""

from __future__ import annotations

from collections.abc import Sequence

from keeper.errors import StrategyError
from keeper.types import FlashLeg
from strategies.morpho_blue.math import MarketParams

MORPHO_BLUE = 1  # FlashLiquidator.Protocol.MorphoBlue


class MorphoFlashLegError(StrategyError):
    """A Morpho flash leg that Morpho or the plan would reject (a bug in its caller)."""


def morpho_flash_leg(
    *,
    market: MarketParams,
    debt: str,
    collateral: str,
    borrower: str,
    max_repay: int,
    swap_pairs: Sequence[str],
    seized_assets: int = 0,
    repaid_shares: int = 0,
    min_out: int = 0,
) -> FlashLeg:
    """A `liquidate` in `market` by seized assets or by repaid shares (exactly one non-zero),
    for a plan in `debt` selling `collateral`: the market's own loan and collateral tokens."""
    if (
        market.loan_token.lower() != debt.lower()
        or market.collateral_token.lower() != collateral.lower()
    ):
        raise MorphoFlashLegError(
            f"market tokens {market.loan_token}/{market.collateral_token} do not match "
            f"the debt {debt} and collateral {collateral}"
        )
    if (seized_assets == 0) == (repaid_shares == 0):
        raise MorphoFlashLegError("exactly one of seized_assets, repaid_shares must be set")
    return FlashLeg(
        protocol=MORPHO_BLUE,
        collateral=market.collateral_token,
        borrower=borrower,
        amount=seized_assets,
        repaid_shares=repaid_shares,
        max_repay=max_repay,
        market=(market.loan_token, market.collateral_token, market.oracle, market.irm,
                market.lltv),
        swap_pairs=tuple(swap_pairs),
        min_out=min_out,
    )

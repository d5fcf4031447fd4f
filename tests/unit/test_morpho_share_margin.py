"""Morpho Blue: a seizure capped at every borrow share but SHARE_MARGIN still liquidates after
other liquidations of the same market are mined first (the strategy's cap, issue 17).

Each liquidation rounds its repaidAssets (and any bad debt) up, so the market's assets per
borrow share fall a little; a seizure that needed exactly every one of a borrower's shares
at the ranked block then needs more than it has, and Morpho's `borrowShares -= repaidShares`
underflows (what one crash run in four showed as a failed flash simulation).
"""

from __future__ import annotations

import contextlib
import random

from strategies.morpho_blue import math
from strategies.morpho_blue.math import MarketState, MorphoMathError, PositionState
from strategies.morpho_blue.strategy import SHARE_MARGIN


def _liquidates(market: MarketState, position: PositionState, price: int, lltv: int,
                seized: int) -> bool:
    try:
        math.liquidate(market, position, collateral_price=price, lltv=lltv, seized_assets=seized)
    except MorphoMathError as exc:
        assert "underflows" in str(exc), exc
        return False
    return True


def test_the_share_margin_survives_earlier_liquidations_of_the_market() -> None:
    rng = random.Random(17)
    without_margin_failed = with_margin_failed = tried = 0
    for _ in range(800):
        assets = rng.randint(10**8, 10**24)
        shares = assets * 10**6 * rng.randint(1000, 1100) // 1000
        market = MarketState(total_supply_assets=2 * assets, total_supply_shares=2 * assets * 10**6,
                             total_borrow_assets=assets, total_borrow_shares=shares)
        lltv = rng.choice((77, 86, 94)) * 10**16
        price = 10 ** rng.randint(20, 50) * rng.randint(1, 9)
        lif = math.liquidation_incentive_factor(lltv)

        def position(rng: random.Random = rng, price: int = price, assets: int = assets,
                     shares: int = shares) -> PositionState:
            own = shares * rng.randint(1, 300) // 10_000
            debt = math.to_assets_up(own, assets, shares)
            ltv = rng.choice((880, 900, 950, 1100))
            return PositionState(borrow_shares=own,
                                 collateral=debt * math.ORACLE_PRICE_SCALE // price * 1000 // ltv)

        target = position()
        if target.borrow_shares <= SHARE_MARGIN or target.collateral == 0:
            continue
        exact = math.max_seized_for_repaid_shares(target.borrow_shares, price, lif, market)
        margin = math.max_seized_for_repaid_shares(
            target.borrow_shares - SHARE_MARGIN, price, lif, market)
        if not 0 < margin <= exact < target.collateral:
            continue  # the collateral, not the borrow, caps this seizure
        after = market
        for _ in range(rng.randint(1, 40)):  # the market's other liquidations, mined first
            other = position()
            cap = min(other.collateral, math.max_seized_for_repaid_shares(
                max(other.borrow_shares - SHARE_MARGIN, 0), price, lif, after))
            if cap:
                with contextlib.suppress(MorphoMathError):  # healthy: not liquidated
                    after = math.liquidate(after, other, collateral_price=price, lltv=lltv,
                                           seized_assets=cap).market
        if math.is_healthy(target, after, price, lltv):
            continue
        tried += 1
        without_margin_failed += not _liquidates(after, target, price, lltv, exact)
        with_margin_failed += not _liquidates(after, target, price, lltv, margin)
    assert tried > 300
    assert without_margin_failed > 0  # the failure the margin is for
    assert with_margin_failed == 0

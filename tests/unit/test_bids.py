"""Bids (keeper/bids.py, and ranking with them): the tip is a share of the expected profit,
within the configured tip and the fee cap, and ranking counts it as a cost."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest

from keeper.bids import BidPolicy
from keeper.execution.flash import bid_of
from keeper.ranking import rank
from keeper.types import Opportunity
from tests.unit.test_ranking import (
    BASE_FEE,
    E6,
    GAS_LIMIT,
    PRIORITY_FEE,
    WETH,
    candidate,
    dex,
)

GWEI = 10**9
POLICY = BidPolicy(share=Fraction(1, 2), min_tip=PRIORITY_FEE, max_fee_per_gas=500 * GWEI)


def _rank(repay: int, bids: BidPolicy | None, min_profit: int = 0) -> list[Opportunity]:
    return rank([candidate(repay)], dex=dex(2_000_000_000), quote_token=WETH,
                base_fee=BASE_FEE, priority_fee=PRIORITY_FEE, min_profit=min_profit,
                block=1, bids=bids)


def test_a_big_liquidation_bids_its_share_and_the_tip_is_a_cost() -> None:
    (fixed,) = _rank(10_000 * E6, None)  # a $10k repay, about $500 of bonus
    (bid,) = _rank(10_000 * E6, POLICY)
    assert fixed.priority_fee == PRIORITY_FEE
    before_tip = fixed.net_profit + GAS_LIMIT * PRIORITY_FEE
    assert bid.priority_fee == before_tip // 2 // GAS_LIMIT > 100 * PRIORITY_FEE
    assert bid.gas_cost == GAS_LIMIT * (BASE_FEE + bid.priority_fee)
    assert bid.net_profit == before_tip - GAS_LIMIT * bid.priority_fee
    assert bid.gross_value - bid.slippage - bid.gas_cost == bid.net_profit
    assert bid.debt_to_cover == fixed.debt_to_cover  # a share does not move the best size


def test_a_marginal_liquidation_pays_the_least_tip_and_the_cap_holds() -> None:
    tiny = BidPolicy(share=Fraction(1, 2), min_tip=PRIORITY_FEE, max_fee_per_gas=500 * GWEI)
    assert tiny.tip("s", profit_before_tip=GAS_LIMIT, gas_limit=GAS_LIMIT,
                    base_fee=BASE_FEE) == PRIORITY_FEE
    capped = BidPolicy(share=Fraction(1), min_tip=PRIORITY_FEE, max_fee_per_gas=BASE_FEE + 7)
    assert capped.tip("s", 10**30, GAS_LIMIT, BASE_FEE) == 7


def test_the_bid_decides_what_is_still_worth_sending() -> None:
    (fixed,) = _rank(10_000 * E6, None)
    # Worth the minimum at the fixed tip, not once half its profit is bid away.
    assert _rank(10_000 * E6, POLICY, min_profit=fixed.net_profit * 3 // 4) == []


def test_per_strategy_overrides_and_bounds() -> None:
    policy = BidPolicy(share=Fraction(1, 4), by_strategy={"test": Fraction(0)},
                       min_tip=PRIORITY_FEE)
    assert policy.share_for("test") == 0 and policy.share_for("other") == Fraction(1, 4)
    (opp,) = _rank(10_000 * E6, policy)
    assert opp.priority_fee == PRIORITY_FEE
    with pytest.raises(ValueError, match="bid share"):
        BidPolicy(share=Fraction(3, 2))


def test_in_a_bundle_a_flash_liquidation_bids_to_coinbase_and_tips_the_minimum() -> None:
    coinbase = BidPolicy(share=Fraction(95, 100), min_tip=PRIORITY_FEE,
                         max_fee_per_gas=500 * GWEI, to_coinbase=True)
    flash = dataclasses.replace(candidate(10_000 * E6), fee=lambda repay: 0)
    floor = 10**15
    (fixed,) = rank([flash], dex=dex(2_000_000_000), quote_token=WETH, base_fee=BASE_FEE,
                    priority_fee=PRIORITY_FEE, min_profit=floor, block=1)
    (bid,) = rank([flash], dex=dex(2_000_000_000), quote_token=WETH, base_fee=BASE_FEE,
                  priority_fee=PRIORITY_FEE, min_profit=floor, block=1, bids=coinbase)
    assert bid.priority_fee == PRIORITY_FEE and bid.gas_cost == fixed.gas_cost
    # FlashLiquidator.execute's bid: (profit - minProfit) * bidBps / 10,000, minProfit being
    # the gas plus the floor, so the share of what the liquidation makes over its floor.
    assert coinbase.bps("test") == 9_500
    assert bid.coinbase_bid == bid_of(fixed.net_profit + fixed.gas_cost,
                                      fixed.gas_cost + floor, 9_500) > 0
    assert bid.net_profit == fixed.net_profit - bid.coinbase_bid >= floor
    assert bid.gross_value - bid.slippage - bid.gas_cost - bid.coinbase_bid == bid.net_profit
    # A liquidation sent with the account's own tokens still bids by its tip.
    (direct,) = _rank(10_000 * E6, coinbase)
    assert direct.coinbase_bid == 0 and direct.priority_fee > PRIORITY_FEE


def test_in_a_bundle_a_tip_bid_is_the_share_of_the_profit_over_the_minimum() -> None:
    # A small position: 95 % of all its profit as the tip would leave less than the minimum
    # (publicly it is passed over); in a bundle the tip is 95 % of what is over it.
    share = Fraction(95, 100)
    (fixed,) = _rank(1_000 * E6, None)
    before_tip = fixed.net_profit + GAS_LIMIT * PRIORITY_FEE
    floor = before_tip // 2
    public = BidPolicy(share=share, min_tip=PRIORITY_FEE, max_fee_per_gas=500 * GWEI)
    assert _rank(1_000 * E6, public, min_profit=floor) == []
    bundle = dataclasses.replace(public, to_coinbase=True)
    (bid,) = _rank(1_000 * E6, bundle, min_profit=floor)
    assert bid.priority_fee == (before_tip - floor) * 95 // 100 // GAS_LIMIT > PRIORITY_FEE
    assert floor <= bid.net_profit == before_tip - GAS_LIMIT * bid.priority_fee

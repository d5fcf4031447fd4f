"""The bid share reaches the flash executor's plan (keeper/execution/intents.py): with a
bid to block.coinbase (bundles), a flash liquidation that ranking valued with a coinbase
bid carries the share in basis points, but only when its surplus ends in the quote token
(the bid is paid in ether); the public path's plan carries none."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from fractions import Fraction

from eth_abi.abi import decode

from keeper.bids import BidPolicy
from keeper.execution.flash import PLAN_TYPE
from keeper.execution.flash_route import Lenders
from keeper.execution.intents import IntentBuilder
from keeper.types import Candidate, FlashLeg, Opportunity, SwapLeg
from tests.factories import candidate
from tests.unit.test_flash_route import COLL, DEBT, EXIT, OTHER, PROFIT, QUOTE, route


class Legs:
    """A strategy's flash leg, as any strategy encodes one (Aave's shape)."""

    name = "aave_v3"

    def flash_liquidation(self, candidate: Candidate, repay: int, swap_pairs: Sequence[str],
                          min_out: int) -> FlashLeg:
        return FlashLeg(0, COLL, "0x" + "b0" * 20, repay, 0, repay, ("0x" + "00" * 20,) * 4
                        + (0,), tuple(swap_pairs), min_out)


def _opportunity(*, debt: str, sold: bool) -> Opportunity:
    c = dataclasses.replace(candidate(fee=lambda repay: 0), collateral=COLL, debt=debt)
    return Opportunity(
        strategy="aave_v3", key="k", account="0x" + "ab" * 20, collateral=COLL, debt=debt,
        debt_to_cover=1000, collateral_received=1100, gross_value=10**18, slippage=0,
        gas_limit=500_000, gas_cost=10**15, net_profit=10**17, quote_token=QUOTE,
        health_factor=9 * 10**17, block=1, candidate=c,
        swap=SwapLeg(EXIT, COLL, debt, 1100, 1090),
        profit_swap=SwapLeg(PROFIT, debt, QUOTE, 90, 80) if sold else None, debt_out=1090,
        coinbase_bid=10**16)


def _bid_bps(bids: BidPolicy | None, opp: Opportunity) -> int:
    flash = route(morpho=10**30)
    flash.liquidity[OTHER] = Lenders(morpho=10**30, aave=0, own=0)
    builder = IntentBuilder([], {"aave_v3": Legs()}, flash.dex, quote_token=QUOTE,
                            min_profit=10**15, flash=flash, bids=bids)
    intent = builder.intent((opp,))
    (plan,) = decode([PLAN_TYPE], bytes.fromhex(intent.call.data[10:]))
    return int(plan[7])


def test_the_bid_share_goes_in_the_plan_when_the_surplus_is_in_the_quote_token() -> None:
    coinbase = BidPolicy(share=Fraction(95, 100), to_coinbase=True)
    assert _bid_bps(coinbase, _opportunity(debt=DEBT, sold=True)) == 9_500
    assert _bid_bps(coinbase, _opportunity(debt=QUOTE, sold=False)) == 9_500
    # No profit sale ranked: the surplus is sold along the exits' quote when there is one.
    assert _bid_bps(coinbase, _opportunity(debt=DEBT, sold=False)) == 9_500
    # A surplus left in a token with no way to the quote token cannot pay a bid in ether.
    assert _bid_bps(coinbase, _opportunity(debt=OTHER, sold=False)) == 0
    # Ranking bid by the tip instead (no coinbase bid valued): none goes in the plan either.
    tipped = dataclasses.replace(_opportunity(debt=DEBT, sold=True), coinbase_bid=0)
    assert _bid_bps(coinbase, tipped) == 0
    # The public path: the bid is the priority fee, none goes in the plan.
    public = BidPolicy(share=Fraction(95, 100))
    assert _bid_bps(public, _opportunity(debt=DEBT, sold=True)) == 0
    assert _bid_bps(None, _opportunity(debt=DEBT, sold=True)) == 0

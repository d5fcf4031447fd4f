"""keeper.execution.flash_route: the cheapest lender with the liquidity, and its fee."""

from __future__ import annotations

import pytest

from keeper.dex.uniswap_v2 import Pair, PairBook
from keeper.execution.flash import Funding
from keeper.execution.flash_route import FlashRoute, Lenders, min_out, uniswap_fee

COLL, DEBT, QUOTE, OTHER = ("0x" + c * 20 for c in ("0a", "0d", "0e", "0f"))
EXIT, PROFIT, SIDE = ("0x" + c * 20 for c in ("11", "22", "33"))
A_TOKEN = "0x" + "44" * 20


def route(*, morpho: int = 0, aave: int = 0, own: int = 0, side_reserve: int = 0) -> FlashRoute:
    book = PairBook([
        Pair(EXIT, COLL, DEBT, 10**24, 10**24),  # the exit swap's pair: never lends
        Pair(PROFIT, DEBT, QUOTE, 10**24, 10**24),  # the profit swap's pair: never lends
        Pair(SIDE, DEBT, OTHER, side_reserve, 10**24),
    ])
    r = FlashRoute(executor="0x" + "99" * 20, morpho="0x" + "77" * 20,
                   aave_pool="0x" + "88" * 20, aave_premium_bps=5, dex=book, quote_token=QUOTE)
    r.a_tokens[DEBT] = A_TOKEN
    r.liquidity[DEBT] = Lenders(morpho=morpho, aave=aave, own=own)
    return r


def test_morpho_first_when_it_holds_enough() -> None:
    assert route(morpho=1000, aave=10**9).choose(DEBT, COLL, 1000) == (
        Funding.MORPHO_FLASH_LOAN, 0, None)


def test_own_balance_is_free_too() -> None:
    assert route(morpho=10, own=1000).choose(DEBT, COLL, 1000)[:2] == (Funding.OWN_BALANCE, 0)


def test_aave_premium_beats_the_uniswap_fee() -> None:
    funding, fee, pair = route(aave=10**9, side_reserve=10**24).choose(DEBT, COLL, 10**6)
    assert (funding, fee, pair) == (Funding.AAVE_FLASH_LOAN, 10**6 * 5 // 10_000, None)


def test_a_uniswap_flash_swap_from_a_pair_no_swap_of_the_plan_uses() -> None:
    funding, fee, pair = route(side_reserve=10**24).choose(DEBT, COLL, 10**6)
    assert (funding, pair) == (Funding.UNISWAP_V2_FLASH_SWAP, SIDE)
    assert fee == uniswap_fee(10**6) == -(-10**6 * 1000 // 997) - 10**6


def test_no_lender_is_an_error_and_the_ranking_fee_makes_the_size_worthless() -> None:
    r = route(morpho=5)
    with pytest.raises(ValueError, match="no lender"):
        r.choose(DEBT, COLL, 10)
    assert r.fee(DEBT, COLL)(10) == 10
    assert r.max_amount(DEBT, COLL) == 5


def test_min_out_allows_the_tolerance_only() -> None:
    assert min_out(10_000) == 9_950

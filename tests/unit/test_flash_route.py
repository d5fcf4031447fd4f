"""keeper.execution.flash_route: the cheapest lender with the liquidity, and its fee."""

from __future__ import annotations

import pytest

from keeper.dex.uniswap_v2 import Pair, PairBook
from keeper.dex.uniswap_v3 import V3Book
from keeper.dex.v3_pool import V3Pool
from keeper.dex.venue import Venues
from keeper.execution.flash import Funding, uniswap_v3_flash_fee
from keeper.execution.flash_route import (
    FlashRoute,
    Lenders,
    min_out,
    uniswap_fee,
    v3_flash_pools,
)

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
    assert min_out(10_000) == 9_850


# ---------------------------------------------------------------------------- V3 flash


V3_EXIT, V3_SALE, V3_SIDE_LOW, V3_SIDE_HIGH = ("0x" + c * 20 for c in ("51", "52", "53", "54"))
SQRT_ONE = 2**96  # price 1


def v3_route(balances: dict[str, int], *, side_reserve: int = 0, v2: bool = True) -> FlashRoute:
    """A route whose exits are V2 pairs and four V3 pools: one on the exit, one the surplus
    sale would use, and two others of the debt token in the 0.05 % and 1 % tiers."""
    pairs = PairBook([
        Pair(EXIT, COLL, DEBT, 10**24, 10**24),
        Pair(PROFIT, DEBT, QUOTE, 10**24, 10**24),
        Pair(SIDE, DEBT, OTHER, side_reserve, 10**24),
    ] if v2 else [])
    pools = V3Book([
        V3Pool(V3_EXIT, COLL, DEBT, 100, 1, SQRT_ONE, 0, 10**20),
        V3Pool(V3_SALE, DEBT, QUOTE, 100, 1, SQRT_ONE, 0, 10**20),
        V3Pool(V3_SIDE_LOW, DEBT, OTHER, 500, 10, SQRT_ONE, 0, 10**20),
        V3Pool(V3_SIDE_HIGH, DEBT, OTHER, 10_000, 200, SQRT_ONE, 0, 10**20),
    ])
    exits = Venues([pairs, pools], via=QUOTE)
    r = FlashRoute(executor="0x" + "99" * 20, morpho=None, aave_pool=None, aave_premium_bps=0,
                   dex=pairs, quote_token=QUOTE, exits=exits, v3_pools=v3_flash_pools(exits))
    r.liquidity[DEBT] = Lenders(v3=balances)
    return r


def test_a_v3_flash_in_the_cheapest_tier_beats_the_v2_flash_swap() -> None:
    everywhere = dict.fromkeys((V3_EXIT, V3_SALE, V3_SIDE_LOW, V3_SIDE_HIGH), 10**24)
    funding, fee, pool = v3_route(everywhere, side_reserve=10**24).choose(DEBT, COLL, 10**6)
    # Locked while they lend: the exit's pool, and the debt/quote pool (an exit may route
    # through the quote token). Of the others, the 0.05 % tier beats V2's 0.3 % and 1 %.
    assert (funding, pool, fee) == (Funding.UNISWAP_V3_FLASH, V3_SIDE_LOW, 500)
    assert fee == uniswap_v3_flash_fee(10**6, 500) < uniswap_fee(10**6)
    assert uniswap_v3_flash_fee(10**6 + 1, 500) == 501  # rounded up, as the pool charges


def test_a_v3_pool_lends_only_what_it_holds_and_never_on_the_exit() -> None:
    r = v3_route({V3_EXIT: 10**30, V3_SIDE_LOW: 999, V3_SIDE_HIGH: 10**6})
    funding, fee, pool = r.choose(DEBT, COLL, 10**6)  # the 0.05 % pool holds too little
    assert (funding, pool, fee) == (Funding.UNISWAP_V3_FLASH, V3_SIDE_HIGH, 10**6 // 100)
    assert r.max_amount(DEBT, COLL) == 10**6  # the exit's pool holds more but cannot lend
    with pytest.raises(ValueError, match="no lender"):
        r.choose(DEBT, COLL, 10**6 + 1)


def test_flash_funding_needs_no_v2_pair() -> None:
    r = v3_route({V3_SIDE_HIGH: 10**9}, v2=False)
    assert r.choose(DEBT, COLL, 10**6) == (Funding.UNISWAP_V3_FLASH, 10**4, V3_SIDE_HIGH)
    assert r.fee(DEBT, COLL)(10**6) == 10**4

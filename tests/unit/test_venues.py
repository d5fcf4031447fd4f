"""keeper.dex.venue: V2 and V3 books as one Venue; the best exit over venues, fee tiers and
two-hop paths; ranking across venues (sizes, sequential valuation, touched pools).

Books are synthetic: X (18 decimals, $2), USDC (6 decimals), WETH ($2000, the quote token).
"""

from __future__ import annotations

import dataclasses
from math import isqrt

from keeper.dex.uniswap_v2 import Pair, PairBook, get_amount_in
from keeper.dex.uniswap_v3 import V3Book
from keeper.dex.v3_pool import V3Pool
from keeper.dex.v3_ticks import get_tick_at_sqrt_ratio
from keeper.dex.venue import V2_HOP_GAS, V3_HOP_GAS, ExitHop, Venue, Venues, pools_of
from keeper.ranking import rank
from keeper.types import Candidate, LogFilter, Opportunity, SwapLeg

X, USDC, WETH = "0x" + "0a" * 20, "0x" + "0c" * 20, "0x" + "0e" * 20
PAIR_X_USDC, PAIR_USDC_WETH, PAIR_X_WETH = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20
POOL_X_USDC, POOL_X_WETH = "0x" + "44" * 20, "0x" + "55" * 20
E18, E6 = 10**18, 10**6


def v2(x_usdc_usd: int = 2_000_000) -> PairBook:
    """X/USDC `x_usdc_usd` a side, USDC/WETH $10M a side, X/WETH $100k a side."""
    return PairBook([
        Pair(PAIR_X_USDC, X, USDC, x_usdc_usd // 2 * E18, x_usdc_usd * E6),
        Pair(PAIR_USDC_WETH, USDC, WETH, 10_000_000 * E6, 5_000 * E18),
        Pair(PAIR_X_WETH, X, WETH, 50_000 * E18, 50 * E18),
    ])


def v3_pool(address: str, token0: str, token1: str, price: tuple[int, int], liquidity: int,
            *, fee: int = 500, width: int = 2000) -> V3Pool:
    """A pool at token1/token0 = price[0]/price[1] (base units), one position +-`width` ticks."""
    sqrt_price = isqrt(price[0] * 2**192 // price[1])
    tick = get_tick_at_sqrt_ratio(sqrt_price)
    spacing = {500: 10, 3000: 60}[fee]
    pool = V3Pool(address, token0, token1, fee, spacing, sqrt_price, tick, 0)
    lower, upper = (tick - width) // spacing * spacing, (tick + width) // spacing * spacing
    return pool.modify_position(lower, upper, liquidity)


def v3(liquidity: int = 10**17) -> V3Book:
    """X/USDC at $2 (2e6 USDC units per 1e18 X) concentrated, and a deep X/WETH pool."""
    return V3Book([
        v3_pool(POOL_X_USDC, X, USDC, (2 * E6, E18), liquidity),
        v3_pool(POOL_X_WETH, X, WETH, (1, 1000), 10**24),
    ])


def test_both_books_are_venues_and_v2_exact_out_mirrors_get_amount_in() -> None:
    pairs, pools = v2(), v3()
    assert isinstance(pairs, Venue) and isinstance(pools, Venue)
    leg = pairs.quote_exact_out(X, USDC, 1_000 * E6)
    assert leg is not None and leg.amount_out == 1_000 * E6
    reserve_in, reserve_out = pairs.pairs[PAIR_X_USDC].reserves(X)
    assert leg.amount_in == get_amount_in(1_000 * E6, reserve_in, reserve_out)
    assert pairs.quote_exact_out(X, USDC, reserve_out) is None
    assert pairs.pools(X, USDC) == (PAIR_X_USDC,) and pairs.pools(USDC, X) == (PAIR_X_USDC,)
    assert pools.pools(X, USDC) == (POOL_X_USDC,)
    sell = pools.quote(X, USDC, 100 * E18)
    assert sell is not None and sell.venue == "uniswap_v3" and sell.fee == 500
    assert pairs.exit_hop(leg) == ExitHop(0, PAIR_X_USDC, X < USDC)
    assert pools.exit_hop(sell) == ExitHop(1, POOL_X_USDC, True)


def test_the_deeper_venue_wins_each_size() -> None:
    venues = Venues([v2(), v3(liquidity=10**17)], via=WETH)
    small = venues.quote(X, USDC, 100 * E18)
    assert small is not None and small.venue == "uniswap_v3"  # 0.05 % beats 0.3 % near the price
    # Past the V3 range the concentrated pool runs dry: a huge sale goes to V2 (or a route).
    huge = venues.quote(X, USDC, 10**9 * E18)
    assert huge is not None and huge.venue != "uniswap_v3"
    assert huge.amount_out == max(
        leg.amount_out for leg in (v2().quote(X, USDC, 10**9 * E18),) if leg is not None)
    buy = venues.quote_exact_out(X, USDC, 100 * E6)
    assert buy is not None and buy.venue == "uniswap_v3"
    assert buy.amount_in < (v2().quote_exact_out(X, USDC, 100 * E6) or buy).amount_in


def test_a_two_hop_route_through_the_quote_token_when_it_pays() -> None:
    shallow = v2(x_usdc_usd=20_000)  # X/USDC on V2 is thin; no X/USDC pool on V3
    book = V3Book([v3_pool(POOL_X_WETH, X, WETH, (1, 1000), 10**24)])
    venues = Venues([shallow, book], via=WETH)
    leg = venues.quote(X, USDC, 5_000 * E18)
    assert leg is not None and leg.venue == "route"
    first, second = leg.hops
    assert (first.venue, first.token_in, first.token_out) == ("uniswap_v3", X, WETH)
    assert (second.venue, second.pair, second.amount_in) == ("uniswap_v2", PAIR_USDC_WETH,
                                                             first.amount_out)
    direct = shallow.quote(X, USDC, 5_000 * E18)
    assert direct is not None and leg.amount_out > direct.amount_out
    assert pools_of(leg) == {POOL_X_WETH, PAIR_USDC_WETH}
    assert set(venues.pools(X, USDC)) == {PAIR_X_USDC, PAIR_X_WETH, POOL_X_WETH, PAIR_USDC_WETH}
    assert venues.exit_hops(leg) == (ExitHop(1, POOL_X_WETH, True),
                                     ExitHop(0, PAIR_USDC_WETH, False))
    back = venues.quote_exact_out(X, USDC, leg.amount_out)
    assert back is not None and back.venue == "route" and back.amount_in <= 5_000 * E18
    # Moving a route moves both hops' pools, each on its own venue; the copy is untouched.
    moved = venues.copy()
    moved.swap(leg)
    again = moved.quote(X, USDC, 5_000 * E18)
    assert again is not None and again.amount_out < leg.amount_out
    assert venues.quote(X, USDC, 5_000 * E18) == leg
    # No route through the quote token when it is one of the two.
    assert venues.quote(X, WETH, E18) is not None
    assert venues.mid_price(X, USDC) is not None


def test_subscriptions_and_apply_span_every_venue() -> None:
    venues = Venues([v2(), v3()], via=WETH)
    sub = venues.subscriptions()
    assert isinstance(sub, LogFilter)
    assert set(sub.addresses) == {PAIR_X_USDC, PAIR_USDC_WETH, PAIR_X_WETH, POOL_X_USDC,
                                  POOL_X_WETH}
    assert len(sub.topics0) == 5  # Sync, and V3's Initialize, Swap, Mint, Burn
    assert venues.apply([]) == 0


def seize_x(repay: int) -> int:
    """Collateral X for `repay` USDC units: $1 of debt buys 0.5 X, plus a 5 % bonus."""
    return repay * 10**12 // 2 * 105 // 100


def candidate(account: str, max_repay: int) -> Candidate:
    return Candidate(
        strategy="test", account=account, collateral=X, debt=USDC, max_repay=max_repay,
        health_factor=9 * 10**17, key=f"test:{account}", seize=seize_x, gas_limit=400_000,
        spender="0x" + "5e" * 20,
    )


def ranked_on(dex: Venue, candidates: list[Candidate]) -> list[Opportunity]:
    return rank(candidates, dex=dex, quote_token=WETH, base_fee=10**10, priority_fee=10**9,
                min_profit=0, block=1)


def test_ranking_routes_each_exit_and_values_them_in_sequence() -> None:
    one = [candidate("0x" + "01" * 20, 20_000 * E6)]
    x_usdc = V3Book([v3_pool(POOL_X_USDC, X, USDC, (2 * E6, E18), 10**19)])
    v2_only = ranked_on(v2(), one)
    routed = ranked_on(Venues([v2(), x_usdc], via=WETH), one)
    assert v2_only[0].swap is not None and v2_only[0].swap.venue == "uniswap_v2"
    assert routed[0].swap is not None and routed[0].swap.venue == "uniswap_v3"
    assert routed[0].net_profit > v2_only[0].net_profit
    # Two flash liquidations selling into the same pool: the second is valued after the first.
    two = [dataclasses.replace(candidate(a, 20_000 * E6), fee=lambda repay: 0)
           for a in ("0x" + "01" * 20, "0x" + "02" * 20)]
    ranked = ranked_on(Venues([v2(), x_usdc], via=WETH), two)
    assert len(ranked) == 2 and ranked[1].net_profit < ranked[0].net_profit
    assert isinstance(ranked[0].swap, SwapLeg)


def test_a_flash_exit_is_chosen_net_of_its_swaps_gas() -> None:
    """V3's 0.05 % tier returns more than the V2 pair's 0.3 %, but its swap costs more gas
    (V3_HOP_GAS > V2_HOP_GAS): on a small flash liquidation at a high gas price the V2 exit
    nets more and is taken; at a negligible gas price V3 is. The swaps' gas is in the
    opportunity's gas limit and cost."""
    small = dataclasses.replace(candidate("0x" + "01" * 20, 10 * E6), fee=lambda repay: 0)
    x_usdc = V3Book([v3_pool(POOL_X_USDC, X, USDC, (2 * E6, E18), 10**19)])
    venues = Venues([v2(), x_usdc], via=WETH)
    leg_v2, leg_v3 = v2().quote(X, USDC, 6 * E18), x_usdc.quote(X, USDC, 6 * E18)
    assert leg_v2 is not None and leg_v3 is not None
    assert leg_v3.amount_out > leg_v2.amount_out and leg_v3.gas - leg_v2.gas == (
        V3_HOP_GAS - V2_HOP_GAS)
    (dear,) = rank([small], dex=venues, quote_token=WETH, base_fee=100 * 10**9,
                   priority_fee=0, min_profit=-(10**18), block=1)
    (cheap,) = rank([small], dex=venues, quote_token=WETH, base_fee=1, priority_fee=0,
                    min_profit=-(10**18), block=1)
    assert dear.swap is not None and dear.swap.venue == "uniswap_v2"
    assert cheap.swap is not None and cheap.swap.venue == "uniswap_v3"
    for opp, price in ((dear, 100 * 10**9), (cheap, 1)):
        assert opp.swap is not None and opp.profit_swap is not None
        assert opp.gas_limit == 400_000 + opp.swap.gas + opp.profit_swap.gas
        assert opp.gas_cost == opp.gas_limit * price
        assert opp.gross_value - opp.slippage - opp.gas_cost == opp.net_profit

"""V3Book's fast paths are exact: tiers skipped by their output bound and swaps stopped once
the pool is dry give the very quote of quoting every tier in full (issue 17's speed-up).

Pools are synthetic, three fee tiers of one pair with concentrated, wide and laddered
positions; amounts span dust to far past every range (where pools run dry).
"""

from __future__ import annotations

import random
from math import isqrt

from keeper.dex.uniswap_v3 import V3Book, _out_bound
from keeper.dex.v3_math import UniswapV3Error
from keeper.dex.v3_pool import (
    SwapResult,
    V3Pool,
    amount_in_of,
    amount_out_of,
    quote_exact_input_single,
    quote_exact_output_single,
)
from keeper.dex.v3_ticks import get_tick_at_sqrt_ratio

A, B = "0x" + "0a" * 20, "0x" + "0b" * 20
SPACING = {500: 10, 3000: 60, 10_000: 200}


def pool(rng: random.Random, address: str, fee: int) -> V3Pool:
    """A pool near price 1 (token1 per token0, jittered) with a few random positions."""
    sqrt_price = isqrt(rng.randint(900, 1100) * 2**192 // 1000)
    tick = get_tick_at_sqrt_ratio(sqrt_price)
    spacing = SPACING[fee]
    made = V3Pool(address, A, B, fee, spacing, sqrt_price, tick, 0)
    for _ in range(rng.randint(1, 6)):
        width = rng.choice((1, 5, 50, 500, 5000)) * spacing
        lower = (tick - rng.randint(0, width)) // spacing * spacing
        upper = lower + width + spacing
        made = made.modify_position(lower, upper, rng.randint(10**15, 10**21))
    return made


def roomy(p: V3Pool, zero_for_one: bool, amount: int, result: SwapResult) -> bool:
    """Selling 1 bp more after `result` fills too (quoted in full, no early stop)."""
    more = amount // 10_000 + 1
    try:
        extra = quote_exact_input_single(p.after(result), zero_for_one, more)
    except UniswapV3Error:
        return False
    return amount_in_of(extra, zero_for_one) == more


def brute(pools: list[V3Pool], token_in: str, amount: int, exact_in: bool,
          headroom: bool = False) -> tuple[str, int, int] | None:
    """Every tier quoted in full (QuoterV2's way), the best kept, the lowest fee on a tie;
    with `headroom`, only tiers that could take 1 bp more."""
    best: tuple[str, int, int] | None = None
    for p in sorted(pools, key=lambda p: p.fee):
        zero_for_one = p.zero_for_one(token_in)
        try:
            result = (quote_exact_input_single if exact_in else quote_exact_output_single)(
                p, zero_for_one, amount)
        except UniswapV3Error:
            continue
        got_in, got_out = amount_in_of(result, zero_for_one), amount_out_of(result, zero_for_one)
        if exact_in and (got_in != amount
                         or (headroom and not roomy(p, zero_for_one, amount, result))):
            continue
        if best is None or (got_out > best[2] if exact_in else got_in < best[1]):
            best = (p.address, got_in, got_out)
    return best


def test_pruned_and_early_stopped_quotes_equal_full_quotes() -> None:
    rng = random.Random(1717)
    compared = skipped_dry = 0
    for round_ in range(60):
        pools = [pool(rng, f"0x{round_:02x}{fee:06d}" + "00" * 16, fee)
                 for fee in (500, 3000, 10_000)]
        book, careful = V3Book(pools), V3Book(pools, headroom_bps=1)
        for _ in range(25):
            token_in = rng.choice((A, B))
            amount = rng.randint(1, 10 ** rng.randint(3, 26))
            for exact_in in (True, False):
                leg = book.quote(token_in, B if token_in == A else A, amount) if exact_in \
                    else book.quote_exact_out(token_in, B if token_in == A else A, amount)
                expected = brute(list(book.by_address.values()), token_in, amount, exact_in)
                got = None if leg is None else (leg.pair, leg.amount_in, leg.amount_out)
                assert got == expected, (round_, token_in, amount, exact_in)
                if exact_in:
                    leg = careful.quote(token_in, B if token_in == A else A, amount)
                    got = None if leg is None else (leg.pair, leg.amount_in, leg.amount_out)
                    assert got == brute(pools, token_in, amount, True, headroom=True), (
                        round_, token_in, amount)
                compared += 1
                skipped_dry += expected is None
    assert compared == 3000 and 0 < skipped_dry < compared  # both filled and dry sizes


def test_the_output_bound_is_never_reached() -> None:
    rng = random.Random(7)
    for round_ in range(40):
        p = pool(rng, "0x" + "cc" * 20, rng.choice((500, 3000, 10_000)))
        for _ in range(20):
            zero_for_one, amount = rng.random() < 0.5, rng.randint(1, 10**24)
            try:
                result = quote_exact_input_single(p, zero_for_one, amount)
            except UniswapV3Error:
                continue
            assert amount_out_of(result, zero_for_one) < _out_bound(p, zero_for_one, amount), (
                round_, amount)


def test_an_exit_must_leave_headroom_in_its_pool() -> None:
    """With `headroom_bps` (the keeper's exits), a pool is no exit for an input that fills
    its last range to within that much: the chain may hold a little more to sell by then.
    Below that, the quote is the same as without headroom."""
    only = V3Pool("0x" + "dd" * 20, A, B, 500, 10, 2**96, 0, 0).modify_position(-500, 500, 10**21)
    plain, careful = V3Book([only]), V3Book([only], headroom_bps=1)
    low, high = 1, 10**30  # the most the range takes: bisect on "filled"
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if plain.quote(A, B, middle) is not None else (low, middle)
    assert plain.quote(A, B, low) is not None and careful.quote(A, B, low) is None
    inside = low * 9_990 // 10_000
    assert careful.quote(A, B, inside) == plain.quote(A, B, inside) is not None
    assert careful.copy().headroom_bps == 1

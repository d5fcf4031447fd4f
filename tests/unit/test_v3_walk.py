"""A V3 pool's remembered exact-input walk (`keeper.dex.v3_pool._Walk`) changes no quote:
every field of a swap resumed from the steps its input covers equals the plain loop's,
at every step boundary (the least input covering a step, one wei under and over it), for
random sizes in random order on one pool object, and for swaps that cannot fill.

The plain loop is the same `V3Pool.swap` at a price limit one unit inside the default one
(only the default limit walks); a swap that does not reach the limit runs identically.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from math import isqrt

import pytest

from keeper.dex.v3_math import UniswapV3Error
from keeper.dex.v3_pool import PoolDry, SwapResult, V3Pool, default_limit
from keeper.dex.v3_ticks import get_tick_at_sqrt_ratio

A, B = "0x" + "0a" * 20, "0x" + "0b" * 20


def pool(rng: random.Random, fee: int, spacing: int) -> V3Pool:
    """A pool near price 1 with random positions, some a ladder of one-spacing ranges."""
    sqrt_price = isqrt(rng.randint(900, 1100) * 2**192 // 1000)
    tick = get_tick_at_sqrt_ratio(sqrt_price)
    made = V3Pool("0x" + "ee" * 20, A, B, fee, spacing, sqrt_price, tick, 0)
    for _ in range(rng.randint(1, 5)):
        width = rng.choice((1, 3, 40, 400, 4000)) * spacing
        lower = (tick - rng.randint(0, width)) // spacing * spacing
        made = made.modify_position(lower, lower + width + spacing, rng.randint(10**15, 10**21))
    base = tick // spacing * spacing
    for step in range(rng.randint(0, 30)):  # a ladder each side, crossed one tick at a time
        for lower in (base + (step + 2) * spacing, base - (step + 3) * spacing):
            made = made.modify_position(lower, lower + spacing, rng.randint(10**14, 10**18))
    return made


def plain(p: V3Pool, zero_for_one: bool, amount: int, must_fill: bool) -> SwapResult:
    inside = default_limit(zero_for_one) + (1 if zero_for_one else -1)
    return p.swap(zero_for_one, amount, inside, must_fill=must_fill)


def outcome(call: Callable[[], SwapResult]) -> SwapResult | str:
    try:
        return call()
    except PoolDry:
        return "dry"
    except UniswapV3Error as error:
        return f"revert {error}"


def same(p: V3Pool, zero_for_one: bool, amount: int, must_fill: bool) -> None:
    walked = outcome(lambda: p.swap(zero_for_one, amount, default_limit(zero_for_one),
                                    must_fill=must_fill))
    expected = outcome(lambda: plain(p, zero_for_one, amount, must_fill))
    if isinstance(expected, SwapResult) and isinstance(walked, SwapResult) \
            and expected.sqrt_price_x96 == default_limit(zero_for_one) + (
                1 if zero_for_one else -1):
        # Ran to the price limit (a pool that cannot fill, without must_fill): the two
        # limits differ by a unit, the amounts and liquidity do not.
        assert (walked.amount0, walked.amount1, walked.liquidity,
                walked.initialized_crossed) == (expected.amount0, expected.amount1,
                                                expected.liquidity, expected.initialized_crossed)
        return
    assert walked == expected, (amount, zero_for_one, must_fill)
    if isinstance(walked, SwapResult) and isinstance(expected, SwapResult):
        assert (walked.tick, walked.last_target) == (expected.tick, expected.last_target)


@pytest.mark.parametrize("seed", range(6))
def test_walked_swaps_equal_the_plain_loop(seed: int) -> None:
    rng = random.Random(seed)
    for fee, spacing in ((500, 10), (3000, 60), (10_000, 200)):
        p = pool(rng, fee, spacing)
        for zero_for_one in (True, False):
            for _ in range(40):  # random sizes, in random order, on the same pool object
                amount = rng.randint(1, 10 ** rng.randint(1, 25))
                same(p, zero_for_one, amount, must_fill=rng.random() < 0.5)
            walk = p._walks[zero_for_one]
            assert walk is not None  # walked from the second quote on
            for reach in walk.reach[:60]:  # every step boundary the walk has found
                for amount in (reach - 1, reach, reach + 1):
                    if amount > 0:
                        same(p, zero_for_one, amount, must_fill=True)
                        same(p, zero_for_one, amount, must_fill=False)


def test_a_changed_pool_walks_afresh_and_a_copy_keeps_its_walk() -> None:
    p = pool(random.Random(11), 3000, 60)
    first = p.swap(True, 10**18, default_limit(True))
    moved = p.after(first)
    assert moved._walks == {} and True in p._walks
    same(moved, True, 10**18, must_fill=False)
    twin = copy.deepcopy(p)  # the engine deep-copies its books for trial steps
    assert twin.swap(True, 10**18, default_limit(True)) == first

"""keeper.dex.v3_math / v3_ticks / v3_pool: the v3-core 1.0.1 test vectors (test/*.spec.ts and
their snapshots), the reverts, round trips, and the swap loop on a hand-made pool."""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, getcontext

import pytest

from keeper.dex.v3_math import (
    UINT128_MAX,
    UINT256_MAX,
    UniswapV3Error,
    add_delta,
    compute_swap_step,
    get_amount0_delta,
    get_amount1_delta,
    get_next_sqrt_price_from_input,
    get_next_sqrt_price_from_output,
    mul_div,
    mul_div_rounding_up,
)
from keeper.dex.v3_pool import (
    V3Pool,
    amount_in_of,
    amount_out_of,
    quote_exact_input_single,
    quote_exact_output_single,
)
from keeper.dex.v3_ticks import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    flip_tick,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
    least_significant_bit,
    most_significant_bit,
    next_initialized_tick_within_one_word,
)

E18 = 10**18


def encode_price_sqrt(reserve1: int, reserve0: int) -> int:
    """test/shared/utilities.ts encodePriceSqrt: bignumber.js's sqrt (20 decimal places,
    half up), times 2**96, rounded down."""
    getcontext().prec = 120
    root = (Decimal(reserve1) / Decimal(reserve0)).sqrt().quantize(
        Decimal("1e-20"), rounding=ROUND_HALF_UP)
    return int((root * Decimal(2**96)).to_integral_value(rounding=ROUND_FLOOR))


# test/__snapshots__/TickMath.spec.ts.snap
SQRT_AT_TICK = {
    -50: 79030349367926598376800521322,
    -100: 78833030112140176575862854579,
    -250: 78244023372248365697264290337,
    -500: 77272108795590369356373805297,
    -1000: 75364347830767020784054125655,
    -2500: 69919044979842180277688105136,
    -3000: 68192822843687888778582228483,
    -4000: 64867181785621769311890333195,
    -5000: 61703726247759831737814779831,
    -50000: 6504256538020985011912221507,
    -150000: 43836292794701720435367485,
    -250000: 295440463448801648376846,
    -500000: 1101692437043807371,
    -738203: 7409801140451,
    50: 79426470787362580746886972461,
    100: 79625275426524748796330556128,
    250: 80224679980005306637834519095,
    500: 81233731461783161732293370115,
    1000: 83290069058676223003182343270,
    0: 2**96,
    MIN_TICK: MIN_SQRT_RATIO,
    MAX_TICK: MAX_SQRT_RATIO,
}


@pytest.mark.parametrize(("tick", "expected"), sorted(SQRT_AT_TICK.items()))
def test_get_sqrt_ratio_at_tick_snapshot(tick: int, expected: int) -> None:
    assert get_sqrt_ratio_at_tick(tick) == expected


def test_get_sqrt_ratio_at_tick_bounds_and_precision() -> None:
    with pytest.raises(UniswapV3Error, match="T"):
        get_sqrt_ratio_at_tick(MIN_TICK - 1)
    with pytest.raises(UniswapV3Error, match="T"):
        get_sqrt_ratio_at_tick(MAX_TICK + 1)
    getcontext().prec = 120
    for tick in (-887220, -123456, -1, 1, 7, 77777, 500000, 887000):
        exact = (Decimal("1.0001") ** tick).sqrt() * Decimal(2**96)
        # Within the last unit (rounded up) and 1e-18 relative: the factors carry 128 bits.
        assert abs(Decimal(get_sqrt_ratio_at_tick(tick)) - exact) < 1 + exact * Decimal("1e-18")


def test_get_tick_at_sqrt_ratio_is_the_greatest_tick_at_or_below() -> None:
    assert get_tick_at_sqrt_ratio(MIN_SQRT_RATIO) == MIN_TICK
    assert get_tick_at_sqrt_ratio(MAX_SQRT_RATIO - 1) == MAX_TICK - 1
    assert get_tick_at_sqrt_ratio(2**96) == 0
    with pytest.raises(UniswapV3Error, match="R"):
        get_tick_at_sqrt_ratio(MIN_SQRT_RATIO - 1)
    with pytest.raises(UniswapV3Error, match="R"):
        get_tick_at_sqrt_ratio(MAX_SQRT_RATIO)
    for tick in (MIN_TICK + 1, -500000, -73, -1, 1, 50, 201_000, MAX_TICK - 1):
        ratio = get_sqrt_ratio_at_tick(tick)
        assert get_tick_at_sqrt_ratio(ratio) == tick
        assert get_tick_at_sqrt_ratio(ratio - 1) == tick - 1
        assert get_tick_at_sqrt_ratio(ratio + 1) == tick


def test_bit_math() -> None:
    assert most_significant_bit(1) == 0 and least_significant_bit(1) == 0
    assert most_significant_bit(2**255) == 255 and least_significant_bit(2**255) == 255
    assert most_significant_bit(UINT256_MAX) == 255 and least_significant_bit(UINT256_MAX) == 0
    assert most_significant_bit(0b101000) == 5 and least_significant_bit(0b101000) == 3
    for bad in (most_significant_bit, least_significant_bit):
        with pytest.raises(UniswapV3Error):
            bad(0)


def test_full_math() -> None:
    assert mul_div(UINT256_MAX, UINT256_MAX, UINT256_MAX) == UINT256_MAX
    assert mul_div_rounding_up(7, 3, 2) == 11 and mul_div(7, 3, 2) == 10
    with pytest.raises(UniswapV3Error):
        mul_div(1, 1, 0)
    with pytest.raises(UniswapV3Error):
        mul_div(UINT256_MAX, 2, 1)
    with pytest.raises(UniswapV3Error):  # rounding up past type(uint256).max
        mul_div_rounding_up(
            535006138814359, 432862656469423142931042426214547535783388063929571229938474969, 2)


def test_liquidity_math_add_delta() -> None:
    assert add_delta(1, 0) == 1 and add_delta(1, -1) == 0 and add_delta(1, 1) == 2
    with pytest.raises(UniswapV3Error, match="LA"):
        add_delta(UINT128_MAX - 14, 15)
    with pytest.raises(UniswapV3Error, match="LS"):
        add_delta(3, -4)


def test_sqrt_price_math_vectors() -> None:
    one = encode_price_sqrt(1, 1)
    assert get_next_sqrt_price_from_input(1, 1, 2**255, True) == 1
    assert get_next_sqrt_price_from_input(one, E18 // 10, 0, True) == one
    sqrt_p = 2**160 - 1
    max_amount = UINT256_MAX - (UINT128_MAX << 96) // sqrt_p
    assert get_next_sqrt_price_from_input(sqrt_p, UINT128_MAX, max_amount, True) == 1
    assert get_next_sqrt_price_from_input(one, E18, E18 // 10, False) == \
        87150978765690771352898345369
    assert get_next_sqrt_price_from_input(one, E18, E18 // 10, True) == \
        72025602285694852357767227579
    assert get_next_sqrt_price_from_input(one, 10 * E18, 2**100, True) == 624999999995069620
    assert get_next_sqrt_price_from_input(one, 1, UINT256_MAX // 2, True) == 1
    with pytest.raises(UniswapV3Error):
        get_next_sqrt_price_from_input(0, 1, E18 // 10, False)
    with pytest.raises(UniswapV3Error):
        get_next_sqrt_price_from_input(1, 0, E18 // 10, True)
    with pytest.raises(UniswapV3Error):  # input overflows the price
        get_next_sqrt_price_from_input(2**160 - 1, 1024, 1024, False)

    price = 20282409603651670423947251286016
    assert get_next_sqrt_price_from_output(price, 1024, 262143, True) == 77371252455336267181195264
    for amount, zero_for_one in ((262144, True), (4, False), (5, False), (262145, True)):
        with pytest.raises(UniswapV3Error):
            get_next_sqrt_price_from_output(price, 1024, amount, zero_for_one)
    assert get_next_sqrt_price_from_output(one, E18, E18 // 10, False) == \
        88031291682515930659493278152
    assert get_next_sqrt_price_from_output(one, E18, E18 // 10, True) == \
        71305346262837903834189555302

    up = get_amount0_delta(one, encode_price_sqrt(121, 100), E18, True)
    assert up == 90909090909090910
    assert get_amount0_delta(one, encode_price_sqrt(121, 100), E18, False) == up - 1
    assert get_amount1_delta(one, encode_price_sqrt(121, 100), E18, True) == 100000000000000000
    assert get_amount1_delta(one, encode_price_sqrt(121, 100), E18, False) == 99999999999999999
    low, high = encode_price_sqrt(2**90, 1), encode_price_sqrt(2**96, 1)
    assert get_amount0_delta(low, high, E18, True) == get_amount0_delta(low, high, E18, False) + 1
    assert get_amount0_delta(one, one, E18, True) == 0
    assert get_amount1_delta(one, 2 * one, 0, True) == 0

    big_p, big_l = 1025574284609383690408304870162715216695788925244, \
        50015962439936049619261659728067971248
    sqrt_q = get_next_sqrt_price_from_input(big_p, big_l, 406, True)
    assert sqrt_q == 1025574284609383582644711336373707553698163132913
    assert get_amount0_delta(sqrt_q, big_p, big_l, True) == 406


def test_compute_swap_step_vectors() -> None:
    one, target = encode_price_sqrt(1, 1), encode_price_sqrt(101, 100)
    # (sqrtQ, amountIn, amountOut, feeAmount), test/SwapMath.spec.ts
    assert compute_swap_step(one, target, 2 * E18, E18, 600) == \
        (target, 9975124224178055, 9925619580021728, 5988667735148)
    assert compute_swap_step(one, target, 2 * E18, -E18, 600) == \
        (target, 9975124224178055, 9925619580021728, 5988667735148)
    sqrt_q, amount_in, amount_out, fee = compute_swap_step(
        one, encode_price_sqrt(1000, 100), 2 * E18, E18, 600)
    assert (amount_in, amount_out, fee) == (999400000000000000, 666399946655997866, 600000000000000)
    assert sqrt_q == get_next_sqrt_price_from_input(one, 2 * E18, E18 - fee, False)
    sqrt_q, amount_in, amount_out, fee = compute_swap_step(
        one, encode_price_sqrt(10000, 100), 2 * E18, -E18, 600)
    assert (amount_in, amount_out, fee) == (2 * E18, E18, 1200720432259356)
    assert compute_swap_step(
        417332158212080721273783715441582, 1452870262520218020823638996,
        159344665391607089467575320103, -1, 1,
    ) == (417332158212080721273783715441581, 1, 1, 1)
    assert compute_swap_step(2, 1, 1, 3915081100057732413702495386755767, 1) == \
        (1, 39614081257132168796771975168, 0, 39614120871253040049813)
    assert compute_swap_step(2413, 79887613182836312, 1985041575832132834610021537970, 10, 1872) \
        == (2413, 0, 0, 10)
    p = 20282409603651670423947251286016
    assert compute_swap_step(p, p * 11 // 10, 1024, -4, 3000) == (p * 11 // 10, 26215, 0, 79)
    assert compute_swap_step(p, p * 9 // 10, 1024, -263000, 3000) == (p * 9 // 10, 1, 26214, 1)


def test_next_initialized_tick_within_one_word() -> None:
    bitmap: dict[int, int] = {}
    for tick in (-200, -55, -4, 70, 78, 84, 139, 240, 535):  # test/TickBitmap.spec.ts
        flip_tick(bitmap, tick, 1)
    right = {78: (84, True), -55: (-4, True), 77: (78, True), -56: (-55, True),
             255: (511, False), -257: (-200, True), 508: (511, False), 383: (511, False)}
    for tick, expected in right.items():
        assert next_initialized_tick_within_one_word(bitmap, tick, 1, False) == expected
    left = {78: (78, True), 79: (78, True), 258: (256, False), 256: (256, False),
            72: (70, True), -257: (-512, False), 1023: (768, False), 900: (768, False)}
    for tick, expected in left.items():
        assert next_initialized_tick_within_one_word(bitmap, tick, 1, True) == expected
    flip_tick(bitmap, 340, 1)
    assert next_initialized_tick_within_one_word(bitmap, 328, 1, False) == (340, True)
    flip_tick(bitmap, 340, 1)
    flip_tick(bitmap, 329, 1)
    assert next_initialized_tick_within_one_word(bitmap, 456, 1, True) == (329, True)
    # Spaced ticks: compressed rounds towards negative infinity.
    spaced: dict[int, int] = {}
    flip_tick(spaced, -120, 60)
    assert next_initialized_tick_within_one_word(spaced, -61, 60, True) == (-120, True)
    assert next_initialized_tick_within_one_word(spaced, -121, 60, False) == (-120, True)
    with pytest.raises(UniswapV3Error):
        flip_tick(spaced, 7, 60)


def full_range_pool(liquidity: int, sqrt_price: int, spacing: int = 60, fee: int = 3000) -> V3Pool:
    """One position from the lowest to the highest usable tick."""
    lower, upper = -(MAX_TICK // spacing) * spacing, (MAX_TICK // spacing) * spacing
    pool = V3Pool("0xpool", "0xa", "0xb", fee, spacing, sqrt_price,
                  get_tick_at_sqrt_ratio(sqrt_price), 0)
    return pool.modify_position(lower, upper, liquidity)


def test_swap_on_a_full_range_pool_matches_the_constant_product() -> None:
    liquidity = 10**6 * E18
    pool = full_range_pool(liquidity, 2**96)
    assert pool.liquidity == liquidity and len(pool.ticks) == 2
    result = quote_exact_input_single(pool, True, E18)
    out = amount_out_of(result, True)
    # x * y = L**2 on virtual reserves: out = y - L**2 / (x + in less fee), to within rounding.
    expected = liquidity - liquidity**2 // (liquidity + E18 * 997 // 1000)
    assert expected - 2 <= out <= expected
    back = quote_exact_output_single(pool, True, out)
    assert amount_out_of(back, True) == out
    assert amount_in_of(back, True) <= E18  # the least input for that output
    moved = pool.after(result)
    assert moved.sqrt_price_x96 < pool.sqrt_price_x96 and moved.ticks is pool.ticks


def test_crossing_ticks_and_running_out_of_liquidity() -> None:
    pool = full_range_pool(E18, 2**96)
    pool = pool.modify_position(-600, 600, 100 * E18).modify_position(-1200, -600, 50 * E18)
    assert pool.liquidity == 101 * E18
    assert pool.ticks[-600].liquidity_net == 50 * E18  # +100 starting, -50 ending
    assert pool.ticks[-600].liquidity_gross == 150 * E18
    result = quote_exact_input_single(pool, True, 10 * E18)
    assert result.initialized_crossed == 2 and result.tick < -1200
    assert result.liquidity == E18
    # Removing a position clears its ticks and their bits again.
    emptied = pool.modify_position(-1200, -600, -50 * E18).modify_position(-600, 600, -100 * E18)
    assert emptied.ticks == full_range_pool(E18, 2**96).ticks
    assert emptied.bitmap == full_range_pool(E18, 2**96).bitmap
    # Only a narrow position: a big sell exhausts it, and takes less than it was offered.
    narrow = V3Pool("0xp", "0xa", "0xb", 500, 10, 2**96, 0, 0).modify_position(-100, 100, E18)
    partial = quote_exact_input_single(narrow, True, 10**30)
    assert 0 < amount_in_of(partial, True) < 10**30 and partial.liquidity == 0
    assert partial.sqrt_price_x96 == MIN_SQRT_RATIO + 1
    with pytest.raises(UniswapV3Error):  # the output cannot be filled
        quote_exact_output_single(narrow, True, E18)
    with pytest.raises(UniswapV3Error):  # swaps entirely within a 0-liquidity region
        quote_exact_input_single(narrow.after(partial), True, E18)
    with pytest.raises(UniswapV3Error, match="AS"):
        narrow.swap(True, 0, MIN_SQRT_RATIO + 1)
    with pytest.raises(UniswapV3Error, match="SPL"):
        narrow.swap(True, 1, 2**96)

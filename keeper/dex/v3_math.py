"""Uniswap V3's swap arithmetic, mirrored from v3-core 1.0.1 in integers only.

Each function names the Solidity function it mirrors (contracts/libraries/<File>.sol,
`Library.function`). Python integers do not overflow, so every place where the
contract reverts on an overflow or a bad argument (a checked `require`, a SafeCast, a
LowGasSafeMath operation, a division by zero) is checked here explicitly and raises
`UniswapV3Error`; where the contract relies on a wrapping product to detect an
overflow (SqrtPriceMath.getNextSqrtPriceFromAmount0RoundingUp), the wrap is written
out. Tick and bitmap math is in `keeper.dex.v3_ticks`.
"""

from __future__ import annotations

from keeper.errors import FatalError

UINT128_MAX = 2**128 - 1
UINT160_MAX = 2**160 - 1
UINT256_MAX = 2**256 - 1
INT128_MIN, INT128_MAX = -(2**127), 2**127 - 1
INT256_MAX = 2**255 - 1
Q96 = 2**96  # FixedPoint96.Q96
RESOLUTION = 96  # FixedPoint96.RESOLUTION
FEE_DENOMINATOR = 1_000_000  # fees are in hundredths of a bip (pips)


class UniswapV3Error(FatalError):
    """The mirrored contract code would revert; the message names where."""


def mul_div(a: int, b: int, denominator: int) -> int:
    """FullMath.mulDiv: floor(a * b / denominator); reverts when the result overflows
    uint256 or the denominator is zero."""
    if denominator == 0:
        raise UniswapV3Error("FullMath.mulDiv: zero denominator")
    result = a * b // denominator
    if result > UINT256_MAX:
        raise UniswapV3Error("FullMath.mulDiv: overflow")
    return result


def mul_div_rounding_up(a: int, b: int, denominator: int) -> int:
    """FullMath.mulDivRoundingUp: ceil(a * b / denominator), with mulDiv's reverts and
    `require(result < type(uint256).max)` before rounding up."""
    result = mul_div(a, b, denominator)
    if a * b % denominator > 0:
        if result >= UINT256_MAX:
            raise UniswapV3Error("FullMath.mulDivRoundingUp: overflow")
        result += 1
    return result


def div_rounding_up(x: int, y: int) -> int:
    """UnsafeMath.divRoundingUp: ceil(x / y). The EVM's `div` by zero gives 0 (no revert)."""
    if y == 0:
        return 0
    return x // y + (1 if x % y > 0 else 0)


def to_uint160(y: int) -> int:
    """SafeCast.toUint160."""
    if not 0 <= y <= UINT160_MAX:
        raise UniswapV3Error("SafeCast.toUint160")
    return y


def to_int256(y: int) -> int:
    """SafeCast.toInt256 (of a uint256)."""
    if y > INT256_MAX:
        raise UniswapV3Error("SafeCast.toInt256")
    return y


def to_int128(y: int) -> int:
    """SafeCast.toInt128 (of an int256)."""
    if not INT128_MIN <= y <= INT128_MAX:
        raise UniswapV3Error("SafeCast.toInt128")
    return y


def add_delta(x: int, y: int) -> int:
    """LiquidityMath.addDelta: a uint128 plus an int128, reverting 'LS' / 'LA'."""
    if y < 0:
        z = (x - -y) % 2**128  # uint128 arithmetic wraps in 0.7.6; the require catches it
        if not z < x:
            raise UniswapV3Error("LS")
    else:
        z = (x + y) % 2**128
        if not z >= x:
            raise UniswapV3Error("LA")
    return z


def _safe_add(x: int, y: int) -> int:
    """LowGasSafeMath.add (uint256)."""
    z = x + y
    if z > UINT256_MAX:
        raise UniswapV3Error("LowGasSafeMath.add")
    return z


def get_next_sqrt_price_from_amount0_rounding_up(
    sqrt_px96: int, liquidity: int, amount: int, add: bool
) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromAmount0RoundingUp."""
    if amount == 0:
        return sqrt_px96
    numerator1 = liquidity << RESOLUTION
    product = amount * sqrt_px96
    fits = product <= UINT256_MAX  # `(product = amount * sqrtPX96) / amount == sqrtPX96`
    if add:
        if fits:
            denominator = numerator1 + product
            if denominator <= UINT256_MAX:  # `denominator >= numerator1`: no wrap
                return mul_div_rounding_up(numerator1, sqrt_px96, denominator)
        return div_rounding_up(numerator1, _safe_add(numerator1 // sqrt_px96, amount))
    if not (fits and numerator1 > product):
        raise UniswapV3Error("SqrtPriceMath.getNextSqrtPriceFromAmount0RoundingUp")
    return to_uint160(mul_div_rounding_up(numerator1, sqrt_px96, numerator1 - product))


def get_next_sqrt_price_from_amount1_rounding_down(
    sqrt_px96: int, liquidity: int, amount: int, add: bool
) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromAmount1RoundingDown."""
    if add:
        if liquidity == 0:  # a checked division by zero reverts
            raise UniswapV3Error("SqrtPriceMath.getNextSqrtPriceFromAmount1RoundingDown: 0")
        quotient = (
            (amount << RESOLUTION) // liquidity if amount <= UINT160_MAX
            else mul_div(amount, Q96, liquidity)
        )
        return to_uint160(_safe_add(sqrt_px96, quotient))
    quotient = (
        div_rounding_up(amount << RESOLUTION, liquidity) if amount <= UINT160_MAX
        else mul_div_rounding_up(amount, Q96, liquidity)
    )
    if not sqrt_px96 > quotient:
        raise UniswapV3Error("SqrtPriceMath.getNextSqrtPriceFromAmount1RoundingDown")
    return sqrt_px96 - quotient


def get_next_sqrt_price_from_input(
    sqrt_px96: int, liquidity: int, amount_in: int, zero_for_one: bool
) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromInput."""
    if sqrt_px96 <= 0 or liquidity <= 0:
        raise UniswapV3Error("SqrtPriceMath.getNextSqrtPriceFromInput")
    if zero_for_one:
        return get_next_sqrt_price_from_amount0_rounding_up(sqrt_px96, liquidity, amount_in, True)
    return get_next_sqrt_price_from_amount1_rounding_down(sqrt_px96, liquidity, amount_in, True)


def get_next_sqrt_price_from_output(
    sqrt_px96: int, liquidity: int, amount_out: int, zero_for_one: bool
) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromOutput."""
    if sqrt_px96 <= 0 or liquidity <= 0:
        raise UniswapV3Error("SqrtPriceMath.getNextSqrtPriceFromOutput")
    if zero_for_one:
        return get_next_sqrt_price_from_amount1_rounding_down(
            sqrt_px96, liquidity, amount_out, False)
    return get_next_sqrt_price_from_amount0_rounding_up(sqrt_px96, liquidity, amount_out, False)


def get_amount0_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    """SqrtPriceMath.getAmount0Delta (the unsigned overload)."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    numerator1 = liquidity << RESOLUTION
    numerator2 = sqrt_b - sqrt_a
    if sqrt_a <= 0:
        raise UniswapV3Error("SqrtPriceMath.getAmount0Delta")
    if round_up:
        return div_rounding_up(mul_div_rounding_up(numerator1, numerator2, sqrt_b), sqrt_a)
    return mul_div(numerator1, numerator2, sqrt_b) // sqrt_a


def get_amount1_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    """SqrtPriceMath.getAmount1Delta (the unsigned overload)."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    if round_up:
        return mul_div_rounding_up(liquidity, sqrt_b - sqrt_a, Q96)
    return mul_div(liquidity, sqrt_b - sqrt_a, Q96)


def compute_swap_step(
    sqrt_current: int, sqrt_target: int, liquidity: int, amount_remaining: int, fee_pips: int
) -> tuple[int, int, int, int]:
    """SwapMath.computeSwapStep: (sqrtRatioNextX96, amountIn, amountOut, feeAmount) of one
    step within a single liquidity value. `amount_remaining` > 0 is exact input, < 0 exact
    output (int256, as in the pool)."""
    zero_for_one = sqrt_current >= sqrt_target
    exact_in = amount_remaining >= 0
    amount_in = amount_out = 0
    if exact_in:
        remaining_less_fee = mul_div(amount_remaining, FEE_DENOMINATOR - fee_pips, FEE_DENOMINATOR)
        amount_in = (
            get_amount0_delta(sqrt_target, sqrt_current, liquidity, True) if zero_for_one
            else get_amount1_delta(sqrt_current, sqrt_target, liquidity, True)
        )
        if remaining_less_fee >= amount_in:
            sqrt_next = sqrt_target
        else:
            sqrt_next = get_next_sqrt_price_from_input(
                sqrt_current, liquidity, remaining_less_fee, zero_for_one)
    else:
        amount_out = (
            get_amount1_delta(sqrt_target, sqrt_current, liquidity, False) if zero_for_one
            else get_amount0_delta(sqrt_current, sqrt_target, liquidity, False)
        )
        if -amount_remaining >= amount_out:
            sqrt_next = sqrt_target
        else:
            sqrt_next = get_next_sqrt_price_from_output(
                sqrt_current, liquidity, -amount_remaining, zero_for_one)
    reached = sqrt_target == sqrt_next
    if zero_for_one:
        if not (reached and exact_in):
            amount_in = get_amount0_delta(sqrt_next, sqrt_current, liquidity, True)
        if not (reached and not exact_in):
            amount_out = get_amount1_delta(sqrt_next, sqrt_current, liquidity, False)
    else:
        if not (reached and exact_in):
            amount_in = get_amount1_delta(sqrt_current, sqrt_next, liquidity, True)
        if not (reached and not exact_in):
            amount_out = get_amount0_delta(sqrt_current, sqrt_next, liquidity, False)
    if not exact_in and amount_out > -amount_remaining:
        amount_out = -amount_remaining
    if exact_in and sqrt_next != sqrt_target:
        fee_amount = amount_remaining - amount_in
    else:
        fee_amount = mul_div_rounding_up(amount_in, fee_pips, FEE_DENOMINATOR - fee_pips)
    return sqrt_next, amount_in, amount_out, fee_amount

"""Exact integer mirrors of aave-v3-core's math libraries (@aave/core-v3 1.19.3), bit for bit.

The folder contracts/protocol/libraries/math/: WadRayMath, PercentageMath and MathUtils,
plus the checked uint256 arithmetic of Solidity 0.8 that every mirror in strategies.aave_v3
builds on. Every function names the Solidity function it mirrors. Only Python ints are used,
never floats. Where the contract reverts (checked 0.8 arithmetic, or the explicit overflow
guards of the assembly in WadRayMath/PercentageMath), the mirror raises an `AaveMathError`
(an ArithmeticError): `MathOverflowError`, `MathUnderflowError` or `MathDivisionByZeroError`.
Inputs are uint256 values; a negative or oversized input is a caller bug and raises
`ValueError`.

Rounding in 1.19.3: wadMul/wadDiv/rayMul/rayDiv/percentMul/percentDiv and rayToWad round half
up; the interest terms of MathUtils round down. The protocol logic built on these (reserves,
tokens, account data, liquidations) is in math.py.
"""

from __future__ import annotations

from keeper.errors import StrategyError

UINT256_MAX = 2**256 - 1
UINT40_MAX = 2**40 - 1

# WadRayMath
WAD = 10**18
HALF_WAD = WAD // 2
RAY = 10**27
HALF_RAY = RAY // 2
WAD_RAY_RATIO = 10**9

# PercentageMath
PERCENTAGE_FACTOR = 10**4
HALF_PERCENTAGE_FACTOR = PERCENTAGE_FACTOR // 2

# MathUtils
SECONDS_PER_YEAR = 365 * 24 * 60 * 60


class AaveMathError(StrategyError, ArithmeticError):
    """The mirrored contract code would revert."""


class MathOverflowError(AaveMathError):
    """A uint256 result would exceed 2**256 - 1 (checked arithmetic or an assembly guard)."""


class MathUnderflowError(AaveMathError):
    """A checked uint256 subtraction would go below zero."""


class MathDivisionByZeroError(AaveMathError):
    """A division by zero (Solidity panic 0x12, or the zero-divisor guard in wadDiv etc.)."""


def u256(value: int, name: str = "value") -> int:
    """`value` if it is a uint256; anything else is a caller bug (ValueError), not a revert."""
    if not 0 <= value <= UINT256_MAX:
        raise ValueError(f"{name}={value} is not a uint256")
    return value


def uints(*values: int) -> None:
    """Check that every value is a uint256 (see `u256`)."""
    for value in values:
        u256(value)


def add(a: int, b: int) -> int:
    """Solidity 0.8 checked `a + b`: reverts (MathOverflowError) past 2**256 - 1."""
    if (c := a + b) > UINT256_MAX:
        raise MathOverflowError(f"{a} + {b} overflows uint256")
    return c


def sub(a: int, b: int) -> int:
    """Solidity 0.8 checked `a - b`: reverts (MathUnderflowError) below zero."""
    if b > a:
        raise MathUnderflowError(f"{a} - {b} underflows uint256")
    return a - b


def mul(a: int, b: int) -> int:
    """Solidity 0.8 checked `a * b`: reverts (MathOverflowError) past 2**256 - 1."""
    if (c := a * b) > UINT256_MAX:
        raise MathOverflowError(f"{a} * {b} overflows uint256")
    return c


def div(a: int, b: int) -> int:
    """Solidity `a / b` (floor): reverts (MathDivisionByZeroError, panic 0x12) if b == 0."""
    if b == 0:
        raise MathDivisionByZeroError(f"{a} / 0")
    return a // b


def _mul_half_up(a: int, b: int, unit: int, name: str) -> int:
    """The assembly of wadMul/rayMul/percentMul: revert iff a > (MAX - unit/2) / b."""
    uints(a, b)
    if b != 0 and a > (UINT256_MAX - unit // 2) // b:
        raise MathOverflowError(f"{name}({a}, {b})")
    return (a * b + unit // 2) // unit


def _div_half_up(a: int, b: int, unit: int, name: str) -> int:
    """The assembly of wadDiv/rayDiv/percentDiv: revert iff b == 0 or a > (MAX - b/2) / unit."""
    uints(a, b)
    if b == 0:
        raise MathDivisionByZeroError(f"{name}({a}, 0)")
    if a > (UINT256_MAX - b // 2) // unit:
        raise MathOverflowError(f"{name}({a}, {b})")
    return (a * unit + b // 2) // b


def wad_mul(a: int, b: int) -> int:
    """Mirrors WadRayMath.wadMul: (a*b + HALF_WAD) / WAD, half up; reverts on overflow."""
    return _mul_half_up(a, b, WAD, "wadMul")


def wad_div(a: int, b: int) -> int:
    """Mirrors WadRayMath.wadDiv: (a*WAD + b/2) / b, half up; reverts if b == 0 or overflow."""
    return _div_half_up(a, b, WAD, "wadDiv")


def ray_mul(a: int, b: int) -> int:
    """Mirrors WadRayMath.rayMul: (a*b + HALF_RAY) / RAY, half up; reverts on overflow."""
    return _mul_half_up(a, b, RAY, "rayMul")


def ray_div(a: int, b: int) -> int:
    """Mirrors WadRayMath.rayDiv: (a*RAY + b/2) / b, half up; reverts if b == 0 or overflow."""
    return _div_half_up(a, b, RAY, "rayDiv")


def ray_to_wad(a: int) -> int:
    """Mirrors WadRayMath.rayToWad: a / 1e9, +1 when a % 1e9 >= 0.5e9 (half up); never reverts."""
    b, remainder = divmod(u256(a, "a"), WAD_RAY_RATIO)
    return b + 1 if remainder >= WAD_RAY_RATIO // 2 else b


def wad_to_ray(a: int) -> int:
    """Mirrors WadRayMath.wadToRay: a * 1e9; reverts on overflow."""
    return mul(u256(a, "a"), WAD_RAY_RATIO)


def percent_mul(value: int, percentage: int) -> int:
    """Mirrors PercentageMath.percentMul: (value*pct + 0.5e4) / 1e4, half up; overflow reverts."""
    return _mul_half_up(value, percentage, PERCENTAGE_FACTOR, "percentMul")


def percent_div(value: int, percentage: int) -> int:
    """Mirrors PercentageMath.percentDiv: (value*1e4 + pct/2) / pct, half up; pct == 0 reverts."""
    return _div_half_up(value, percentage, PERCENTAGE_FACTOR, "percentDiv")


# MathUtils
def _elapsed(last_update_ts: int, current_ts: int) -> int:
    if not 0 <= last_update_ts <= UINT40_MAX:
        raise ValueError(f"last_update_ts={last_update_ts} is not a uint40")
    return sub(u256(current_ts, "current_ts"), last_update_ts)


def calculate_linear_interest(rate: int, last_update_ts: int, current_ts: int) -> int:
    """Mirrors MathUtils.calculateLinearInterest: RAY + rate * dt / SECONDS_PER_YEAR (floor)."""
    result = mul(u256(rate, "rate"), _elapsed(last_update_ts, current_ts)) // SECONDS_PER_YEAR
    return add(RAY, result)


def calculate_compounded_interest(rate: int, last_update_ts: int, current_ts: int) -> int:
    """Mirrors MathUtils.calculateCompoundedInterest (3-term binomial approximation).

    RAY + rate*n/Y + n(n-1)*b2/2 + n(n-1)(n-2)*b3/6 with b2 = rayMul(rate, rate)/Y^2 and
    b3 = rayMul(b2, rate)/Y, every division flooring at the step where the contract does it.
    """
    exp = _elapsed(last_update_ts, current_ts)
    u256(rate, "rate")
    if exp == 0:
        return RAY
    exp_minus_one = exp - 1
    exp_minus_two = exp - 2 if exp > 2 else 0
    base_power_two = ray_mul(rate, rate) // (SECONDS_PER_YEAR * SECONDS_PER_YEAR)
    base_power_three = ray_mul(base_power_two, rate) // SECONDS_PER_YEAR
    second_term = mul(mul(exp, exp_minus_one), base_power_two) // 2
    third_term = mul(mul(mul(exp, exp_minus_one), exp_minus_two), base_power_three) // 6
    first_term = mul(rate, exp) // SECONDS_PER_YEAR
    return add(add(add(RAY, first_term), second_term), third_term)


# aave-v3-origin v3.5 (and v3.6) rounding: the explicit floor/ceil variants TokenMath uses,
# and MathUtils.mulDivCeil / PercentageMath.percentDivCeil. Same revert conditions as the
# contracts' assembly (a product past 2**256 - 1, a zero divisor).
def _checked_product(a: int, b: int, name: str) -> int:
    uints(a, b)
    if (c := a * b) > UINT256_MAX:
        raise MathOverflowError(f"{name}({a}, {b})")
    return c


def ray_mul_floor(a: int, b: int) -> int:
    """Mirrors WadRayMath.rayMulFloor (aave-v3-origin v3.5+): a*b / RAY, rounded down."""
    return _checked_product(a, b, "rayMulFloor") // RAY


def ray_mul_ceil(a: int, b: int) -> int:
    """Mirrors WadRayMath.rayMulCeil (aave-v3-origin v3.5+): a*b / RAY, rounded up."""
    return -(-_checked_product(a, b, "rayMulCeil") // RAY)


def ray_div_floor(a: int, b: int) -> int:
    """Mirrors WadRayMath.rayDivFloor (aave-v3-origin v3.5+): a*RAY / b, rounded down."""
    if u256(b, "b") == 0:
        raise MathDivisionByZeroError(f"rayDivFloor({a}, 0)")
    return _checked_product(a, RAY, "rayDivFloor") // b


def ray_div_ceil(a: int, b: int) -> int:
    """Mirrors WadRayMath.rayDivCeil (aave-v3-origin v3.5+): a*RAY / b, rounded up."""
    if u256(b, "b") == 0:
        raise MathDivisionByZeroError(f"rayDivCeil({a}, 0)")
    return -(-_checked_product(a, RAY, "rayDivCeil") // b)


def mul_div_ceil(a: int, b: int, c: int) -> int:
    """Mirrors MathUtils.mulDivCeil (aave-v3-origin v3.5+): a*b / c, rounded up."""
    if u256(c, "c") == 0:
        raise MathDivisionByZeroError(f"mulDivCeil({a}, {b}, 0)")
    return -(-_checked_product(a, b, "mulDivCeil") // c)


def percent_div_ceil(value: int, percentage: int) -> int:
    """Mirrors PercentageMath.percentDivCeil (aave-v3-origin v3.5+): value*1e4 / pct, up."""
    if u256(percentage, "percentage") == 0:
        raise MathDivisionByZeroError(f"percentDivCeil({value}, 0)")
    return -(-_checked_product(value, PERCENTAGE_FACTOR, "percentDivCeil") // percentage)


def calculate_compounded_interest_v34(rate: int, last_update_ts: int, current_ts: int) -> int:
    """Mirrors MathUtils.calculateCompoundedInterest of aave-v3-origin v3.4+ (unchecked):

    x = rate*exp/SECONDS_PER_YEAR; RAY + x + rayMul(x, x/2 + rayMul(x, x/6)).
    The contract computes it unchecked; with a uint128 rate and a uint40 elapsed time
    nothing here can wrap, so the wrap is not mirrored (a wrap raises ValueError).
    """
    exp = _elapsed(last_update_ts, current_ts)
    u256(rate, "rate")
    if exp == 0:
        return RAY
    x = rate * exp // SECONDS_PER_YEAR
    inner = x // 2 + ray_mul(x, x // 6)
    result = RAY + x + ray_mul(x, inner)
    return u256(result, "compounded interest")


def percent_mul_floor(value: int, percentage: int) -> int:
    """Mirrors PercentageMath.percentMulFloor (aave-v3-origin v3.5+): value*pct / 1e4, down."""
    return _checked_product(value, percentage, "percentMulFloor") // PERCENTAGE_FACTOR

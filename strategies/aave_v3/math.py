"""Exact integer mirrors of Aave V3's math (@aave/core-v3 1.19.3), bit for bit.

Every function names the Solidity function it mirrors. Only Python ints are used, never floats.
Where the contract reverts (checked 0.8 arithmetic, or the explicit overflow guards of the
assembly in WadRayMath/PercentageMath), the mirror raises an `AaveMathError` (an ArithmeticError):
`MathOverflowError`, `MathUnderflowError` or `MathDivisionByZeroError`. Inputs are uint256
values; a negative or oversized input is a caller bug and raises `ValueError`.

Rounding in 1.19.3: wadMul/wadDiv/rayMul/rayDiv/percentMul/percentDiv and rayToWad round half up;
every plain `/` (interest terms, base-currency values, averages, liquidation amounts) rounds down,
including the user's debt in base currency (1.19.3 does NOT round debt up).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

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

# ValidationLogic / LiquidationLogic
HEALTH_FACTOR_LIQUIDATION_THRESHOLD = 10**18
MINIMUM_HEALTH_FACTOR_LIQUIDATION_THRESHOLD = 95 * 10**16
CLOSE_FACTOR_HF_THRESHOLD = 95 * 10**16
DEFAULT_LIQUIDATION_CLOSE_FACTOR = 5000
MAX_LIQUIDATION_CLOSE_FACTOR = 10**4


class AaveMathError(ArithmeticError):
    """The mirrored contract code would revert."""


class MathOverflowError(AaveMathError):
    """A uint256 result would exceed 2**256 - 1 (checked arithmetic or an assembly guard)."""


class MathUnderflowError(AaveMathError):
    """A checked uint256 subtraction would go below zero."""


class MathDivisionByZeroError(AaveMathError):
    """A division by zero (Solidity panic 0x12, or the zero-divisor guard in wadDiv etc.)."""


def _u256(value: int, name: str = "value") -> int:
    if not 0 <= value <= UINT256_MAX:
        raise ValueError(f"{name}={value} is not a uint256")
    return value


def _uints(*values: int) -> None:
    for value in values:
        _u256(value)


def _add(a: int, b: int) -> int:
    if (c := a + b) > UINT256_MAX:
        raise MathOverflowError(f"{a} + {b} overflows uint256")
    return c


def _sub(a: int, b: int) -> int:
    if b > a:
        raise MathUnderflowError(f"{a} - {b} underflows uint256")
    return a - b


def _mul(a: int, b: int) -> int:
    if (c := a * b) > UINT256_MAX:
        raise MathOverflowError(f"{a} * {b} overflows uint256")
    return c


def _div(a: int, b: int) -> int:
    if b == 0:
        raise MathDivisionByZeroError(f"{a} / 0")
    return a // b


def _mul_half_up(a: int, b: int, unit: int, name: str) -> int:
    """The assembly of wadMul/rayMul/percentMul: revert iff a > (MAX - unit/2) / b."""
    _uints(a, b)
    if b != 0 and a > (UINT256_MAX - unit // 2) // b:
        raise MathOverflowError(f"{name}({a}, {b})")
    return (a * b + unit // 2) // unit


def _div_half_up(a: int, b: int, unit: int, name: str) -> int:
    """The assembly of wadDiv/rayDiv/percentDiv: revert iff b == 0 or a > (MAX - b/2) / unit."""
    _uints(a, b)
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
    b, remainder = divmod(_u256(a, "a"), WAD_RAY_RATIO)
    return b + 1 if remainder >= WAD_RAY_RATIO // 2 else b


def wad_to_ray(a: int) -> int:
    """Mirrors WadRayMath.wadToRay: a * 1e9; reverts on overflow."""
    return _mul(_u256(a, "a"), WAD_RAY_RATIO)


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
    return _sub(_u256(current_ts, "current_ts"), last_update_ts)


def calculate_linear_interest(rate: int, last_update_ts: int, current_ts: int) -> int:
    """Mirrors MathUtils.calculateLinearInterest: RAY + rate * dt / SECONDS_PER_YEAR (floor)."""
    result = _mul(_u256(rate, "rate"), _elapsed(last_update_ts, current_ts)) // SECONDS_PER_YEAR
    return _add(RAY, result)


def calculate_compounded_interest(rate: int, last_update_ts: int, current_ts: int) -> int:
    """Mirrors MathUtils.calculateCompoundedInterest (3-term binomial approximation).

    RAY + rate*n/Y + n(n-1)*b2/2 + n(n-1)(n-2)*b3/6 with b2 = rayMul(rate, rate)/Y^2 and
    b3 = rayMul(b2, rate)/Y, every division flooring at the step where the contract does it.
    """
    exp = _elapsed(last_update_ts, current_ts)
    _u256(rate, "rate")
    if exp == 0:
        return RAY
    exp_minus_one = exp - 1
    exp_minus_two = exp - 2 if exp > 2 else 0
    base_power_two = ray_mul(rate, rate) // (SECONDS_PER_YEAR * SECONDS_PER_YEAR)
    base_power_three = ray_mul(base_power_two, rate) // SECONDS_PER_YEAR
    second_term = _mul(_mul(exp, exp_minus_one), base_power_two) // 2
    third_term = _mul(_mul(_mul(exp, exp_minus_one), exp_minus_two), base_power_three) // 6
    first_term = _mul(rate, exp) // SECONDS_PER_YEAR
    return _add(_add(_add(RAY, first_term), second_term), third_term)


# ReserveLogic / tokens
def get_normalized_income(
    liquidity_index: int, current_liquidity_rate: int, last_update_ts: int, now: int
) -> int:
    """Mirrors ReserveLogic.getNormalizedIncome: linear interest rayMul liquidityIndex."""
    if last_update_ts == now:
        return _u256(liquidity_index, "liquidity_index")
    interest = calculate_linear_interest(current_liquidity_rate, last_update_ts, now)
    return ray_mul(interest, liquidity_index)


def get_normalized_debt(
    variable_borrow_index: int, current_variable_borrow_rate: int, last_update_ts: int, now: int
) -> int:
    """Mirrors ReserveLogic.getNormalizedDebt: compounded interest rayMul variableBorrowIndex."""
    if last_update_ts == now:
        return _u256(variable_borrow_index, "variable_borrow_index")
    interest = calculate_compounded_interest(current_variable_borrow_rate, last_update_ts, now)
    return ray_mul(interest, variable_borrow_index)


def atoken_balance(scaled_balance: int, normalized_income: int) -> int:
    """Mirrors AToken.balanceOf: scaledBalance.rayMul(getReserveNormalizedIncome)."""
    return ray_mul(scaled_balance, normalized_income)


def variable_debt_balance(scaled_balance: int, normalized_debt: int) -> int:
    """Mirrors VariableDebtToken.balanceOf: 0 if scaled is 0, else scaled.rayMul(normalizedDebt)."""
    if _u256(scaled_balance, "scaled_balance") == 0:
        return 0
    return ray_mul(scaled_balance, normalized_debt)


def stable_debt_balance(principal: int, user_rate: int, last_update_ts: int, now: int) -> int:
    """Mirrors StableDebtToken.balanceOf: principal.rayMul(compounded(userRate, timestamp))."""
    if _u256(principal, "principal") == 0:
        return 0
    return ray_mul(principal, calculate_compounded_interest(user_rate, last_update_ts, now))


# GenericLogic
def asset_unit(decimals: int) -> int:
    """Mirrors `unchecked { 10 ** decimals }` of GenericLogic/LiquidationLogic (mod 2**256)."""
    if not 0 <= decimals <= 255:
        raise ValueError(f"decimals={decimals} is not a uint8")
    return pow(10, decimals, 2**256)


@dataclass(frozen=True, slots=True)
class UserReserveInput:
    """One reserve of a user as calculateUserAccountData reads it; `price` is the oracle's.

    `is_borrowing` is the UserConfigurationMap bit; True is harmless with a zero debt.
    """

    asset_unit: int
    price: int
    scaled_atoken_balance: int
    scaled_variable_debt: int
    stable_debt_balance: int
    normalized_income: int
    normalized_debt: int
    ltv: int
    liquidation_threshold: int
    using_as_collateral: bool
    emode_category: int = 0
    is_borrowing: bool = True


class UserAccountData(NamedTuple):
    """The 6-tuple returned by GenericLogic.calculateUserAccountData, in its order."""

    total_collateral_base: int
    total_debt_base: int
    avg_ltv: int
    avg_liquidation_threshold: int
    health_factor: int
    has_zero_ltv_collateral: bool


def user_balance_in_base_currency(
    scaled_balance: int, normalized_income: int, price: int, unit: int
) -> int:
    """Mirrors GenericLogic._getUserBalanceInBaseCurrency: rayMul(scaled, income)*price/unit."""
    return _div(_mul(ray_mul(scaled_balance, normalized_income), price), unit)


def user_debt_in_base_currency(
    scaled_variable_debt: int, normalized_debt: int, stable_debt: int, price: int, unit: int
) -> int:
    """Mirrors GenericLogic._getUserDebtInBaseCurrency: price*(var+stable)/unit, rounded DOWN."""
    debt = _u256(scaled_variable_debt, "scaled_variable_debt")
    if debt != 0:
        debt = ray_mul(debt, normalized_debt)
    debt = _add(debt, _u256(stable_debt, "stable_debt"))
    return _div(_mul(price, debt), unit)


def calculate_user_account_data(
    reserves: Sequence[UserReserveInput],
    user_emode_category: int = 0,
    emode_ltv: int = 0,
    emode_liquidation_threshold: int = 0,
    emode_price: int = 0,
) -> UserAccountData:
    """Mirrors GenericLogic.calculateUserAccountData (`emode_price` 0 = no price source).

    Collateral needs the reserve's own threshold != 0; the reserve's own ltv == 0 sets
    has_zero_ltv and adds nothing to avg_ltv (eMode or not), but counts in the totals.
    """
    if user_emode_category == 0:  # the contract only loads the category when it is non-zero
        emode_ltv = emode_liquidation_threshold = emode_price = 0
    total_collateral = total_debt = avg_ltv = avg_threshold = 0
    has_zero_ltv = False
    for r in reserves:
        if not (r.using_as_collateral or r.is_borrowing):
            continue
        use_emode_price = emode_price != 0 and user_emode_category == r.emode_category
        price = emode_price if use_emode_price else r.price
        if r.liquidation_threshold != 0 and r.using_as_collateral:
            balance = user_balance_in_base_currency(
                r.scaled_atoken_balance, r.normalized_income, price, r.asset_unit
            )
            total_collateral = _add(total_collateral, balance)
            in_emode = user_emode_category != 0 and r.emode_category == user_emode_category
            if r.ltv != 0:
                avg_ltv = _add(avg_ltv, _mul(balance, emode_ltv if in_emode else r.ltv))
            else:
                has_zero_ltv = True
            threshold = emode_liquidation_threshold if in_emode else r.liquidation_threshold
            avg_threshold = _add(avg_threshold, _mul(balance, threshold))
        if r.is_borrowing:
            debt = user_debt_in_base_currency(
                r.scaled_variable_debt,
                r.normalized_debt,
                r.stable_debt_balance,
                price,
                r.asset_unit,
            )
            total_debt = _add(total_debt, debt)
    avg_ltv = avg_ltv // total_collateral if total_collateral != 0 else 0
    avg_threshold = avg_threshold // total_collateral if total_collateral != 0 else 0
    if total_debt == 0:
        health_factor = UINT256_MAX
    else:
        health_factor = wad_div(percent_mul(total_collateral, avg_threshold), total_debt)
    return UserAccountData(
        total_collateral, total_debt, avg_ltv, avg_threshold, health_factor, has_zero_ltv
    )


def calculate_available_borrows(total_collateral_base: int, total_debt_base: int, ltv: int) -> int:
    """Mirrors GenericLogic.calculateAvailableBorrows: max(0, collateral.percentMul(ltv) - debt)."""
    available = percent_mul(total_collateral_base, ltv)
    return 0 if available < total_debt_base else available - total_debt_base


def is_liquidatable(health_factor: int) -> bool:
    """Mirrors ValidationLogic.validateLiquidationCall's check: HF < 1e18 (strictly)."""
    return health_factor < HEALTH_FACTOR_LIQUIDATION_THRESHOLD


# LiquidationLogic
class LiquidationAmounts(NamedTuple):
    """The 3-tuple returned by LiquidationLogic._calculateAvailableCollateralToLiquidate."""

    collateral_amount: int  # actualCollateralToLiquidate, protocol fee already deducted
    debt_amount: int  # actualDebtToLiquidate
    protocol_fee: int  # liquidationProtocolFeeAmount (aTokens sent to the treasury)


class LiquidationConfig(NamedTuple):
    """What LiquidationLogic._getConfigurationData selects (prices instead of price sources)."""

    liquidation_bonus: int
    collateral_price: int
    debt_price: int


def liquidation_configuration(
    *,
    user_emode_category: int,
    collateral_emode_category: int,
    collateral_liquidation_bonus: int,
    collateral_price: int,
    debt_price: int,
    emode_liquidation_bonus: int = 0,
    emode_price: int = 0,
) -> LiquidationConfig:
    """Mirrors LiquidationLogic._getConfigurationData (`emode_price` 0 = no price source).

    Collateral in the user's category gets the eMode bonus and price; the DEBT gets the eMode
    price whenever the user is in eMode, without checking the debt asset's category.
    """
    bonus, c_price, d_price = collateral_liquidation_bonus, collateral_price, debt_price
    if user_emode_category != 0:
        if collateral_emode_category == user_emode_category:
            bonus = emode_liquidation_bonus
            if emode_price != 0:
                c_price = emode_price
        if emode_price != 0:
            d_price = emode_price
    return LiquidationConfig(bonus, c_price, d_price)


def calculate_actual_debt_to_liquidate(
    user_total_debt: int, health_factor: int, debt_to_cover: int
) -> int:
    """Mirrors LiquidationLogic._calculateDebt: min(debtToCover, (stable+variable).percentMul(CF)).

    The close factor CF is 50% when HF > 0.95e18, and 100% when HF <= 0.95e18.
    """
    close_factor = (
        DEFAULT_LIQUIDATION_CLOSE_FACTOR
        if health_factor > CLOSE_FACTOR_HF_THRESHOLD
        else MAX_LIQUIDATION_CLOSE_FACTOR
    )
    max_liquidatable_debt = percent_mul(user_total_debt, close_factor)
    return min(_u256(debt_to_cover, "debt_to_cover"), max_liquidatable_debt)


def calculate_available_collateral_to_liquidate(
    *,
    collateral_price: int,
    collateral_asset_unit: int,
    debt_price: int,
    debt_asset_unit: int,
    debt_to_cover: int,
    user_collateral_balance: int,
    liquidation_bonus: int,
    liquidation_protocol_fee_percentage: int,
) -> LiquidationAmounts:
    """Mirrors LiquidationLogic._calculateAvailableCollateralToLiquidate (prices, not sources).

    If the user's balance caps the collateral, the debt is recomputed from it (floor, then
    percentDiv). The fee is (c - c.percentDiv(bonus)).percentMul(feePct), deducted from c.
    """
    _uints(collateral_price, collateral_asset_unit, debt_price, debt_asset_unit, debt_to_cover)
    _uints(user_collateral_balance, liquidation_bonus, liquidation_protocol_fee_percentage)
    base_collateral = _div(
        _mul(_mul(debt_price, debt_to_cover), collateral_asset_unit),
        _mul(collateral_price, debt_asset_unit),
    )
    max_collateral = percent_mul(base_collateral, liquidation_bonus)
    if max_collateral > user_collateral_balance:
        collateral_amount = user_collateral_balance
        debt_amount_needed = percent_div(
            _div(
                _mul(_mul(collateral_price, collateral_amount), debt_asset_unit),
                _mul(debt_price, collateral_asset_unit),
            ),
            liquidation_bonus,
        )
    else:
        collateral_amount = max_collateral
        debt_amount_needed = debt_to_cover
    if liquidation_protocol_fee_percentage != 0:
        bonus_collateral = _sub(
            collateral_amount, percent_div(collateral_amount, liquidation_bonus)
        )
        fee = percent_mul(bonus_collateral, liquidation_protocol_fee_percentage)
        return LiquidationAmounts(_sub(collateral_amount, fee), debt_amount_needed, fee)
    return LiquidationAmounts(collateral_amount, debt_amount_needed, 0)

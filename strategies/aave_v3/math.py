"""Exact integer mirrors of Aave V3's protocol logic (@aave/core-v3 1.19.3), bit for bit.

ReserveLogic's normalized income and debt, the tokens' balanceOf, GenericLogic's account
data and LiquidationLogic's amounts, built on the mirrors of the math libraries (WadRayMath,
PercentageMath, MathUtils) in math_lib.py, whose names this module re-exports so that
`strategies.aave_v3.math` stays the one place to import the Aave math from.

Every function names the Solidity function it mirrors. Only Python ints are used, never
floats. Where the contract reverts the mirror raises an `AaveMathError` (see math_lib.py);
a negative or oversized input is a caller bug and raises `ValueError`.

Rounding in 1.19.3: wadMul/wadDiv/rayMul/rayDiv/percentMul/percentDiv and rayToWad round half up;
every plain `/` (interest terms, base-currency values, averages, liquidation amounts) rounds down,
including the user's debt in base currency (1.19.3 does NOT round debt up).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from strategies.aave_v3.math_lib import (
    HALF_PERCENTAGE_FACTOR,
    HALF_RAY,
    HALF_WAD,
    PERCENTAGE_FACTOR,
    RAY,
    SECONDS_PER_YEAR,
    UINT40_MAX,
    UINT256_MAX,
    WAD,
    WAD_RAY_RATIO,
    AaveMathError,
    MathDivisionByZeroError,
    MathOverflowError,
    MathUnderflowError,
    add,
    calculate_compounded_interest,
    calculate_linear_interest,
    div,
    mul,
    percent_div,
    percent_mul,
    ray_div,
    ray_mul,
    ray_to_wad,
    sub,
    u256,
    uints,
    wad_div,
    wad_mul,
    wad_to_ray,
)

__all__ = [
    "CLOSE_FACTOR_HF_THRESHOLD",
    "DEFAULT_LIQUIDATION_CLOSE_FACTOR",
    "HALF_PERCENTAGE_FACTOR",
    "HALF_RAY",
    "HALF_WAD",
    "HEALTH_FACTOR_LIQUIDATION_THRESHOLD",
    "MAX_LIQUIDATION_CLOSE_FACTOR",
    "MINIMUM_HEALTH_FACTOR_LIQUIDATION_THRESHOLD",
    "PERCENTAGE_FACTOR",
    "RAY",
    "SECONDS_PER_YEAR",
    "UINT40_MAX",
    "UINT256_MAX",
    "WAD",
    "WAD_RAY_RATIO",
    "AaveMathError",
    "LiquidationAmounts",
    "LiquidationConfig",
    "MathDivisionByZeroError",
    "MathOverflowError",
    "MathUnderflowError",
    "UserAccountData",
    "UserReserveInput",
    "asset_unit",
    "atoken_balance",
    "calculate_actual_debt_to_liquidate",
    "calculate_available_borrows",
    "calculate_available_collateral_to_liquidate",
    "calculate_compounded_interest",
    "calculate_linear_interest",
    "calculate_user_account_data",
    "get_normalized_debt",
    "get_normalized_income",
    "is_liquidatable",
    "liquidation_configuration",
    "percent_div",
    "percent_mul",
    "ray_div",
    "ray_mul",
    "ray_to_wad",
    "stable_debt_balance",
    "user_balance_in_base_currency",
    "user_debt_in_base_currency",
    "variable_debt_balance",
    "wad_div",
    "wad_mul",
    "wad_to_ray",
]

# ValidationLogic / LiquidationLogic
HEALTH_FACTOR_LIQUIDATION_THRESHOLD = 10**18
MINIMUM_HEALTH_FACTOR_LIQUIDATION_THRESHOLD = 95 * 10**16
CLOSE_FACTOR_HF_THRESHOLD = 95 * 10**16
DEFAULT_LIQUIDATION_CLOSE_FACTOR = 5000
MAX_LIQUIDATION_CLOSE_FACTOR = 10**4


# ReserveLogic / tokens
def get_normalized_income(
    liquidity_index: int, current_liquidity_rate: int, last_update_ts: int, now: int
) -> int:
    """Mirrors ReserveLogic.getNormalizedIncome: linear interest rayMul liquidityIndex."""
    if last_update_ts == now:
        return u256(liquidity_index, "liquidity_index")
    interest = calculate_linear_interest(current_liquidity_rate, last_update_ts, now)
    return ray_mul(interest, liquidity_index)


def get_normalized_debt(
    variable_borrow_index: int, current_variable_borrow_rate: int, last_update_ts: int, now: int
) -> int:
    """Mirrors ReserveLogic.getNormalizedDebt: compounded interest rayMul variableBorrowIndex."""
    if last_update_ts == now:
        return u256(variable_borrow_index, "variable_borrow_index")
    interest = calculate_compounded_interest(current_variable_borrow_rate, last_update_ts, now)
    return ray_mul(interest, variable_borrow_index)


def atoken_balance(scaled_balance: int, normalized_income: int) -> int:
    """Mirrors AToken.balanceOf: scaledBalance.rayMul(getReserveNormalizedIncome)."""
    return ray_mul(scaled_balance, normalized_income)


def variable_debt_balance(scaled_balance: int, normalized_debt: int) -> int:
    """Mirrors VariableDebtToken.balanceOf: 0 if scaled is 0, else scaled.rayMul(normalizedDebt)."""
    if u256(scaled_balance, "scaled_balance") == 0:
        return 0
    return ray_mul(scaled_balance, normalized_debt)


def stable_debt_balance(principal: int, user_rate: int, last_update_ts: int, now: int) -> int:
    """Mirrors StableDebtToken.balanceOf: principal.rayMul(compounded(userRate, timestamp))."""
    if u256(principal, "principal") == 0:
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
    return div(mul(ray_mul(scaled_balance, normalized_income), price), unit)


def user_debt_in_base_currency(
    scaled_variable_debt: int, normalized_debt: int, stable_debt: int, price: int, unit: int
) -> int:
    """Mirrors GenericLogic._getUserDebtInBaseCurrency: price*(var+stable)/unit, rounded DOWN."""
    debt = u256(scaled_variable_debt, "scaled_variable_debt")
    if debt != 0:
        debt = ray_mul(debt, normalized_debt)
    debt = add(debt, u256(stable_debt, "stable_debt"))
    return div(mul(price, debt), unit)


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
            total_collateral = add(total_collateral, balance)
            in_emode = user_emode_category != 0 and r.emode_category == user_emode_category
            if r.ltv != 0:
                avg_ltv = add(avg_ltv, mul(balance, emode_ltv if in_emode else r.ltv))
            else:
                has_zero_ltv = True
            threshold = emode_liquidation_threshold if in_emode else r.liquidation_threshold
            avg_threshold = add(avg_threshold, mul(balance, threshold))
        if r.is_borrowing:
            debt = user_debt_in_base_currency(
                r.scaled_variable_debt,
                r.normalized_debt,
                r.stable_debt_balance,
                price,
                r.asset_unit,
            )
            total_debt = add(total_debt, debt)
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
    return min(u256(debt_to_cover, "debt_to_cover"), max_liquidatable_debt)


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
    uints(collateral_price, collateral_asset_unit, debt_price, debt_asset_unit, debt_to_cover)
    uints(user_collateral_balance, liquidation_bonus, liquidation_protocol_fee_percentage)
    base_collateral = div(
        mul(mul(debt_price, debt_to_cover), collateral_asset_unit),
        mul(collateral_price, debt_asset_unit),
    )
    max_collateral = percent_mul(base_collateral, liquidation_bonus)
    if max_collateral > user_collateral_balance:
        collateral_amount = user_collateral_balance
        debt_amount_needed = percent_div(
            div(
                mul(mul(collateral_price, collateral_amount), debt_asset_unit),
                mul(debt_price, collateral_asset_unit),
            ),
            liquidation_bonus,
        )
    else:
        collateral_amount = max_collateral
        debt_amount_needed = debt_to_cover
    if liquidation_protocol_fee_percentage != 0:
        bonus_collateral = sub(collateral_amount, percent_div(collateral_amount, liquidation_bonus))
        fee = percent_mul(bonus_collateral, liquidation_protocol_fee_percentage)
        return LiquidationAmounts(sub(collateral_amount, fee), debt_amount_needed, fee)
    return LiquidationAmounts(collateral_amount, debt_amount_needed, 0)

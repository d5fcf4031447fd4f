"""Exact integer mirrors of Aave v3.6 (aave-dao/aave-v3-origin 3.6.0, POOL_REVISION 10).

The v3.0 line (@aave/core-v3 1.19.3) is mirrored in math.py and stays untouched; this module
holds what changed since, each function naming the Solidity function and the version that
introduced the behaviour:

- v3.2: e-mode membership by the category's `collateralBitmap` (the reserve's own e-mode
  bits and the category's price source are gone); stable debt removed.
- v3.3: the close factor (`MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD` = $2,000: 100 % of the
  reserve's debt unless both chosen reserves are worth at least that and HF > 0.95, then at
  most 50 % of the whole position's debt), the dust rule (`MustNotLeaveDust`:
  `MIN_LEFTOVER_BASE` = $1,000), deficits (debt burned when the collateral runs out).
- v3.4: MathUtils.calculateCompoundedInterest's new form (math_lib).
- v3.5: TokenMath rounding: aToken balances down, debt balances up, debt in base currency
  up (`mulDivCeil`), `percentDivCeil` for the debt a capped seizure needs; HF is
  `wadDiv(sum(collateral * lt), debt) / 1e4` instead of `wadDiv(percentMul(..), debt)`.
- v3.6: `ltvzeroBitmap`; collateral with a reserve LT of 0 counts (and is seizable) like
  any other collateral, with the category's LT inside an e-mode whose bitmap has it.

The liquidation itself (validation, close factor, dust, deficit) is in
math_v36_liquidation.py. Only Python ints; where the contract reverts the mirror raises an
`AaveMathError` (`LiquidationRevert` for a require of the liquidation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from strategies.aave_v3.math import UserAccountData
from strategies.aave_v3.math_lib import (
    RAY,
    UINT256_MAX,
    AaveMathError,
    add,
    calculate_compounded_interest_v34,
    calculate_linear_interest,
    div,
    mul,
    mul_div_ceil,
    percent_mul_floor,
    ray_div_ceil,
    ray_div_floor,
    ray_mul,
    ray_mul_ceil,
    ray_mul_floor,
    u256,
    wad_div,
)

MAX_RESERVES_COUNT = 128  # ReserveConfiguration


class LiquidationRevert(AaveMathError):
    """A `require` of Pool.liquidationCall fails; `reason` is the Errors.sol name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ReserveLogic / TokenMath
def get_normalized_income(
    liquidity_index: int, current_liquidity_rate: int, last_update_ts: int, now: int
) -> int:
    """Mirrors ReserveLogic.getNormalizedIncome (v3.6): linear interest rayMul (half up) index."""
    if last_update_ts == now:
        return u256(liquidity_index, "liquidity_index")
    return ray_mul(calculate_linear_interest(current_liquidity_rate, last_update_ts, now),
                   liquidity_index)


def get_normalized_debt(
    variable_borrow_index: int, current_variable_borrow_rate: int, last_update_ts: int, now: int
) -> int:
    """Mirrors ReserveLogic.getNormalizedDebt (v3.6): the v3.4 compounded interest rayMul index."""
    if last_update_ts == now:
        return u256(variable_borrow_index, "variable_borrow_index")
    interest = calculate_compounded_interest_v34(current_variable_borrow_rate, last_update_ts, now)
    return ray_mul(interest, variable_borrow_index)


def atoken_balance(scaled_balance: int, normalized_income: int) -> int:
    """Mirrors TokenMath.getATokenBalance (v3.5+): scaled.rayMulFloor(index)."""
    return ray_mul_floor(scaled_balance, normalized_income)


def variable_debt_balance(scaled_balance: int, normalized_debt: int) -> int:
    """Mirrors TokenMath.getVTokenBalance (v3.5+): scaled.rayMulCeil(index)."""
    return ray_mul_ceil(scaled_balance, normalized_debt)


def atoken_burn_scaled(amount: int, liquidity_index: int) -> int:
    """Mirrors TokenMath.getATokenBurnScaledAmount / getATokenTransferScaledAmount (v3.5+):
    amount.rayDivCeil(index)."""
    return ray_div_ceil(amount, liquidity_index)


def vtoken_burn_scaled(amount: int, variable_borrow_index: int) -> int:
    """Mirrors TokenMath.getVTokenBurnScaledAmount (v3.5+): amount.rayDivFloor(index)."""
    return ray_div_floor(amount, variable_borrow_index)


def scaled_from_balance(balance: int, index: int, *, ceil: bool) -> int:
    """The unique scaled balance N with getATokenBalance(N) (floor) or getVTokenBalance(N)
    (ceil) == `balance` at `index` >= RAY: how the book inverts v3.5+ Mint/Burn values,
    which are differences of such rounded balances (ScaledBalanceTokenBase._mintScaled).

    With index >= RAY each scaled unit adds at least one unit of balance, so N is unique.
    Raises ValueError when no N maps to `balance` (the log does not fit the book).
    """
    if index < RAY:
        raise ValueError(f"index {index} below RAY: balances are not invertible")
    f = ray_mul_ceil if ceil else ray_mul_floor
    guess = balance * RAY // index
    for n in (guess, guess + 1, guess - 1, guess + 2):
        if n >= 0 and f(n, index) == balance:
            return n
    raise ValueError(f"no scaled balance gives {balance} at index {index}")


# EModeConfiguration / ValidationLogic
def is_reserve_enabled_on_bitmap(bitmap: int, reserve_index: int) -> bool:
    """Mirrors EModeConfiguration.isReserveEnabledOnBitmap (v3.2+); an index >= 128 reverts."""
    if not 0 <= reserve_index < MAX_RESERVES_COUNT:
        raise AaveMathError(f"InvalidReserveIndex({reserve_index})")
    return (bitmap >> reserve_index) & 1 != 0


@dataclass(frozen=True, slots=True)
class EModeInput:
    """One e-mode category as the v3.6 pool stores it (`_eModeCategories[id]`)."""

    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    collateral_bitmap: int
    borrowable_bitmap: int = 0
    ltvzero_bitmap: int = 0


def user_reserve_ltv(reserve_id: int, reserve_ltv: int, category_id: int,
                     category: EModeInput | None) -> int:
    """Mirrors ValidationLogic.getUserReserveLtv (v3.6): the category's ltv (0 when the
    reserve is on its ltvzeroBitmap) if the reserve is on its collateralBitmap, else the
    reserve's own ltv."""
    if category_id != 0 and category is not None and is_reserve_enabled_on_bitmap(
            category.collateral_bitmap, reserve_id):
        if is_reserve_enabled_on_bitmap(category.ltvzero_bitmap, reserve_id):
            return 0
        return category.ltv
    return reserve_ltv


# GenericLogic
@dataclass(frozen=True, slots=True)
class ReserveInput:
    """One reserve of a user as GenericLogic.calculateUserAccountData (v3.6) reads it."""

    id: int
    asset_unit: int
    price: int
    scaled_atoken_balance: int
    scaled_variable_debt: int
    normalized_income: int
    normalized_debt: int
    ltv: int
    liquidation_threshold: int
    using_as_collateral: bool
    is_borrowing: bool


def user_balance_in_base_currency(
    scaled_balance: int, normalized_income: int, price: int, unit: int
) -> int:
    """Mirrors GenericLogic._getUserBalanceInBaseCurrency (v3.5+): rayMulFloor(scaled,
    income) * price / unit, rounded down."""
    return div(mul(atoken_balance(scaled_balance, normalized_income), price), unit)


def user_debt_in_base_currency(
    scaled_variable_debt: int, normalized_debt: int, price: int, unit: int
) -> int:
    """Mirrors GenericLogic._getUserDebtInBaseCurrency (v3.5+): mulDivCeil(rayMulCeil(scaled,
    index), price, unit), rounded UP."""
    return mul_div_ceil(variable_debt_balance(scaled_variable_debt, normalized_debt), price, unit)


def calculate_user_account_data(
    reserves: Sequence[ReserveInput], user_emode_category: int = 0,
    category: EModeInput | None = None,
) -> UserAccountData:
    """Mirrors GenericLogic.calculateUserAccountData (v3.6).

    Every reserve enabled as collateral counts, whatever its LT (v3.6: a reserve LT of 0
    still counts, and inside an e-mode whose collateralBitmap has it, with the category's
    LT); ltv per getUserReserveLtv; HF = wadDiv(sum(balance * lt), debt) / 1e4.
    """
    if user_emode_category == 0:
        category = None
    total_collateral = total_debt = avg_ltv = avg_threshold = 0
    has_zero_ltv = False
    any_flag = False
    for r in reserves:
        if not (r.using_as_collateral or r.is_borrowing):
            continue
        any_flag = True
        if r.using_as_collateral:
            balance = user_balance_in_base_currency(
                r.scaled_atoken_balance, r.normalized_income, r.price, r.asset_unit)
            total_collateral = add(total_collateral, balance)
            ltv = user_reserve_ltv(r.id, r.ltv, user_emode_category, category)
            if ltv == 0:
                has_zero_ltv = True
            else:
                avg_ltv = add(avg_ltv, mul(balance, ltv))
            if category is not None and is_reserve_enabled_on_bitmap(
                    category.collateral_bitmap, r.id):
                threshold = category.liquidation_threshold
            else:
                threshold = r.liquidation_threshold
            avg_threshold = add(avg_threshold, mul(balance, threshold))
        if r.is_borrowing:
            total_debt = add(total_debt, user_debt_in_base_currency(
                r.scaled_variable_debt, r.normalized_debt, r.price, r.asset_unit))
    if not any_flag:  # userConfig.isEmpty()
        return UserAccountData(0, 0, 0, 0, UINT256_MAX, False)
    health_factor = (UINT256_MAX if total_debt == 0
                     else wad_div(avg_threshold, total_debt) // 10_000)
    if total_collateral != 0:
        avg_ltv //= total_collateral
        avg_threshold //= total_collateral
    else:
        avg_ltv = avg_threshold = 0
    return UserAccountData(
        total_collateral, total_debt, avg_ltv, avg_threshold, health_factor, has_zero_ltv)


def calculate_available_borrows(total_collateral_base: int, total_debt_base: int, ltv: int) -> int:
    """Mirrors GenericLogic.calculateAvailableBorrows (v3.5+): collateral.percentMulFloor(ltv)
    minus debt, or 0."""
    available = percent_mul_floor(total_collateral_base, ltv)
    return 0 if available <= total_debt_base else available - total_debt_base

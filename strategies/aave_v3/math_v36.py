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

Only Python ints; where the contract reverts the mirror raises an `AaveMathError`
(`LiquidationRevert` for a require of the liquidation's validation or dust rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

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
    percent_div,
    percent_div_ceil,
    percent_mul,
    ray_div_ceil,
    ray_div_floor,
    ray_mul,
    ray_mul_ceil,
    ray_mul_floor,
    sub,
    u256,
    uints,
    wad_div,
)

# LiquidationLogic (v3.3+); base currency = USD with 8 decimals on every Aave market.
DEFAULT_LIQUIDATION_CLOSE_FACTOR = 5000
CLOSE_FACTOR_HF_THRESHOLD = 95 * 10**16
MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD = 2000 * 10**8
MIN_LEFTOVER_BASE = MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD // 2
# ValidationLogic
HEALTH_FACTOR_LIQUIDATION_THRESHOLD = 10**18
MINIMUM_HEALTH_FACTOR_LIQUIDATION_THRESHOLD = 95 * 10**16
MAX_RESERVES_COUNT = 128


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


# ValidationLogic.validateLiquidationCall
def validate_liquidation_call(
    *, borrower: str, liquidator: str, collateral_active: bool, collateral_paused: bool,
    debt_active: bool, debt_paused: bool, sentinel_set: bool, sentinel_allows: bool,
    collateral_grace_until: int, debt_grace_until: int, now: int, health_factor: int,
    using_as_collateral: bool, reserve_debt: int,
) -> None:
    """Mirrors ValidationLogic.validateLiquidationCall (v3.6), in its order; raises
    LiquidationRevert with the Errors.sol name of the first failing require."""
    if borrower.lower() == liquidator.lower():
        raise LiquidationRevert("SelfLiquidation")
    if not (collateral_active and debt_active):
        raise LiquidationRevert("ReserveInactive")
    if collateral_paused or debt_paused:
        raise LiquidationRevert("ReservePaused")
    if (sentinel_set and health_factor >= MINIMUM_HEALTH_FACTOR_LIQUIDATION_THRESHOLD
            and not sentinel_allows):
        raise LiquidationRevert("PriceOracleSentinelCheckFailed")
    now40 = now % 2**40  # uint40(block.timestamp)
    if not (collateral_grace_until < now40 and debt_grace_until < now40):
        raise LiquidationRevert("LiquidationGraceSentinelCheckFailed")
    if health_factor >= HEALTH_FACTOR_LIQUIDATION_THRESHOLD:
        raise LiquidationRevert("HealthFactorNotBelowThreshold")
    if not using_as_collateral:
        raise LiquidationRevert("CollateralCannotBeLiquidated")
    if reserve_debt == 0:
        raise LiquidationRevert("SpecifiedCurrencyNotBorrowedByUser")


# LiquidationLogic
def max_liquidatable_debt(
    *, borrower_reserve_debt: int, debt_price: int, debt_asset_unit: int,
    borrower_collateral_balance: int, collateral_price: int, collateral_asset_unit: int,
    total_debt_base: int, health_factor: int,
) -> int:
    """Mirrors the close factor of LiquidationLogic.executeLiquidationCall (v3.3+, as in 3.6).

    The whole reserve debt, unless the reserve's debt (mulDivCeil) and collateral (floor)
    are both worth >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD and HF > 0.95: then, if the
    reserve's debt is worth more than 50 % of the position's whole debt, that 50 % converted
    back to the debt asset (floor).
    """
    debt_base = mul_div_ceil(borrower_reserve_debt, debt_price, debt_asset_unit)
    collateral_base = div(mul(borrower_collateral_balance, collateral_price),
                          collateral_asset_unit)
    if (collateral_base >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
            and debt_base >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
            and health_factor > CLOSE_FACTOR_HF_THRESHOLD):
        half = percent_mul(total_debt_base, DEFAULT_LIQUIDATION_CLOSE_FACTOR)
        if debt_base > half:
            return div(mul(half, debt_asset_unit), debt_price)
    return borrower_reserve_debt


class CollateralAmounts(NamedTuple):
    """The 4-tuple of LiquidationLogic._calculateAvailableCollateralToLiquidate (v3.3+)."""

    collateral_amount: int  # actualCollateralToLiquidate, protocol fee deducted
    debt_amount: int  # actualDebtToLiquidate
    protocol_fee: int
    collateral_base: int  # collateralToLiquidateInBaseCurrency (fee included, floor)


def calculate_available_collateral_to_liquidate(
    *, collateral_price: int, collateral_asset_unit: int, debt_price: int,
    debt_asset_unit: int, debt_to_cover: int, borrower_collateral_balance: int,
    liquidation_bonus: int, liquidation_protocol_fee_percentage: int,
) -> CollateralAmounts:
    """Mirrors LiquidationLogic._calculateAvailableCollateralToLiquidate (v3.6).

    As 1.19.3, but a capped seizure's debt is rounded up (percentDivCeil, v3.5) and the
    seized collateral's base value (before the fee) is returned for the deficit check.
    """
    uints(collateral_price, collateral_asset_unit, debt_price, debt_asset_unit, debt_to_cover)
    uints(borrower_collateral_balance, liquidation_bonus, liquidation_protocol_fee_percentage)
    base_collateral = div(mul(mul(debt_price, debt_to_cover), collateral_asset_unit),
                          mul(collateral_price, debt_asset_unit))
    max_collateral = percent_mul(base_collateral, liquidation_bonus)
    if max_collateral > borrower_collateral_balance:
        collateral_amount = borrower_collateral_balance
        debt_needed = percent_div_ceil(
            div(mul(mul(collateral_price, collateral_amount), debt_asset_unit),
                mul(debt_price, collateral_asset_unit)),
            liquidation_bonus)
    else:
        collateral_amount = max_collateral
        debt_needed = debt_to_cover
    collateral_base = div(mul(collateral_amount, collateral_price), collateral_asset_unit)
    fee = 0
    if liquidation_protocol_fee_percentage != 0:
        bonus_collateral = sub(collateral_amount, percent_div(collateral_amount,
                                                              liquidation_bonus))
        fee = percent_mul(bonus_collateral, liquidation_protocol_fee_percentage)
        collateral_amount = sub(collateral_amount, fee)
    return CollateralAmounts(collateral_amount, debt_needed, fee, collateral_base)


def leaves_dust(
    *, borrower_reserve_debt: int, actual_debt: int, borrower_collateral_balance: int,
    actual_collateral: int, protocol_fee: int, debt_price: int, debt_asset_unit: int,
    collateral_price: int, collateral_asset_unit: int,
) -> bool:
    """Mirrors the `MustNotLeaveDust` require of LiquidationLogic.executeLiquidationCall
    (v3.3+): True (it reverts) unless the liquidation takes all the reserve's debt, or all
    the collateral, or leaves >= MIN_LEFTOVER_BASE of both (debt mulDivCeil, collateral floor).
    """
    taken = add(actual_collateral, protocol_fee)
    if actual_debt < borrower_reserve_debt and taken < borrower_collateral_balance:
        debt_left = mul_div_ceil(sub(borrower_reserve_debt, actual_debt), debt_price,
                                 debt_asset_unit)
        collateral_left = div(mul(sub(borrower_collateral_balance, taken), collateral_price),
                              collateral_asset_unit)
        return not (debt_left >= MIN_LEFTOVER_BASE and collateral_left >= MIN_LEFTOVER_BASE)
    return False


class LiquidationOutcome(NamedTuple):
    """What Pool.liquidationCall(receiveAToken = false) does (v3.6), in the pool's units."""

    debt_repaid: int  # actualDebtToLiquidate: pulled from the liquidator
    collateral_seized: int  # actualCollateralToLiquidate: underlying sent to the liquidator
    protocol_fee: int  # aTokens to the treasury (after the 1-wei balance clamp)
    deficit: int  # this debt reserve's DeficitCreated amount (0 if none)
    no_collateral_left: bool  # hasNoCollateralLeft: the other debts are burned as deficit too


def execute_liquidation_call(
    *, debt_to_cover: int, total_collateral_base: int, total_debt_base: int,
    health_factor: int, borrower_scaled_collateral: int, collateral_index: int,
    borrower_reserve_debt: int, collateral_price: int, collateral_asset_unit: int,
    debt_price: int, debt_asset_unit: int, liquidation_bonus: int,
    liquidation_protocol_fee_percentage: int,
) -> LiquidationOutcome:
    """Mirrors the amounts of LiquidationLogic.executeLiquidationCall (v3.6), after
    validateLiquidationCall passed, for receiveAToken = false and collateral != debt asset.

    The close factor, the collateral and fee, the dust require (raises LiquidationRevert
    "MustNotLeaveDust"), the deficit of _burnDebtTokens, and the treasury transfer's clamp
    (a fee worth more scaled units than the borrower has left after the burn is cut to them).
    `collateral_index` is the collateral reserve's index after updateState (its normalized
    income now); `borrower_reserve_debt` the debt balance (getVTokenBalance) now.
    """
    collateral_balance = atoken_balance(borrower_scaled_collateral, collateral_index)
    cap = max_liquidatable_debt(
        borrower_reserve_debt=borrower_reserve_debt, debt_price=debt_price,
        debt_asset_unit=debt_asset_unit, borrower_collateral_balance=collateral_balance,
        collateral_price=collateral_price, collateral_asset_unit=collateral_asset_unit,
        total_debt_base=total_debt_base, health_factor=health_factor)
    amounts = calculate_available_collateral_to_liquidate(
        collateral_price=collateral_price, collateral_asset_unit=collateral_asset_unit,
        debt_price=debt_price, debt_asset_unit=debt_asset_unit,
        debt_to_cover=min(u256(debt_to_cover, "debt_to_cover"), cap),
        borrower_collateral_balance=collateral_balance, liquidation_bonus=liquidation_bonus,
        liquidation_protocol_fee_percentage=liquidation_protocol_fee_percentage)
    if leaves_dust(
            borrower_reserve_debt=borrower_reserve_debt, actual_debt=amounts.debt_amount,
            borrower_collateral_balance=collateral_balance,
            actual_collateral=amounts.collateral_amount, protocol_fee=amounts.protocol_fee,
            debt_price=debt_price, debt_asset_unit=debt_asset_unit,
            collateral_price=collateral_price, collateral_asset_unit=collateral_asset_unit):
        raise LiquidationRevert("MustNotLeaveDust")
    no_collateral_left = total_collateral_base == amounts.collateral_base
    deficit = sub(borrower_reserve_debt, amounts.debt_amount) if no_collateral_left else 0
    fee = amounts.protocol_fee
    if fee != 0:
        left = sub(borrower_scaled_collateral,
                   atoken_burn_scaled(amounts.collateral_amount, collateral_index))
        if atoken_burn_scaled(fee, collateral_index) > left:
            fee = atoken_balance(left, collateral_index)
    return LiquidationOutcome(amounts.debt_amount, amounts.collateral_amount, fee, deficit,
                              no_collateral_left)


def liquidation_bonus(*, user_emode_category: int, category: EModeInput | None,
                      collateral_id: int, reserve_bonus: int) -> int:
    """Mirrors the bonus choice of LiquidationLogic.executeLiquidationCall (v3.2+): the
    category's bonus when the borrower is in an e-mode whose collateralBitmap has the
    collateral, else the collateral reserve's (prices are always the assets' own)."""
    if user_emode_category != 0 and category is not None and is_reserve_enabled_on_bitmap(
            category.collateral_bitmap, collateral_id):
        return category.liquidation_bonus
    return reserve_bonus

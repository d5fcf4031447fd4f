"""Exact integer mirrors of Aave v3.6's liquidation (aave-v3-origin 3.6.0, POOL_REVISION 10):
ValidationLogic.validateLiquidationCall and LiquidationLogic.executeLiquidationCall's amounts.

Beside math_v36.py (tokens, e-mode, account data). What changed since the v3.0 line
(math.py), by the version that brought it: v3.2 the e-mode bonus by the category's
collateralBitmap (no e-mode price); v3.3 the close factor ($2,000 / HF 0.95 / 50 % of the
whole position's debt), the dust rule (MustNotLeaveDust, $1,000 left of both) and deficits;
v3.3 the liquidation grace period; v3.5 percentDivCeil for a capped seizure's debt and
mulDivCeil for debt in base currency; v3.6 no automatic collateral for received aTokens
(not needed here: the keeper takes the underlying). Only Python ints; a failing require
raises `LiquidationRevert` (an AaveMathError) with the Errors.sol name.
"""

from __future__ import annotations

from typing import NamedTuple

from strategies.aave_v3.math_lib import (
    add,
    div,
    mul,
    mul_div_ceil,
    percent_div,
    percent_div_ceil,
    percent_mul,
    sub,
    u256,
    uints,
)
from strategies.aave_v3.math_v36 import (
    EModeInput,
    LiquidationRevert,
    atoken_balance,
    atoken_burn_scaled,
    is_reserve_enabled_on_bitmap,
    vtoken_burn_scaled,
)

# LiquidationLogic (v3.3+); base currency = USD with 8 decimals on every Aave market.
DEFAULT_LIQUIDATION_CLOSE_FACTOR = 5000
CLOSE_FACTOR_HF_THRESHOLD = 95 * 10**16
MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD = 2000 * 10**8
MIN_LEFTOVER_BASE = MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD // 2
# ValidationLogic
HEALTH_FACTOR_LIQUIDATION_THRESHOLD = 10**18
MINIMUM_HEALTH_FACTOR_LIQUIDATION_THRESHOLD = 95 * 10**16

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
    borrower_reserve_debt: int, debt_index: int, collateral_price: int, collateral_asset_unit: int,
    debt_price: int, debt_asset_unit: int, liquidation_bonus: int,
    liquidation_protocol_fee_percentage: int,
) -> LiquidationOutcome:
    """Mirrors the amounts of LiquidationLogic.executeLiquidationCall (v3.6), after
    validateLiquidationCall passed, for receiveAToken = false and collateral != debt asset.

    The close factor, the collateral and fee, the dust require (raises LiquidationRevert
    "MustNotLeaveDust"), the deficit of _burnDebtTokens, and the treasury transfer's clamp
    (a fee worth more scaled units than the borrower has left after the burn is cut to them).
    `collateral_index` is the collateral reserve's index after updateState (its normalized
    income now), `debt_index` the debt reserve's (normalized debt now);
    `borrower_reserve_debt` the debt balance (getVTokenBalance) now. A burn of zero scaled
    units (a tiny repay or seizure) raises LiquidationRevert("InvalidBurnAmount").
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
    # _burnDebtTokens, then _burnCollateralATokens: ScaledBalanceTokenBase._burnScaled
    # requires a non-zero scaled amount (InvalidBurnAmount), so a repay or a seizure worth
    # less than one scaled unit reverts.
    burned = borrower_reserve_debt if no_collateral_left else amounts.debt_amount
    if borrower_reserve_debt != 0 and vtoken_burn_scaled(burned, debt_index) == 0:
        raise LiquidationRevert("InvalidBurnAmount")
    if atoken_burn_scaled(amounts.collateral_amount, collateral_index) == 0:
        raise LiquidationRevert("InvalidBurnAmount")
    # _burnDebtTokens' `borrowerReserveDebt - actualDebtToLiquidate` is checked: a capped
    # seizure whose debt rounds up (percentDivCeil) past the whole debt panics (0x11).
    outstanding = sub(borrower_reserve_debt, amounts.debt_amount)
    deficit = outstanding if no_collateral_left else 0
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

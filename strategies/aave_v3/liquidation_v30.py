"""Liquidation pairs of a v3.0 pool (@aave/core-v3 1.19.3, POOL_REVISION 1): which
(collateral, debt) pairs pass validation and what `liquidationCall` would do at a size.

The strategy (strategy.py) turns each `Pair` into a `Candidate`; the parity tests compare
`Pair.outcome` with the pool's own answer (tests/integration/test_aave_random_parity.py).
v3.0 accepts every size up to the close factor (no dust rule, no deficit: debt the
collateral cannot cover stays owed), so a v3.0 candidate carries no `repay_ranges`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

from strategies.aave_v3 import math
from strategies.aave_v3.market import Account, Market, Reserve
from strategies.aave_v3.math_lib import ray_div, ray_mul, sub
from strategies.aave_v3.math_v36 import LiquidationRevert
from strategies.aave_v3.math_v36_liquidation import LiquidationOutcome


@dataclass(frozen=True)
class Pair:
    """One liquidatable (collateral, debt) pair of a v3.0 account at a timestamp."""

    account: Account
    collateral: Reserve
    debt: Reserve
    health_factor: int
    scaled_collateral: int
    collateral_index: int  # the collateral reserve's normalized income now
    collateral_balance: int  # AToken.balanceOf: scaled rayMul index
    variable_debt: int
    total_debt: int  # variable + stable
    debt_index: int  # the debt reserve's normalized debt now
    config: math.LiquidationConfig  # bonus and prices (_getConfigurationData)

    @functools.cached_property
    def max_repay(self) -> int:
        """LiquidationLogic._calculateDebt (1.19.3) for a uint256 max repay."""
        return math.calculate_actual_debt_to_liquidate(
            self.total_debt, self.health_factor, math.UINT256_MAX)

    def amounts(self, repay: int) -> math.LiquidationAmounts:
        """_calculateDebt then _calculateAvailableCollateralToLiquidate (1.19.3) at `repay`:
        what `seize` and `actual_repay` report (a repay past the close factor is clamped)."""
        c, d = self.collateral, self.debt
        return math.calculate_available_collateral_to_liquidate(
            collateral_price=self.config.collateral_price,
            collateral_asset_unit=math.asset_unit(c.decimals),
            debt_price=self.config.debt_price, debt_asset_unit=math.asset_unit(d.decimals),
            debt_to_cover=math.calculate_actual_debt_to_liquidate(
                self.total_debt, self.health_factor, repay),
            user_collateral_balance=self.collateral_balance,
            liquidation_bonus=self.config.liquidation_bonus,
            liquidation_protocol_fee_percentage=c.config.liquidation_protocol_fee,
        )

    def seize(self, repay: int) -> int:
        """Candidate.seize: the collateral the liquidator receives for `repay`."""
        return self.amounts(repay).collateral_amount

    def actual_repay(self, repay: int) -> int:
        """Candidate.actual_repay: the debt the pool pulls for `repay`."""
        return self.amounts(repay).debt_amount

    def outcome(self, repay: int) -> LiquidationOutcome:
        """Mirrors LiquidationLogic.executeLiquidationCall (1.19.3) for receiveAToken =
        false, after validation passed: the amounts, the burns' INVALID_BURN_AMOUNT (a
        burn of zero scaled units, ScaledBalanceTokenBase._burnScaled: raises
        LiquidationRevert "25") and the treasury fee cut to the scaled balance the borrower
        has left ("due to 1 wei imprecision"). No deficit on v3.0."""
        a = self.amounts(repay)
        if self.variable_debt >= a.debt_amount:  # _burnDebtTokens: variable debt first
            burned = ray_div(a.debt_amount, self.debt_index)
            if burned == 0:
                raise LiquidationRevert("25")  # Errors.INVALID_BURN_AMOUNT
        collateral_scaled = ray_div(a.collateral_amount, self.collateral_index)
        if collateral_scaled == 0:
            raise LiquidationRevert("25")
        left = sub(self.scaled_collateral, collateral_scaled)
        fee = a.protocol_fee
        if fee != 0 and ray_div(fee, self.collateral_index) > left:
            fee = ray_mul(left, self.collateral_index)
        return LiquidationOutcome(a.debt_amount, a.collateral_amount, fee, 0, False)


def pairs(market: Market, account: Account, health_factor: int, now: int) -> Iterator[Pair]:
    """Every (collateral, debt) pair of a liquidatable v3.0 account (HF `health_factor` < 1)
    that passes ValidationLogic.validateLiquidationCall (1.19.3): both reserves active and
    not paused, the collateral used as such with a non-zero LT, some debt in the asset."""
    collaterals: list[tuple[Reserve, int, int, int]] = []
    debts: list[tuple[Reserve, int, int, int]] = []
    for r in market.reserves:
        if not r.config.active or r.config.paused:
            continue  # ValidationLogic.validateLiquidationCall reverts
        b = account.balances[r.asset]
        if (account.config.is_using_as_collateral(r.id) and b.scaled_atoken_balance
                and r.config.liquidation_threshold != 0):
            index = r.normalized_income(now)
            balance = math.atoken_balance(b.scaled_atoken_balance, index)
            if balance:
                collaterals.append((r, b.scaled_atoken_balance, index, balance))
        debt_index = r.normalized_debt(now)
        variable = math.variable_debt_balance(b.scaled_variable_debt, debt_index)
        stable = math.stable_debt_balance(
            b.stable_principal, b.stable_rate, b.stable_last_updated, now)
        if variable + stable:
            debts.append((r, variable, variable + stable, debt_index))
    category = market.emode_categories.get(account.emode_category)
    for c, scaled, index, balance in collaterals:
        for d, variable, total, debt_index in debts:
            config = math.liquidation_configuration(
                user_emode_category=account.emode_category,
                collateral_emode_category=c.config.emode_category,
                collateral_liquidation_bonus=c.config.liquidation_bonus,
                collateral_price=c.price, debt_price=d.price,
                emode_liquidation_bonus=category.liquidation_bonus if category else 0,
                emode_price=category.price if category else 0,
            )
            yield Pair(account, c, d, health_factor, scaled, index, balance, variable, total,
                       debt_index, config)

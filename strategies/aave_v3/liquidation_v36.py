"""Liquidation pairs of a v3.6 pool: which (collateral, debt) pairs pass validation, what
`liquidationCall` would do at a size, and the repay sizes the pool accepts.

The strategy (strategy.py) turns each `Pair` into a `Candidate`. Sizes: since v3.3 a
liquidation reverts with `MustNotLeaveDust` unless it takes all the reserve's debt, or all
the collateral, or leaves at least MIN_LEFTOVER_BASE ($1,000) of both. Both leftovers
shrink as the repay grows, so the accepted sizes are two intervals, found by bisection
on the exact mirror (math_v36_liquidation.execute_liquidation_call):

- [1, a]: every size that leaves enough of both (a = 0: none);
- [b, max_repay]: every size that takes all the debt or all the collateral (none when the
  close factor stops short of both); past b the seizure no longer grows.

`Pair.repay_ranges` holds them; ranking searches only inside them (keeper/ranking.py).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from keeper.strategy import StrategyContext
from keeper.types import Candidate
from strategies.aave_v3 import math, math_v36
from strategies.aave_v3 import math_v36_liquidation as liq
from strategies.aave_v3.market import Account, EModeCategory, Market, Reserve, account_data_v36
from strategies.aave_v3.math_lib import AaveMathError


@dataclass(frozen=True)
class Pair:
    """One liquidatable (collateral, debt) pair of a v3.6 account at a timestamp."""

    market: Market
    account: Account
    collateral: Reserve
    debt: Reserve
    data: math.UserAccountData
    scaled_collateral: int
    collateral_index: int  # the collateral reserve's normalized income now
    collateral_balance: int  # getATokenBalance (floor)
    reserve_debt: int  # getVTokenBalance (ceil)
    bonus: int
    debt_index: int  # the debt reserve's normalized debt now

    def outcome(self, repay: int) -> liq.LiquidationOutcome:
        """execute_liquidation_call (v3.6) at `repay`; raises LiquidationRevert on dust."""
        return liq.execute_liquidation_call(**self._args(repay))

    def amounts(self, repay: int) -> liq.CollateralAmounts:
        """The collateral and debt amounts at `repay`, without the dust require (never
        raises for a uint256 repay): what `seize` and `actual_repay` report."""
        cap = self.max_repay
        return liq.calculate_available_collateral_to_liquidate(
            collateral_price=self.collateral.price,
            collateral_asset_unit=math.asset_unit(self.collateral.decimals),
            debt_price=self.debt.price, debt_asset_unit=math.asset_unit(self.debt.decimals),
            debt_to_cover=min(repay, cap), borrower_collateral_balance=self.collateral_balance,
            liquidation_bonus=self.bonus,
            liquidation_protocol_fee_percentage=self.collateral.config.liquidation_protocol_fee)

    def seize(self, repay: int) -> int:
        """Candidate.seize: the collateral the liquidator receives for `repay`."""
        return self.amounts(repay).collateral_amount

    def actual_repay(self, repay: int) -> int:
        """Candidate.actual_repay: the debt the pool pulls for `repay`."""
        return self.amounts(repay).debt_amount

    @functools.cached_property
    def max_repay(self) -> int:
        """The close factor's cap (math_v36_liquidation.max_liquidatable_debt)."""
        return liq.max_liquidatable_debt(
            borrower_reserve_debt=self.reserve_debt, debt_price=self.debt.price,
            debt_asset_unit=math.asset_unit(self.debt.decimals),
            borrower_collateral_balance=self.collateral_balance,
            collateral_price=self.collateral.price,
            collateral_asset_unit=math.asset_unit(self.collateral.decimals),
            total_debt_base=self.data.total_debt_base, health_factor=self.data.health_factor)

    def _args(self, repay: int) -> dict[str, int]:
        return {
            "debt_to_cover": repay, "total_collateral_base": self.data.total_collateral_base,
            "total_debt_base": self.data.total_debt_base,
            "health_factor": self.data.health_factor,
            "borrower_scaled_collateral": self.scaled_collateral,
            "collateral_index": self.collateral_index, "borrower_reserve_debt": self.reserve_debt,
            "debt_index": self.debt_index,
            "collateral_price": self.collateral.price,
            "collateral_asset_unit": math.asset_unit(self.collateral.decimals),
            "debt_price": self.debt.price,
            "debt_asset_unit": math.asset_unit(self.debt.decimals),
            "liquidation_bonus": self.bonus,
            "liquidation_protocol_fee_percentage": self.collateral.config.liquidation_protocol_fee,
        }

    def _terminal(self, repay: int) -> bool:
        a = self.amounts(repay)
        return (a.debt_amount >= self.reserve_debt
                or a.collateral_amount + a.protocol_fee >= self.collateral_balance)

    def _accepted_interior(self, repay: int) -> bool:
        a = self.amounts(repay)
        return not liq.leaves_dust(
            borrower_reserve_debt=self.reserve_debt, actual_debt=a.debt_amount,
            borrower_collateral_balance=self.collateral_balance,
            actual_collateral=a.collateral_amount, protocol_fee=a.protocol_fee,
            debt_price=self.debt.price, debt_asset_unit=math.asset_unit(self.debt.decimals),
            collateral_price=self.collateral.price,
            collateral_asset_unit=math.asset_unit(self.collateral.decimals))

    def repay_ranges(self, later: Pair | None = None) -> tuple[tuple[int, int], ...]:
        """The repay sizes liquidationCall accepts, as closed intervals in [1, max_repay].

        With `later` (this pair projected to a later timestamp, `LANDING_HORIZON`), the
        terminal range starts and ends where it does then: interest grows the debt and the
        collateral every second, so "all the debt" or "all the collateral" at this block
        would leave a few units when the transaction lands a block later, and revert with
        MustNotLeaveDust. The pool clamps a larger repay to what it takes then (and pulls
        only that), so such a size stays terminal from now until the horizon. Interior
        sizes only leave more of both as time passes: they stay accepted.
        """
        top = self.max_repay
        if top < 1:
            return ()
        ranges: list[tuple[int, int]] = []
        b = self._terminal_start(top)
        limit = top if b is None else b - 1  # interior sizes lie below b
        first = 1
        if limit >= 1 and not self._burns(limit):
            first = limit + 1  # even the largest interior size burns nothing
        elif limit >= 1:  # the smallest size whose burns are not empty (InvalidBurnAmount)
            lo, hi = 1, limit
            while lo < hi:
                mid = (lo + hi) // 2
                if self._burns(mid):
                    hi = mid
                else:
                    lo = mid + 1
            first = lo
        if first <= limit and self._accepted_interior(first):
            lo, hi = first, limit  # the largest size that leaves enough of both
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self._accepted_interior(mid):
                    lo = mid
                else:
                    hi = mid - 1
            ranges.append((first, lo))
        if b is not None and self._passes(b):
            b_later = later._terminal_start(later.max_repay) if later is not None else None
            if later is not None and b_later is not None and later._passes(b_later):
                b, top = max(b, b_later), max(top, later.max_repay)
            ranges.append((b, top))
        return tuple(ranges)

    def _passes(self, repay: int) -> bool:
        """The whole mirror accepts `repay` (a terminal size: every larger one does the same)."""
        try:
            self.outcome(repay)
        except AaveMathError:
            return False
        return True

    def _terminal_start(self, top: int) -> int | None:
        """The smallest size that takes all of one side (all debt or all collateral), if
        `top` does."""
        if top < 1 or not self._terminal(top):
            return None
        lo, hi = 1, top
        while lo < hi:
            mid = (lo + hi) // 2
            if self._terminal(mid):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _burns(self, repay: int) -> bool:
        """Both burns of an interior liquidation at `repay` are at least one scaled unit."""
        a = self.amounts(repay)
        return (math_v36.vtoken_burn_scaled(a.debt_amount, self.debt_index) > 0
                and math_v36.atoken_burn_scaled(a.collateral_amount, self.collateral_index) > 0)


def pairs(
    market: Market, account: Account, now: int, liquidator: str,
) -> Iterator[Pair]:
    """Every (collateral, debt) pair of `account` that passes
    ValidationLogic.validateLiquidationCall (v3.6) at `now`; none if HF >= 1."""
    if account.user.lower() == liquidator.lower():
        return  # SelfLiquidation: never propose liquidating the keeper's own account
    data = account_data_v36(market, account, now)
    if data.total_debt_base == 0 or not math.is_liquidatable(data.health_factor):
        return
    category: EModeCategory | None = market.emode_categories.get(account.emode_category)
    emode = category.v36() if category is not None else None
    collaterals: list[tuple[Reserve, int, int, int]] = []
    debts: list[tuple[Reserve, int, int]] = []
    for r in market.reserves:
        b = account.balances[r.asset]
        if account.config.is_using_as_collateral(r.id) and b.scaled_atoken_balance:
            index = r.normalized_income(now)
            balance = math_v36.atoken_balance(b.scaled_atoken_balance, index)
            collaterals.append((r, b.scaled_atoken_balance, index, balance))
        if b.scaled_variable_debt:
            debt_index = r.normalized_debt(now)
            debt = math_v36.variable_debt_balance(b.scaled_variable_debt, debt_index)
            debts.append((r, debt, debt_index))
    for c, scaled, index, balance in collaterals:
        for d, debt, debt_index in debts:
            if c.asset == d.asset:
                continue  # not mirrored (the pool updates one reserve's cache for both)
            try:
                liq.validate_liquidation_call(
                    borrower=account.user, liquidator=liquidator,
                    collateral_active=c.config.active, collateral_paused=c.config.paused,
                    debt_active=d.config.active, debt_paused=d.config.paused,
                    sentinel_set=int(market.sentinel, 16) != 0,
                    sentinel_allows=market.sentinel_allows,
                    collateral_grace_until=c.grace_until, debt_grace_until=d.grace_until,
                    now=now, health_factor=data.health_factor, using_as_collateral=True,
                    reserve_debt=debt)
            except math_v36.LiquidationRevert:
                continue
            bonus = liq.liquidation_bonus(
                user_emode_category=account.emode_category, category=emode,
                collateral_id=c.id, reserve_bonus=c.config.liquidation_bonus)
            yield Pair(market, account, c, d, data, scaled, index, balance, debt, bonus,
                       debt_index)


def other_deficits(market: Market, account: Account, debt_asset: str, now: int) -> dict[str, int]:
    """LiquidationLogic._burnBadDebt (v3.6): when a liquidation leaves no collateral, every
    other active reserve the borrower owes is burned whole and becomes that reserve's
    deficit; by asset."""
    out = {}
    for r in market.reserves:
        if r.asset == debt_asset or not account.config.is_borrowing(r.id) or not r.config.active:
            continue
        scaled = account.balances[r.asset].scaled_variable_debt
        if scaled:
            out[r.asset] = math_v36.variable_debt_balance(scaled, r.normalized_debt(now))
    return out


def _price_state(*values: int) -> str:
    """The same short hash as strategy.py's keys: prices and scaled debt of the pair."""
    return hashlib.sha256(":".join(map(str, values)).encode()).hexdigest()[:12]


class _Owner(Protocol):
    """What `candidates` needs of the strategy (strategy.AaveV3Strategy)."""

    name: str
    context: StrategyContext
    _symbols: dict[str, str]


LANDING_HORIZON = 3600  # seconds: a terminal size must still take everything this much later


def offered(
    market: Market, account: Account, now: int, liquidator: str,
) -> Iterator[tuple[Pair, tuple[tuple[int, int], ...]]]:
    """Every liquidatable pair of `account` with the repay ranges to offer: the pool's
    accepted sizes now, the terminal one good until now + LANDING_HORIZON; pairs with none
    are left out."""
    later = {(p.collateral.asset, p.debt.asset): p
             for p in pairs(market, account, now + LANDING_HORIZON, liquidator)}
    for pair in pairs(market, account, now, liquidator):
        ranges = pair.repay_ranges(later.get((pair.collateral.asset, pair.debt.asset)))
        if ranges:
            yield pair, ranges


def candidates(
    market: Market, account: Account, now: int, owner: _Owner, gas_limit: int,
) -> Iterator[Candidate]:
    """One Candidate per liquidatable pair of a v3.6 account, sized within the repay
    ranges offered (`offered`); `seize`/`actual_repay` mirror the pool's amounts now
    (a repay past the close factor is clamped, as the pool does)."""
    symbols, chain_id = owner._symbols, owner.context.chain_id
    for pair, ranges in offered(market, account, now, owner.context.liquidator):
        c, d = pair.collateral, pair.debt
        state = _price_state(c.price, d.price, account.balances[d.asset].scaled_variable_debt, 0)
        yield Candidate(
            strategy=owner.name, account=account.user, collateral=c.asset, debt=d.asset,
            max_repay=max(pair.max_repay, ranges[-1][1]),
            health_factor=pair.data.health_factor,
            key=f"{chain_id}:{owner.name}:{account.user}:{c.asset}:{d.asset}:{state}",
            seize=pair.seize, gas_limit=gas_limit, spender=market.pool,
            actual_repay=pair.actual_repay,
            collateral_symbol=symbols.get(c.asset) or "", debt_symbol=symbols.get(d.asset) or "",
            repay_ranges=ranges,
        )

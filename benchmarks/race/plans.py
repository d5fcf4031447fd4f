"""The competitor's liquidation sizing (benchmarks/race/competitor.py), as pure functions.

Aave V3 (v3.0 rules): the largest debt against the largest collateral, 50 % of the debt (all
of it below HF 0.95), capped by the tokens the bot holds. Morpho Blue: the whole position,
all borrow shares when the collateral covers them with the market's liquidation incentive,
else all the collateral.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.race import abi


@dataclass(frozen=True)
class Reserve:
    """An Aave reserve: its asset, id (its bits in a user's configuration) and tokens."""

    asset: str
    index: int
    a_token: str
    stable_debt: str
    variable_debt: str


@dataclass(frozen=True)
class Market:
    """A Morpho Blue market's parameters (idToMarketParams)."""

    id: str
    loan: str
    collateral: str
    oracle: str
    irm: str
    lltv: int

    @property
    def incentive(self) -> int:
        """min(1.15, 1 / (1 - 0.3 (1 - lltv))), in WAD."""
        wad = abi.WAD
        return min(abi.MAX_LIQUIDATION_INCENTIVE_FACTOR,
                   wad * wad // (wad - abi.LIQUIDATION_CURSOR * (wad - self.lltv) // wad))


@dataclass(frozen=True)
class Plan:
    """One liquidation to send: the in-flight key, the target contract and calldata."""

    account: str
    to: str
    data: str


def aave_plan(pool: str, reserves: Sequence[Reserve], decimals: Mapping[str, int],
              target: tuple[str, int], chunk: Sequence[Any], *,
              quotes: tuple[Sequence[int], Sequence[int]], spent: dict[str, int]) -> Plan | None:
    """Liquidate `target` (user, health factor)'s largest debt against its largest
    collateral at the close factor. `chunk`: its getUserConfiguration and, per reserve, its
    aToken, variable and stable debt balances; `quotes`: each reserve's oracle price and our
    balance; `spent`: what the round's earlier plans will pay, per token (updated)."""
    user, hf = target
    prices, mine = quotes
    config = abi.words(chunk[0])[0]
    best_debt: tuple[int, int, int] | None = None  # (value, reserve index, amount)
    best_collateral: tuple[int, int] | None = None  # (value, reserve index)
    for i, reserve in enumerate(reserves):
        a_bal, v_debt, s_debt = (abi.words(chunk[1 + 3 * i + j])[0] for j in range(3))
        scale = 10 ** decimals[reserve.asset]
        debt = v_debt + s_debt
        if debt and (best_debt is None or debt * prices[i] // scale > best_debt[0]):
            best_debt = (debt * prices[i] // scale, i, debt)
        is_collateral = config >> (2 * reserve.index + 1) & 1
        value = a_bal * prices[i] // scale
        if a_bal and is_collateral and (best_collateral is None or value > best_collateral[0]):
            best_collateral = (value, i)
    if best_debt is None or best_collateral is None:
        return None
    _, d, debt = best_debt
    cover = debt if hf < abi.CLOSE_FACTOR_HF_THRESHOLD else debt // 2
    asset = reserves[d].asset
    cover = min(cover, mine[d] - spent.get(asset, 0))
    if cover <= 0:
        return None
    spent[asset] = spent.get(asset, 0) + cover
    data = abi.calldata(abi.LIQUIDATION_CALL, reserves[best_collateral[1]].asset,
                        reserves[d].asset, user, cover, False)
    return Plan(user, pool, data)


def morpho_plan(morpho: str, market: Market, borrower: str, position: tuple[int, int],
                state: tuple[list[int], int, int], *, spent: dict[str, int]) -> Plan | None:
    """Liquidate the whole position if it is over its LLTV. `position`: its borrow shares
    and collateral; `state`: the market's totals, its oracle price and our balance of the
    loan token; `spent`: as for `aave_plan`."""
    shares, collateral = position
    totals, price, balance = state
    balance -= spent.get(market.loan, 0)  # the round's earlier liquidations
    borrow_assets, borrow_shares = totals[2], totals[3]
    borrowed = _mul_div_up(shares, borrow_assets + abi.VIRTUAL_ASSETS,
                           borrow_shares + abi.VIRTUAL_SHARES)
    max_borrow = collateral * price // abi.ORACLE_PRICE_SCALE * market.lltv // abi.WAD
    if borrowed <= max_borrow or price == 0:
        return None
    # Collateral needed to repay every share with the incentive: if the position has it,
    # repay all shares; else seize all collateral (the rest becomes bad debt).
    # Near the boundary (interest accrues before it executes) seize a little less than
    # the whole, so neither the shares nor the collateral underflow.
    needed = borrowed * market.incentive // abi.WAD * abi.ORACLE_PRICE_SCALE // price
    seized, repaid_shares = 0, shares
    repay = borrowed
    if needed > collateral * 999 // 1000:
        seized, repaid_shares = min(collateral, needed * 998 // 1000), 0
        repay = seized * price // abi.ORACLE_PRICE_SCALE * abi.WAD // market.incentive
    if repay > balance:  # pay with what it holds: a part of the shares
        seized = 0
        repaid_shares = balance * (borrow_shares + abi.VIRTUAL_SHARES) // (
            borrow_assets + abi.VIRTUAL_ASSETS) * 99 // 100
        repay = balance
        if repaid_shares <= 0:
            return None
    spent[market.loan] = spent.get(market.loan, 0) + repay
    params = (market.loan, market.collateral, market.oracle, market.irm, market.lltv)
    data = abi.calldata(abi.MORPHO_LIQUIDATE, params, borrower, seized, repaid_shares, b"")
    return Plan(f"{market.id}:{borrower}", morpho, data)


def _mul_div_up(x: int, y: int, d: int) -> int:
    return (x * y + d - 1) // d

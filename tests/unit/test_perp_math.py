"""Perp v2's mirrored math and book, on hand-checked cases (the chain parity is in
tests/integration/test_perp_v2.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from keeper.devnet.perp import sqrt_price_x96
from keeper.dex import v3_math
from keeper.dex.v3_ticks import get_sqrt_ratio_at_tick
from keeper.errors import StrategyError
from strategies.perp_v2 import events as ev
from strategies.perp_v2 import math as pm
from strategies.perp_v2 import orders as ob
from strategies.perp_v2.book import PerpBook

ONE = 10**18
ETH = "0x" + "aa" * 20
BTC = "0x" + "bb" * 20


def test_rounding_mirrors_solidity() -> None:
    # SettlementTokenMath.formatSettlementToken rounds toward minus infinity...
    assert pm.format_settlement(1_999_999_999_999, 6) == 1
    assert pm.format_settlement(-1, 6) == -1
    assert pm.format_settlement(-10**12, 6) == -1
    assert pm.format_settlement(-10**12 - 1, 6) == -2
    # ...while PerpMath.mulDiv truncates toward zero.
    assert pm.mul_div(-7, 3, 2) == -10 and pm.mul_div(7, 3, 2) == 10
    assert pm.mul_ratio(-1_000_001, 62_500) == -62_500
    assert pm.find_median_of_three(3, 1, 2) == 2 and pm.find_median_of_three(5, 5, 1) == 5


def test_mark_price_is_the_median_rule() -> None:
    at_2000 = sqrt_price_x96(Decimal(2000))
    price = pm.market_price(at_2000)
    assert abs(price - 2000 * ONE) < 10**6  # the X96 round trip loses a few wei
    # Pool at 2000, 30-min TWAP at 2100, index 1900 with no premium: the median is 2000.
    inputs = pm.MarkInputs(at_2000, sqrt_price_x96(Decimal(2100)), at_2000,
                           1900 * ONE, price)
    assert pm.mark_price(inputs) == price
    # The index far below both market prices: the lower market price wins.
    low = pm.MarkInputs(at_2000, sqrt_price_x96(Decimal(2100)), at_2000, 1000 * ONE, price)
    assert pm.mark_price(low) == price


def _long(collateral_usd: int, size_eth: int, entry: int) -> pm.AccountState:
    market = pm.MarketPosition(size_eth * ONE, -size_eth * entry * ONE)
    return pm.AccountState(collateral_usd * 10**6, 0, 0, {ETH: market})


def test_liquidation_threshold_and_partial_size() -> None:
    account = _long(20_000, 100, 2000)  # 10x long at 2000
    assert not pm.is_liquidatable(account, {ETH: 2000 * ONE}, 62_500, 6)
    # At 1880: value 20k - 12k = 8k < 6.25 % of 188k = 11.75k, and above half of it: half.
    marks = {ETH: 1880 * ONE}
    assert pm.is_liquidatable(account, marks, 62_500, 6)
    liq = pm.liquidation(account, ETH, marks, mm_ratio=62_500, penalty_ratio=25_000,
                         decimals=6)
    assert liq.size == -50 * ONE
    assert liq.penalty == 50 * 1880 * ONE * 25 // 1000 and liq.fee_to_liquidator == liq.penalty // 2
    # At 1700 the account is under half the requirement: all of it, and a deficit after.
    deep = pm.liquidation(account, ETH, {ETH: 1700 * ONE}, mm_ratio=62_500,
                          penalty_ratio=25_000, decimals=6)
    assert deep.size == -100 * ONE and deep.value_before < 0 < deep.fee_to_liquidator
    assert deep.fee_to_liquidator == deep.penalty  # bad debt: all of it to the liquidator


def test_book_withdraw_settles_owed_pnl_and_deregisters_dust() -> None:
    usdc, fund, me = "0x" + "cc" * 20, "0x" + "dd" * 20, "0x" + "ee" * 20
    book = PerpBook(usdc, 6, fund)
    book.apply([
        ev.VaultMove("deposit", usdc, me, 1_000 * 10**6),
        ev.PositionChanged(me, ETH, ONE, -2000 * ONE, 0, -2000 * ONE, 0),
        ev.PnlRealized(me, -1_500_000_000_000_000_001),  # -1.5 USD and a wei
        ev.VaultMove("withdraw", usdc, me, 100 * 10**6),
    ])
    account = book.accounts[me]
    # Vault._settleAndDecreaseBalance: the owed PnL, rounded down to USDC, joins the balance.
    assert account.owed == 0 and account.balance == 900 * 10**6 - 1_500_001
    book.apply([ev.PositionChanged(me, ETH, -ONE + 9, 2000 * ONE, 0, 5, 0)])
    assert ETH not in account.takers  # both balances under the dust: deregistered
    book.apply([ev.VaultMove("bad_debt", "", me, 7)])
    assert book.accounts[fund].balance == -7


def test_orders_follow_liquidity_changed_and_debts_shrink_in_proportion() -> None:
    maker, book = "0x" + "ee" * 20, PerpBook("0x" + "cc" * 20, 6, "0x" + "dd" * 20)
    book.apply([ev.LiquidityChanged(maker, ETH, -600, 600, 90, 30, 300),
                ev.LiquidityChanged(maker, ETH, -600, 600, 11, 7, 100)])
    order = book.accounts[maker].orders[(ETH, -600, 600)]
    assert (order.liquidity, order.base_debt, order.quote_debt) == (400, 101, 37)
    # OrderBook._removeLiquidityFromOrder: debt -= mulDiv(debt, 100, 400), floored.
    book.apply([ev.LiquidityChanged(maker, ETH, -600, 600, -20, -9, -100)])
    assert (order.liquidity, order.base_debt, order.quote_debt) == (300, 101 - 25, 37 - 9)
    book.apply([ev.LiquidityChanged(maker, ETH, -600, 600, 0, 0, 0)])  # a fee collection
    assert order.liquidity == 300
    book.apply([ev.LiquidityChanged(maker, ETH, -600, 600, -70, -21, -300)])
    assert not book.accounts[maker].orders and ETH not in book.accounts[maker].bases()
    with pytest.raises(StrategyError, match="liquidity removed"):
        book.apply([ev.LiquidityChanged(maker, ETH, -600, 600, -1, -1, -1)])
    assert not book.accounts[maker].orders  # nothing half-applied


def test_order_amounts_at_the_pool_price() -> None:
    lower, upper = get_sqrt_ratio_at_tick(-600), get_sqrt_ratio_at_tick(600)
    liquidity = 10**21
    # LiquidityAmounts' amounts are SqrtPriceMath's deltas rounded down.
    for a, b in ((lower, upper), (v3_math.Q96, upper), (lower, v3_math.Q96)):
        assert ob.get_amount0_for_liquidity(b, a, liquidity) == v3_math.get_amount0_delta(
            a, b, liquidity, False)
        assert ob.get_amount1_for_liquidity(b, a, liquidity) == v3_math.get_amount1_delta(
            a, b, liquidity, False)
    held = [(-600, 600, ob.Order(liquidity, 5, 7))]
    below, above = get_sqrt_ratio_at_tick(-1200), get_sqrt_ratio_at_tick(1200)
    assert ob.token_amounts_in_pool(held, below) == (
        v3_math.get_amount0_delta(lower, upper, liquidity, False), 0)  # all base
    assert ob.token_amounts_in_pool(held, above) == (
        0, v3_math.get_amount1_delta(lower, upper, liquidity, False))  # all quote
    base, quote = ob.token_amounts_in_pool(held, v3_math.Q96)  # price 1, mid-range
    assert abs(base - quote) <= 1 and base > 0
    assert ob.maker_balances(held, v3_math.Q96) == (base - 5, quote - 7)

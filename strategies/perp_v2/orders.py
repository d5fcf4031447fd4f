"""A maker's open orders, kept from the ClearingHouse's `LiquidityChanged` logs, and what
they hold at the vAMM pool's price: exact mirrors of Perp v2 Curie 2.8.4's OrderBook
(`@perp/curie-contract` 2.8.4) and of the Uniswap libraries it is built with (v3-core
1.0.0 TickMath, v3-periphery 1.0.1 LiquidityAmounts).

Every add or remove of liquidity emits `LiquidityChanged` with the liquidity moved and, on
an add, the base and quote the pool took (the order's new debt); a remove cuts the debts
in proportion to the liquidity removed. So the order's liquidity and debts follow from the
logs alone; its amounts at the pool's price follow from its liquidity and the pool's
slot0. Its pending fee does not: it grows with the OrderBook's own fee accumulators, which
every swap moves without a log of them (strategies/perp_v2/reads.py reads it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from keeper.dex.v3_math import Q96, mul_div
from keeper.dex.v3_ticks import get_sqrt_ratio_at_tick
from keeper.errors import StrategyError


@dataclass
class Order:
    """OpenOrder.Info's liquidity, baseDebt and quoteDebt."""

    liquidity: int = 0
    base_debt: int = 0
    quote_debt: int = 0


def change_liquidity(order: Order, liquidity: int, base: int, quote: int) -> None:
    """One `LiquidityChanged` on `order`: OrderBook._addLiquidityToOrder (liquidity > 0:
    the liquidity and the base and quote the pool took are added) or
    OrderBook._removeLiquidityFromOrder (liquidity < 0: each debt is cut by
    FullMath.mulDiv(debt, removed, order liquidity)), Curie 2.8.4. A change of 0 (a remove
    that only collects fees) leaves the order as it is."""
    if liquidity > 0:
        order.liquidity += liquidity
        order.base_debt += base
        order.quote_debt += quote
        return
    removed = -liquidity
    if removed == 0:
        return
    if removed > order.liquidity:
        raise StrategyError(f"perp_v2: {removed} liquidity removed from an order of "
                            f"{order.liquidity} (logs missing before start_block?)")
    order.base_debt -= mul_div(order.base_debt, removed, order.liquidity)
    order.quote_debt -= mul_div(order.quote_debt, removed, order.liquidity)
    order.liquidity -= removed


def get_amount0_for_liquidity(sqrt_a: int, sqrt_b: int, liquidity: int) -> int:
    """LiquidityAmounts.getAmount0ForLiquidity (v3-periphery 1.0.1)."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    return mul_div(liquidity << 96, sqrt_b - sqrt_a, sqrt_b) // sqrt_a


def get_amount1_for_liquidity(sqrt_a: int, sqrt_b: int, liquidity: int) -> int:
    """LiquidityAmounts.getAmount1ForLiquidity (v3-periphery 1.0.1)."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    return mul_div(liquidity, sqrt_b - sqrt_a, Q96)


def token_amounts_in_pool(
    orders: Iterable[tuple[int, int, Order]], sqrt_price_x96: int
) -> tuple[int, int]:
    """OrderBook._getTotalTokenAmountInPool (Curie 2.8.4) for fetchBase true and false, fees
    left out: (base, quote) the orders (lower tick, upper tick, order) hold at the pool's
    sqrtPriceX96."""
    base = quote = 0
    for lower_tick, upper_tick, order in orders:
        lower = get_sqrt_ratio_at_tick(lower_tick)
        upper = get_sqrt_ratio_at_tick(upper_tick)
        if sqrt_price_x96 < upper:
            base += get_amount0_for_liquidity(max(sqrt_price_x96, lower), upper, order.liquidity)
        if sqrt_price_x96 > lower:
            quote += get_amount1_for_liquidity(lower, min(sqrt_price_x96, upper),
                                               order.liquidity)
    return base, quote


def maker_balances(
    orders: Iterable[tuple[int, int, Order]], sqrt_price_x96: int
) -> tuple[int, int]:
    """(base, quote) net of the orders' debts: OrderBook.getTotalTokenAmountInPoolAndPendingFee
    less getTotalOrderDebt (base), and OrderBook._getMakerQuoteBalanceAndPendingFee's balance
    (quote), Curie 2.8.4."""
    held = list(orders)
    base, quote = token_amounts_in_pool(held, sqrt_price_x96)
    return (base - sum(o.base_debt for _, _, o in held),
            quote - sum(o.quote_debt for _, _, o in held))

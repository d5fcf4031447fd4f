"""Exact mirrors of Perp v2 Curie 2.8.4's account math (`@perp/curie-contract` 2.8.4).

Integers as the contracts hold them: prices and values in 18 decimals (X10_18), ratios in
pips (1e6), the Vault's balance in settlement-token units. Every function names the
Solidity function it mirrors; tests/integration/test_perp_v2.py compares the results with
the chain's view functions for every seeded account across a crash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Q96 = 2**96
ONE = 10**18
RATIO_ONE = 10**6
DUST = 10  # AccountBalance._DUST
MIN_PARTIAL_LIQUIDATE_POSITION_VALUE = 100 * ONE  # AccountBalance, 100 USD


def full_mul_div(a: int, b: int, denominator: int) -> int:
    """Uniswap FullMath.mulDiv (v3-core 1.0.1) on non-negative operands: floor(a * b / d)."""
    return a * b // denominator


def mul_div(a: int, b: int, denominator: int) -> int:
    """PerpMath.mulDiv(int256, int256, uint256): |a||b|/d floored, then the sign (so the
    result rounds toward zero)."""
    unsigned = full_mul_div(abs(a), abs(b), denominator)
    return -unsigned if (a < 0 < b) or (b < 0 < a) else unsigned


def mul_ratio(value: int, ratio: int) -> int:
    """PerpMath.mulRatio (uint256 and int256 overloads): value * ratio / 1e6."""
    if value >= 0:
        return full_mul_div(value, ratio, RATIO_ONE)
    return mul_div(value, ratio, RATIO_ONE)


def format_sqrt_price_x96_to_price_x96(sqrt_price_x96: int) -> int:
    """PerpMath.formatSqrtPriceX96ToPriceX96."""
    return full_mul_div(sqrt_price_x96, sqrt_price_x96, Q96)


def format_x96_to_x10_18(value_x96: int) -> int:
    """PerpMath.formatX96ToX10_18."""
    return full_mul_div(value_x96, ONE, Q96)


def market_price(sqrt_twap_x96: int) -> int:
    """AccountBalance._getMarketPrice from Exchange.getSqrtMarketTwapX96's answer."""
    return format_x96_to_x10_18(format_sqrt_price_x96_to_price_x96(sqrt_twap_x96))


def find_median_of_three(v1: int, v2: int, v3: int) -> int:
    """PerpMath.findMedianOfThree."""
    return max(min(v1, v2), min(max(v1, v2), v3))


@dataclass(frozen=True)
class MarkInputs:
    """What AccountBalance._getMarkPrice reads for one market (Curie 2.8.4): the pool's
    sqrt TWAPs over 15 s, the mark's market-TWAP interval and its premium interval, and the
    index now and over the premium interval."""

    sqrt_twap_15s: int
    sqrt_twap_market: int
    sqrt_twap_premium: int
    index: int
    index_twap_premium: int


def mark_price(inputs: MarkInputs) -> int:
    """AccountBalance._getMarkPrice: median(market price, market TWAP, index + premium),
    premium = market TWAP - index TWAP over the premium interval."""
    price = market_price(inputs.sqrt_twap_15s)
    twap = market_price(inputs.sqrt_twap_market)
    premium = market_price(inputs.sqrt_twap_premium) - inputs.index_twap_premium
    index_with_premium = inputs.index + premium
    if index_with_premium < 0:  # PerpSafeCast.toUint256 reverts there
        raise ValueError("index with premium is negative")
    return find_median_of_three(price, twap, index_with_premium)


def dusted(size: int) -> int:
    """AccountBalance.getTakerPositionSize / getTotalPositionSize: under _DUST counts as 0."""
    return 0 if abs(size) < DUST else size


def position_value(size: int, mark: int) -> int:
    """AccountBalance._getPositionValue (an open market): size * mark / 1e18."""
    return 0 if size == 0 else mul_div(size, mark, ONE)


@dataclass(frozen=True)
class MarketPosition:
    """One account in one market: its taker balances (AccountMarket.Info) and, for a maker,
    the base and quote its orders hold net of their debt, and their pending fee."""

    taker_size: int
    taker_open_notional: int
    maker_base: int = 0  # OrderBook base in pool - base order debt
    maker_quote: int = 0  # OrderBook quote in pool - quote order debt
    pending_fee: int = 0

    def total_size(self) -> int:
        """AccountBalance.getTotalPositionSize."""
        return dusted(self.maker_base + self.taker_size)


@dataclass(frozen=True)
class AccountState:
    """What the Vault and AccountBalance hold of one account that only has settlement-token
    collateral: the Vault balance (settlement-token units), the owed realized PnL (X10_18),
    the pending funding payment (X10_18, Exchange.getAllPendingFundingPayment) and each
    registered market's position."""

    balance: int
    owed_realized_pnl: int
    pending_funding: int
    markets: Mapping[str, MarketPosition]


def _scale(decimals: int) -> int:
    return int(10 ** (18 - decimals))


def parse_settlement(amount: int, decimals: int) -> int:
    """SettlementTokenMath.parseSettlementToken: to 18 decimals."""
    return amount * _scale(decimals)


def format_settlement(amount_x10_18: int, decimals: int) -> int:
    """SettlementTokenMath.formatSettlementToken(int256): to the token's decimals, always
    rounded down (toward minus infinity)."""
    denominator = _scale(decimals)
    quotient = abs(amount_x10_18) // denominator
    if amount_x10_18 >= 0:
        return quotient
    return -quotient - (1 if abs(amount_x10_18) % denominator else 0)


def total_abs_position_value(account: AccountState, marks: Mapping[str, int]) -> int:
    """AccountBalance.getTotalAbsPositionValue."""
    return sum(abs(position_value(p.total_size(), marks[b])) for b, p in account.markets.items())


def margin_requirement_for_liquidation(
    account: AccountState, marks: Mapping[str, int], mm_ratio: int
) -> int:
    """AccountBalance.getMarginRequirementForLiquidation: |position values| * mmRatio."""
    return mul_ratio(total_abs_position_value(account, marks), mm_ratio)


def pnl_and_pending_fee(account: AccountState, marks: Mapping[str, int]) -> tuple[int, int, int]:
    """AccountBalance.getPnlAndPendingFee: (owed realized PnL, unrealized PnL, pending fee)."""
    values = sum(position_value(p.total_size(), marks[b]) for b, p in account.markets.items())
    net_quote = sum(p.taker_open_notional + p.maker_quote for p in account.markets.values())
    fee = sum(p.pending_fee for p in account.markets.values())
    return account.owed_realized_pnl, values + net_quote, fee


def collateral_and_account_value(
    account: AccountState, marks: Mapping[str, int], decimals: int
) -> tuple[int, int]:
    """Vault._getAccountValueAndTotalCollateralValue (settlement-token collateral only):
    (total collateral value, account value), X10_18."""
    owed, unrealized, fee = pnl_and_pending_fee(account, marks)
    settlement = parse_settlement(account.balance, decimals) + (
        fee - account.pending_funding + owed)
    return settlement, settlement + unrealized


def account_value(account: AccountState, marks: Mapping[str, int], decimals: int) -> int:
    """ClearingHouse.getAccountValue: the Vault's account value in settlement-token units
    (Vault.getAccountValue, rounded down), parsed back to 18 decimals."""
    _, value = collateral_and_account_value(account, marks, decimals)
    return parse_settlement(format_settlement(value, decimals), decimals)


def is_liquidatable(
    account: AccountState, marks: Mapping[str, int], mm_ratio: int, decimals: int
) -> bool:
    """ClearingHouse._isLiquidatable: account value < margin requirement for liquidation."""
    return account_value(account, marks, decimals) < margin_requirement_for_liquidation(
        account, marks, mm_ratio)


def total_debt_value(account: AccountState, marks: Mapping[str, int]) -> int:
    """AccountBalance.getTotalDebtValue (taker balances only: a maker's order debt is not
    mirrored here; used for the liquidator's own free collateral)."""
    quote = sum(p.taker_open_notional for p in account.markets.values())
    base_debt = sum(mul_div(p.taker_size, marks[b], ONE)
                    for b, p in account.markets.items() if p.taker_size < 0)
    return abs(min(quote, 0) + base_debt)


def free_collateral_by_ratio(
    account: AccountState, marks: Mapping[str, int], ratio: int, decimals: int
) -> int:
    """Vault.getFreeCollateralByRatio (taker balances only), settlement-token units."""
    collateral, value = collateral_and_account_value(account, marks, decimals)
    required = mul_ratio(total_debt_value(account, marks), ratio)
    return format_settlement(min(collateral, value) - required, decimals)


def liquidatable_position_size(
    account: AccountState, base: str, marks: Mapping[str, int], mm_ratio: int, value: int
) -> int:
    """AccountBalance.getLiquidatablePositionSize(trader, baseToken, accountValue)."""
    requirement = margin_requirement_for_liquidation(account, marks, mm_ratio)
    position = account.markets.get(base)
    size = position.total_size() if position is not None else 0
    if value >= requirement or size == 0:
        return 0
    value_abs = abs(position_value(size, marks[base]))
    if value_abs <= MIN_PARTIAL_LIQUIDATE_POSITION_VALUE:
        return size
    ratio = RATIO_ONE
    if value >= requirement // 2:  # requirement >= 0: floor is SignedSafeMath's truncation
        ratio = min(full_mul_div(total_abs_position_value(account, marks), RATIO_ONE,
                                 value_abs * 2), RATIO_ONE)
    return mul_ratio(size, ratio)


@dataclass(frozen=True)
class Liquidation:
    """ClearingHouse._liquidate's amounts for liquidating as much as allowed in one market."""

    size: int  # the trader's liquidated position size (the liquidator takes its opposite)
    notional: int  # liquidatedPositionNotional: size * mark, signed as the position
    penalty: int
    fee_to_liquidator: int
    value_before: int  # the trader's account value (X10_18, as ClearingHouse reads it)
    value_after: int  # after the penalty (mark unchanged: the position closes at mark)


def liquidation(
    account: AccountState, base: str, marks: Mapping[str, int], *, mm_ratio: int,
    penalty_ratio: int, decimals: int,
) -> Liquidation:
    """ClearingHouse._liquidate(trader, baseToken, 0) in 2.8.4, the amounts only: the size
    (_getLiquidatedPositionSizeAndNotional), the penalty and its split, and the account
    value after (the CH_IIC check compares its deficit with the insurance fund's capacity).
    Funding is taken as settled (the pending payment is already in the account value)."""
    value = account_value(account, marks, decimals)
    size = liquidatable_position_size(account, base, marks, mm_ratio, value)
    notional = mul_div(size, marks[base], ONE)
    penalty = mul_ratio(abs(notional), penalty_ratio)
    fee = penalty if value < 0 else penalty // 2
    # Closing at mark realizes exactly the unrealized PnL of that part: the account value
    # changes only by the penalty (the insurance fund's half included).
    return Liquidation(-size, notional, penalty, fee, value, value - penalty)


def stress_marks(marks: Mapping[str, int], drops: Mapping[str, int]) -> dict[str, int]:
    """The marks after a drop of `drops[base]` percent (for the risk view)."""
    return {b: m * (100 - drops.get(b, 0)) // 100 for b, m in marks.items()}


def sorted_by_value(account: AccountState, marks: Mapping[str, int]) -> Sequence[str]:
    """The account's markets, largest absolute position value first (the one to liquidate)."""
    return sorted((b for b, p in account.markets.items() if p.total_size() != 0),
                  key=lambda b: (-abs(position_value(account.markets[b].total_size(),
                                                     marks[b])), b))

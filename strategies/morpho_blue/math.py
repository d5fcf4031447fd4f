"""Exact integer mirrors of Morpho Blue's math (@morpho-org/morpho-blue 1.0.0), bit for bit.

Every function names the Solidity function it mirrors. Only Python ints are used. Where the
contract reverts (checked 0.8 arithmetic, `toUint128`, a division by zero), the mirror raises
a `MorphoMathError` (an ArithmeticError). Inputs are uint256 values.

Rounding follows the libraries: MathLib's `*Down` functions floor, `*Up` functions ceil;
SharesMathLib adds VIRTUAL_SHARES (1e6) to share totals and VIRTUAL_ASSETS (1) to asset totals.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from keeper.errors import StrategyError

UINT256_MAX = 2**256 - 1
UINT128_MAX = 2**128 - 1

# MathLib
WAD = 10**18
# SharesMathLib
VIRTUAL_SHARES = 10**6
VIRTUAL_ASSETS = 1
# ConstantsLib
MAX_FEE = 25 * 10**16
ORACLE_PRICE_SCALE = 10**36
LIQUIDATION_CURSOR = 3 * 10**17
MAX_LIQUIDATION_INCENTIVE_FACTOR = 115 * 10**16
# IrmMock: `365 days`
SECONDS_PER_YEAR = 365 * 24 * 3600


class MorphoMathError(StrategyError, ArithmeticError):
    """The mirrored contract code would revert (overflow, underflow, division by zero)."""


def _check(value: int) -> int:
    if value > UINT256_MAX:
        raise MorphoMathError(f"{value} overflows uint256")
    if value < 0:
        raise MorphoMathError(f"{value} underflows uint256")
    return value


def _div(x: int, d: int) -> int:
    if d == 0:
        raise MorphoMathError("division by zero")
    return x // d


# ---------------------------------------------------------------------------- MathLib


def mul_div_down(x: int, y: int, d: int) -> int:
    """Mirrors MathLib.mulDivDown: (x * y) / d, checked."""
    return _div(_check(x * y), d)


def mul_div_up(x: int, y: int, d: int) -> int:
    """Mirrors MathLib.mulDivUp: (x * y + (d - 1)) / d, checked (d == 0 underflows first)."""
    return _div(_check(_check(x * y) + _check(d - 1)), d)


def w_mul_down(x: int, y: int) -> int:
    """Mirrors MathLib.wMulDown: mulDivDown(x, y, WAD)."""
    return mul_div_down(x, y, WAD)


def w_div_down(x: int, y: int) -> int:
    """Mirrors MathLib.wDivDown: mulDivDown(x, WAD, y)."""
    return mul_div_down(x, WAD, y)


def w_div_up(x: int, y: int) -> int:
    """Mirrors MathLib.wDivUp: mulDivUp(x, WAD, y)."""
    return mul_div_up(x, WAD, y)


def w_taylor_compounded(x: int, n: int) -> int:
    """Mirrors MathLib.wTaylorCompounded: e^(x*n) - 1 to the third Taylor term, in wad."""
    first = _check(x * n)
    second = mul_div_down(first, first, 2 * WAD)
    third = mul_div_down(second, first, 3 * WAD)
    return _check(first + second + third)


# ---------------------------------------------------------------------------- UtilsLib


def exactly_one_zero(x: int, y: int) -> bool:
    """Mirrors UtilsLib.exactlyOneZero."""
    return (x == 0) != (y == 0)


def u_min(x: int, y: int) -> int:
    """Mirrors UtilsLib.min."""
    return y if y < x else x


def to_uint128(x: int) -> int:
    """Mirrors UtilsLib.toUint128 (reverts with MAX_UINT128_EXCEEDED)."""
    if x > UINT128_MAX:
        raise MorphoMathError(f"{x} exceeds uint128")
    return x


def zero_floor_sub(x: int, y: int) -> int:
    """Mirrors UtilsLib.zeroFloorSub: max(x - y, 0)."""
    return x - y if x > y else 0


# ---------------------------------------------------------------------------- SharesMathLib


def to_shares_down(assets: int, total_assets: int, total_shares: int) -> int:
    """Mirrors SharesMathLib.toSharesDown."""
    return mul_div_down(assets, total_shares + VIRTUAL_SHARES, total_assets + VIRTUAL_ASSETS)


def to_assets_down(shares: int, total_assets: int, total_shares: int) -> int:
    """Mirrors SharesMathLib.toAssetsDown."""
    return mul_div_down(shares, total_assets + VIRTUAL_ASSETS, total_shares + VIRTUAL_SHARES)


def to_shares_up(assets: int, total_assets: int, total_shares: int) -> int:
    """Mirrors SharesMathLib.toSharesUp."""
    return mul_div_up(assets, total_shares + VIRTUAL_SHARES, total_assets + VIRTUAL_ASSETS)


def to_assets_up(shares: int, total_assets: int, total_shares: int) -> int:
    """Mirrors SharesMathLib.toAssetsUp."""
    return mul_div_up(shares, total_assets + VIRTUAL_ASSETS, total_shares + VIRTUAL_SHARES)


# ---------------------------------------------------------------------------- Morpho structs


@dataclass(frozen=True, slots=True)
class MarketParams:
    """IMorpho.MarketParams (addresses lower-case)."""

    loan_token: str
    collateral_token: str
    oracle: str
    irm: str
    lltv: int


@dataclass(frozen=True, slots=True)
class MarketState:
    """IMorpho.Market: the stored struct (totals without interest since `last_update`)."""

    total_supply_assets: int = 0
    total_supply_shares: int = 0
    total_borrow_assets: int = 0
    total_borrow_shares: int = 0
    last_update: int = 0
    fee: int = 0


@dataclass(frozen=True, slots=True)
class PositionState:
    """IMorpho.Position."""

    supply_shares: int = 0
    borrow_shares: int = 0
    collateral: int = 0


@dataclass(frozen=True, slots=True)
class Accrual:
    """What `Morpho._accrueInterest` does: the new market, the interest and the fee shares."""

    market: MarketState
    interest: int
    fee_shares: int


def accrue_interest(
    market: MarketState, borrow_rate: int | None, timestamp: int, *, has_irm: bool = True
) -> Accrual:
    """Mirrors Morpho._accrueInterest at `timestamp` (the fee recipient's shares included).

    `borrow_rate` is IIrm.borrowRate(marketParams, market) for the stored `market` (the rate
    valid since `last_update`); it may be None only when no interest is due (elapsed == 0 or
    no IRM). `has_irm` is false for a market whose irm is address(0).
    """
    elapsed = _check(timestamp - market.last_update)
    if elapsed == 0:
        return Accrual(market, 0, 0)
    if not has_irm:
        return Accrual(replace(market, last_update=timestamp), 0, 0)
    if borrow_rate is None:
        raise ValueError("accrue_interest needs the IRM's borrow rate when time has elapsed")
    interest = w_mul_down(market.total_borrow_assets, w_taylor_compounded(borrow_rate, elapsed))
    total_borrow_assets = to_uint128(market.total_borrow_assets + to_uint128(interest))
    total_supply_assets = to_uint128(market.total_supply_assets + to_uint128(interest))
    fee_shares = 0
    total_supply_shares = market.total_supply_shares
    if market.fee != 0:
        fee_amount = w_mul_down(interest, market.fee)
        # The fee is taken out of the supply it is already counted in (as the contract does).
        fee_shares = to_shares_down(
            fee_amount, _check(total_supply_assets - fee_amount), total_supply_shares
        )
        total_supply_shares = to_uint128(total_supply_shares + to_uint128(fee_shares))
    accrued = MarketState(
        total_supply_assets, total_supply_shares, total_borrow_assets,
        market.total_borrow_shares, timestamp, market.fee,
    )
    return Accrual(accrued, interest, fee_shares)


# ---------------------------------------------------------------------------- health


def borrowed_assets(position: PositionState, market: MarketState) -> int:
    """Mirrors the `borrowed` term of Morpho._isHealthy: borrowShares.toAssetsUp(...)."""
    return to_assets_up(
        position.borrow_shares, market.total_borrow_assets, market.total_borrow_shares
    )


def max_borrow(collateral: int, collateral_price: int, lltv: int) -> int:
    """Mirrors the `maxBorrow` term of Morpho._isHealthy."""
    return w_mul_down(mul_div_down(collateral, collateral_price, ORACLE_PRICE_SCALE), lltv)


def is_healthy(
    position: PositionState, market: MarketState, collateral_price: int, lltv: int
) -> bool:
    """Mirrors Morpho._isHealthy(marketParams, id, borrower, collateralPrice)."""
    borrowed = borrowed_assets(position, market)
    return max_borrow(position.collateral, collateral_price, lltv) >= borrowed


def health_factor(
    position: PositionState, market: MarketState, collateral_price: int, lltv: int
) -> int:
    """maxBorrow * WAD / borrowed (wad, floor); uint256 max without debt. HF < WAD iff unhealthy.

    Not a contract function (Morpho has no health factor): defined so that the verdict equals
    `is_healthy` exactly, since floor(m * WAD / b) < WAD iff m < b.
    """
    borrowed = borrowed_assets(position, market)
    if borrowed == 0:
        return UINT256_MAX
    return min(max_borrow(position.collateral, collateral_price, lltv) * WAD // borrowed,
               UINT256_MAX)


# ---------------------------------------------------------------------------- liquidation


def liquidation_incentive_factor(lltv: int) -> int:
    """Mirrors Morpho.liquidate's `liquidationIncentiveFactor`: min(MAX_LIQUIDATION_INCENTIVE_
    FACTOR, WAD.wDivDown(WAD - LIQUIDATION_CURSOR.wMulDown(WAD - lltv)))."""
    return u_min(
        MAX_LIQUIDATION_INCENTIVE_FACTOR,
        w_div_down(WAD, _check(WAD - w_mul_down(LIQUIDATION_CURSOR, _check(WAD - lltv)))),
    )


def repaid_shares_for_seized(
    seized_assets: int, collateral_price: int, lif: int, market: MarketState
) -> int:
    """Mirrors Morpho.liquidate with seizedAssets > 0: the `repaidShares` it computes."""
    quoted = mul_div_up(seized_assets, collateral_price, ORACLE_PRICE_SCALE)
    return to_shares_up(
        w_div_up(quoted, lif), market.total_borrow_assets, market.total_borrow_shares
    )


def seized_for_repaid_shares(
    repaid_shares: int, collateral_price: int, lif: int, market: MarketState
) -> int:
    """Mirrors Morpho.liquidate with repaidShares > 0: the `seizedAssets` it computes."""
    assets = to_assets_down(repaid_shares, market.total_borrow_assets, market.total_borrow_shares)
    return mul_div_down(w_mul_down(assets, lif), ORACLE_PRICE_SCALE, collateral_price)


def repaid_assets(repaid_shares: int, market: MarketState) -> int:
    """Mirrors Morpho.liquidate's `repaidAssets`: repaidShares.toAssetsUp(...)."""
    return to_assets_up(repaid_shares, market.total_borrow_assets, market.total_borrow_shares)


def max_seized_for_repaid_assets(
    max_assets: int, collateral_price: int, lif: int, market: MarketState
) -> int:
    """The largest seizedAssets whose Morpho.liquidate `repaidAssets` is <= `max_assets`.

    Inverts liquidate's chain of ceilings step by step (ceil(a / b) <= n iff a <= n * b):
    toAssetsUp, toSharesUp, wDivUp, mulDivUp. Not a contract function; exact by construction
    (tested against the forward mirror).
    """
    ta = market.total_borrow_assets + VIRTUAL_ASSETS
    ts = market.total_borrow_shares + VIRTUAL_SHARES
    shares = max_assets * ts // ta  # toAssetsUp(shares) <= max_assets
    return max_seized_for_repaid_shares(shares, collateral_price, lif, market)


def max_seized_for_repaid_shares(
    max_shares: int, collateral_price: int, lif: int, market: MarketState
) -> int:
    """The largest seizedAssets whose Morpho.liquidate `repaidShares` is <= `max_shares`."""
    if collateral_price == 0:
        raise MorphoMathError("division by zero (collateral price)")
    ta = market.total_borrow_assets + VIRTUAL_ASSETS
    ts = market.total_borrow_shares + VIRTUAL_SHARES
    quoted_over_lif = max_shares * ta // ts  # toSharesUp(q) <= max_shares
    quoted = quoted_over_lif * lif // WAD  # wDivUp(x, lif) <= quoted_over_lif
    return quoted * ORACLE_PRICE_SCALE // collateral_price  # mulDivUp(s, price, 1e36) <= quoted


@dataclass(frozen=True, slots=True)
class Liquidation:
    """The effects of one Morpho.liquidate call, as its Liquidate event reports them."""

    seized_assets: int
    repaid_shares: int
    repaid_assets: int
    bad_debt_assets: int
    bad_debt_shares: int
    market: MarketState  # after the call
    position: PositionState  # the borrower's, after the call


def liquidate(
    market: MarketState,
    position: PositionState,
    *,
    collateral_price: int,
    lltv: int,
    seized_assets: int = 0,
    repaid_shares: int = 0,
) -> Liquidation:
    """Mirrors Morpho.liquidate after `_accrueInterest` (pass the accrued `market`).

    Raises MorphoMathError where the contract reverts: inconsistent input, a healthy position,
    more shares or collateral than the borrower has.
    """
    if not exactly_one_zero(seized_assets, repaid_shares):
        raise MorphoMathError("inconsistent input")
    if is_healthy(position, market, collateral_price, lltv):
        raise MorphoMathError("position is healthy")
    lif = liquidation_incentive_factor(lltv)
    if seized_assets > 0:
        repaid_shares = repaid_shares_for_seized(seized_assets, collateral_price, lif, market)
    else:
        seized_assets = seized_for_repaid_shares(repaid_shares, collateral_price, lif, market)
    repaid = repaid_assets(repaid_shares, market)
    borrow_shares = _check(position.borrow_shares - to_uint128(repaid_shares))
    total_borrow_shares = _check(market.total_borrow_shares - to_uint128(repaid_shares))
    total_borrow_assets = to_uint128(zero_floor_sub(market.total_borrow_assets, repaid))
    collateral = _check(position.collateral - to_uint128(seized_assets))
    total_supply_assets = market.total_supply_assets
    bad_shares = bad_assets = 0
    if collateral == 0:  # bad debt is realized: the suppliers absorb the rest
        bad_shares = borrow_shares
        bad_assets = u_min(
            total_borrow_assets,
            to_assets_up(bad_shares, total_borrow_assets, total_borrow_shares),
        )
        total_borrow_assets = _check(total_borrow_assets - bad_assets)
        total_supply_assets = _check(total_supply_assets - bad_assets)
        total_borrow_shares = _check(total_borrow_shares - bad_shares)
        borrow_shares = 0
    after = replace(
        market, total_supply_assets=total_supply_assets, total_borrow_assets=total_borrow_assets,
        total_borrow_shares=total_borrow_shares,
    )
    return Liquidation(
        seized_assets, repaid_shares, repaid, bad_assets, bad_shares, after,
        replace(position, borrow_shares=borrow_shares, collateral=collateral),
    )


# ---------------------------------------------------------------------------- IRM and oracle


def irm_mock_borrow_rate(market: MarketState) -> int:
    """Mirrors IrmMock.borrowRateView (morpho-blue 1.0.0 src/mocks): utilization / 365 days."""
    if market.total_supply_assets == 0:
        return 0
    return w_div_down(market.total_borrow_assets, market.total_supply_assets) // SECONDS_PER_YEAR


def feed_oracle_price(scale_factor: int, collateral_answer: int, loan_answer: int) -> int:
    """Mirrors FeedOracle.price (contracts/devnet): mulDiv(SCALE_FACTOR, cAnswer, lAnswer).

    `_answer` requires each answer > 0; the 512-bit mulDiv floors and reverts when the
    quotient does not fit in 256 bits.
    """
    if collateral_answer <= 0 or loan_answer <= 0:
        raise MorphoMathError("FeedOracle: non-positive answer")
    return _check(scale_factor * collateral_answer // loan_answer)

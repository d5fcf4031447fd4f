"""strategies/morpho_blue/math.py against hand-computed values and Morpho's rounding rules."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from strategies.morpho_blue import math as m
from strategies.morpho_blue.math import MarketState, PositionState

WAD = 10**18
LLTV = 86 * 10**16


def test_mul_div_rounds_down_and_up() -> None:
    assert m.mul_div_down(7, 3, 2) == 10 and m.mul_div_up(7, 3, 2) == 11
    assert m.mul_div_down(6, 3, 2) == m.mul_div_up(6, 3, 2) == 9  # exact: no rounding
    assert m.mul_div_up(0, 5, 7) == 0
    assert m.w_mul_down(3 * WAD // 2, 3) == 4  # 4.5 -> 4
    assert m.w_div_down(1, 3) == WAD // 3
    assert m.w_div_up(1, 3) == WAD // 3 + 1
    assert m.w_div_up(3, 3) == WAD


def test_mul_div_reverts_like_checked_solidity() -> None:
    with pytest.raises(m.MorphoMathError):
        m.mul_div_down(2**255, 2, 1)  # x * y overflows
    with pytest.raises(m.MorphoMathError):
        m.mul_div_down(1, 1, 0)
    with pytest.raises(m.MorphoMathError):
        m.mul_div_up(1, 1, 0)  # d - 1 underflows
    with pytest.raises(m.MorphoMathError):
        m.mul_div_up(2**255, 1, 2**255 + 1)  # x * y + (d - 1) overflows
    with pytest.raises(m.MorphoMathError):
        m.to_uint128(2**128)
    assert m.to_uint128(2**128 - 1) == 2**128 - 1


def test_w_taylor_compounded() -> None:
    # 10 % a year for a year: 0.1 + 0.005 + 0.000166... (floors at each term).
    rate = WAD // 10 // m.SECONDS_PER_YEAR
    first = rate * m.SECONDS_PER_YEAR
    second = first * first // (2 * WAD)
    third = second * first // (3 * WAD)
    assert m.w_taylor_compounded(rate, m.SECONDS_PER_YEAR) == first + second + third
    assert m.w_taylor_compounded(rate, 0) == 0
    assert m.w_taylor_compounded(WAD, 1) == WAD + WAD // 2 + WAD // 6


def test_utils() -> None:
    assert m.exactly_one_zero(0, 1) and m.exactly_one_zero(1, 0)
    assert not m.exactly_one_zero(0, 0) and not m.exactly_one_zero(1, 1)
    assert m.u_min(3, 2) == 2 and m.u_min(2, 3) == 2
    assert m.zero_floor_sub(5, 7) == 0 and m.zero_floor_sub(7, 5) == 2


def test_shares_math_virtual_shares_and_zero_totals() -> None:
    # An empty market: one asset is worth VIRTUAL_SHARES shares (1e6), and back.
    assert m.to_shares_down(1, 0, 0) == m.to_shares_up(1, 0, 0) == 10**6
    assert m.to_assets_down(10**6, 0, 0) == m.to_assets_up(10**6, 0, 0) == 1
    assert m.to_assets_down(1, 0, 0) == 0 and m.to_assets_up(1, 0, 0) == 1
    assert m.to_shares_down(0, 0, 0) == m.to_assets_up(0, 5, 7) == 0
    # 100 assets / 90e6 shares (plus virtual): the share price is not round.
    ta, ts = 100, 90 * 10**6
    assert m.to_shares_down(10, ta, ts) == 10 * (ts + 10**6) // (ta + 1)
    assert m.to_shares_up(10, ta, ts) == m.to_shares_down(10, ta, ts) + 1
    assert m.to_assets_down(10**6, ta, ts) == 10**6 * 101 // (ts + 10**6)
    assert m.to_assets_up(10**6, ta, ts) == m.to_assets_down(10**6, ta, ts) + 1


def test_shares_round_trips_never_favor_the_user() -> None:
    rng = random.Random(4)
    for _ in range(2000):
        ta = rng.randrange(0, 10**24)
        ts = rng.randrange(0, 10**30)
        a = rng.randrange(0, 10**22)
        assert m.to_assets_down(m.to_shares_down(a, ta, ts), ta, ts) <= a
        assert m.to_assets_up(m.to_shares_down(a, ta, ts), ta, ts) <= a
        assert m.to_assets_up(m.to_shares_up(a, ta, ts), ta, ts) >= a


def _market(**kw: int) -> MarketState:
    base = dict(total_supply_assets=10**12, total_supply_shares=10**18,
                total_borrow_assets=8 * 10**11, total_borrow_shares=8 * 10**17,
                last_update=1000, fee=0)
    return MarketState(**(base | kw))


def test_accrue_interest_elapsed_zero_and_no_irm() -> None:
    market = _market()
    assert m.accrue_interest(market, None, 1000).market == market
    none = m.accrue_interest(market, None, 5000, has_irm=False)
    assert none.market == replace(market, last_update=5000) and none.interest == 0
    with pytest.raises(ValueError):
        m.accrue_interest(market, None, 5000)
    with pytest.raises(m.MorphoMathError):
        m.accrue_interest(market, 1, 999)  # block.timestamp - lastUpdate underflows


def test_accrue_interest_with_fee_mints_fee_shares() -> None:
    market = _market(fee=WAD // 10)
    rate = m.irm_mock_borrow_rate(market)
    assert rate == (8 * 10**11 * WAD // 10**12) // m.SECONDS_PER_YEAR
    elapsed = 30 * 86_400
    result = m.accrue_interest(market, rate, 1000 + elapsed)
    interest = 8 * 10**11 * m.w_taylor_compounded(rate, elapsed) // WAD
    fee_amount = interest * (WAD // 10) // WAD
    supply_assets = 10**12 + interest
    fee_shares = fee_amount * (10**18 + 10**6) // (supply_assets - fee_amount + 1)
    assert result.interest == interest > 0 and result.fee_shares == fee_shares > 0
    assert result.market == MarketState(
        supply_assets, 10**18 + fee_shares, 8 * 10**11 + interest, 8 * 10**17,
        1000 + elapsed, WAD // 10,
    )
    no_fee = m.accrue_interest(_market(), rate, 1000 + elapsed)
    assert no_fee.fee_shares == 0 and no_fee.market.total_supply_shares == 10**18


def test_irm_mock_rate() -> None:
    assert m.irm_mock_borrow_rate(_market(total_supply_assets=0)) == 0
    assert m.irm_mock_borrow_rate(_market(total_borrow_assets=0)) == 0
    full = _market(total_borrow_assets=10**12)
    assert m.irm_mock_borrow_rate(full) == WAD // m.SECONDS_PER_YEAR


def test_health_boundary_and_health_factor() -> None:
    market = MarketState(0, 0, 0, 0, 1, 0)  # empty: borrowShares.toAssetsUp = ceil(s / 1e6)
    price = 2000 * 10**24  # 1 WETH = 2000 USDC (6 decimals)
    collateral = 10**18
    max_b = m.max_borrow(collateral, price, LLTV)
    assert max_b == 1720 * 10**6
    at_max = PositionState(0, max_b * 10**6, collateral)  # borrowed == maxBorrow: healthy
    assert m.borrowed_assets(at_max, market) == max_b
    assert m.is_healthy(at_max, market, price, LLTV)
    assert m.health_factor(at_max, market, price, LLTV) == WAD
    over = PositionState(0, max_b * 10**6 + 1, collateral)  # one share more rounds up
    assert m.borrowed_assets(over, market) == max_b + 1
    assert not m.is_healthy(over, market, price, LLTV)
    assert m.health_factor(over, market, price, LLTV) < WAD
    assert m.health_factor(PositionState(0, 0, collateral), market, price, LLTV) == 2**256 - 1
    rng = random.Random(9)
    for _ in range(2000):
        p = PositionState(0, rng.randrange(1, 10**20), rng.randrange(0, 10**20))
        mk = MarketState(0, 0, rng.randrange(0, 10**15), rng.randrange(0, 10**21), 1, 0)
        pr = rng.randrange(1, 10**40)
        assert m.is_healthy(p, mk, pr, LLTV) == (m.health_factor(p, mk, pr, LLTV) >= WAD)


def test_liquidation_incentive_factor() -> None:
    assert m.liquidation_incentive_factor(LLTV) == WAD * WAD // (WAD - 3 * (WAD - LLTV) // 10)
    assert m.liquidation_incentive_factor(LLTV) == 1_043_841_336_116_910_229
    assert m.liquidation_incentive_factor(0) == m.MAX_LIQUIDATION_INCENTIVE_FACTOR
    assert m.liquidation_incentive_factor(WAD - 1) == WAD  # 1/(1 - 0.3e-18): floors to 1


def _ceil(a: int, b: int) -> int:
    return (a + b - 1) // b


def _unhealthy() -> tuple[MarketState, PositionState, int]:
    market = MarketState(10**13, 10**19, 5 * 10**12, 4 * 10**18, 1, 0)
    price = 1900 * 10**24
    position = PositionState(0, 21_000 * 10**12, 10 * 10**18)  # ~26,250 USDC vs 19,000 WETH
    return market, position, price


def test_liquidate_by_seized_assets_and_by_shares() -> None:
    market, position, price = _unhealthy()
    lif = m.liquidation_incentive_factor(LLTV)
    seized = 2 * 10**18
    out = m.liquidate(market, position, collateral_price=price, lltv=LLTV, seized_assets=seized)
    quoted = _ceil(seized * price, 10**36)
    shares = _ceil(_ceil(quoted * WAD, lif) * (market.total_borrow_shares + 10**6),
                   market.total_borrow_assets + 1)
    assert out.repaid_shares == shares
    assert out.repaid_assets == m.to_assets_up(shares, market.total_borrow_assets,
                                               market.total_borrow_shares)
    assert out.seized_assets == seized and out.bad_debt_assets == out.bad_debt_shares == 0
    assert out.position == PositionState(0, position.borrow_shares - shares, 8 * 10**18)
    assert out.market.total_borrow_shares == market.total_borrow_shares - shares
    by_shares = m.liquidate(market, position, collateral_price=price, lltv=LLTV,
                            repaid_shares=shares)
    assets = m.to_assets_down(shares, market.total_borrow_assets, market.total_borrow_shares)
    assert by_shares.seized_assets == assets * lif // WAD * 10**36 // price
    for bad in ({"seized_assets": 0}, {"seized_assets": 1, "repaid_shares": 1}):
        with pytest.raises(m.MorphoMathError, match="inconsistent"):
            m.liquidate(market, position, collateral_price=price, lltv=LLTV, **bad)
    with pytest.raises(m.MorphoMathError, match="healthy"):
        m.liquidate(market, position, collateral_price=10**40, lltv=LLTV, seized_assets=1)
    with pytest.raises(m.MorphoMathError):  # more collateral than the borrower has
        m.liquidate(market, position, collateral_price=price, lltv=LLTV, seized_assets=11 * WAD)


def test_liquidate_all_collateral_realizes_bad_debt() -> None:
    market, position, price = _unhealthy()
    out = m.liquidate(market, position, collateral_price=price, lltv=LLTV,
                      seized_assets=position.collateral)
    left = position.borrow_shares - out.repaid_shares
    assert out.bad_debt_shares == left > 0
    tba = market.total_borrow_assets - out.repaid_assets
    tbs = market.total_borrow_shares - out.repaid_shares
    assert out.bad_debt_assets == min(tba, m.to_assets_up(left, tba, tbs))
    assert out.position == PositionState(0, 0, 0)
    assert out.market.total_supply_assets == market.total_supply_assets - out.bad_debt_assets
    assert out.market.total_borrow_assets == tba - out.bad_debt_assets
    assert out.market.total_borrow_shares == tbs - left


def test_inverse_seizure_is_the_largest_that_fits() -> None:
    rng = random.Random(11)
    for _ in range(1500):
        market = MarketState(0, 0, rng.randrange(0, 10**16), rng.randrange(0, 10**23), 1, 0)
        price = rng.choice([2000 * 10**24, 30_000 * 10**34, rng.randrange(1, 10**45)])
        lif = m.liquidation_incentive_factor(rng.choice([LLTV, 0, 5 * 10**17]))
        repay = rng.randrange(0, 10**13)
        s = m.max_seized_for_repaid_assets(repay, price, lif, market)

        def paid(seized: int, price: int = price, lif: int = lif,
                 market: MarketState = market) -> int:
            shares = m.repaid_shares_for_seized(seized, price, lif, market)
            return m.repaid_assets(shares, market)

        assert paid(s) <= repay < paid(s + 1)
        shares = rng.randrange(0, 10**20)
        t = m.max_seized_for_repaid_shares(shares, price, lif, market)
        assert m.repaid_shares_for_seized(t, price, lif, market) <= shares
        assert m.repaid_shares_for_seized(t + 1, price, lif, market) > shares


def test_feed_oracle_price() -> None:
    assert m.feed_oracle_price(10**24, 2000 * 10**8, 10**8) == 2000 * 10**24
    assert m.feed_oracle_price(10, 7, 3) == 23  # floors
    with pytest.raises(m.MorphoMathError):
        m.feed_oracle_price(10**24, 0, 10**8)
    with pytest.raises(m.MorphoMathError):
        m.feed_oracle_price(10**24, 10**8, -1)
    with pytest.raises(m.MorphoMathError):
        m.feed_oracle_price(10**77, 10**8, 1)  # the quotient does not fit in 256 bits
    assert m.feed_oracle_price(10**77, 10**8, 10**8) == 10**77  # the product may exceed it

"""Tests for strategies.aave_v3.math: hand-checked vectors and random properties.

The references below are written independently of the module: half-up rounding as
floor(x + 1/2) with `fractions.Fraction`, reverts as "the exact result exceeds 2**256 - 1".
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from fractions import Fraction

import pytest

from strategies.aave_v3.math import (
    CLOSE_FACTOR_HF_THRESHOLD,
    HALF_PERCENTAGE_FACTOR,
    HALF_RAY,
    HALF_WAD,
    HEALTH_FACTOR_LIQUIDATION_THRESHOLD,
    PERCENTAGE_FACTOR,
    RAY,
    SECONDS_PER_YEAR,
    UINT256_MAX,
    WAD,
    WAD_RAY_RATIO,
    AaveMathError,
    LiquidationAmounts,
    MathDivisionByZeroError,
    MathOverflowError,
    MathUnderflowError,
    UserReserveInput,
    asset_unit,
    atoken_balance,
    calculate_actual_debt_to_liquidate,
    calculate_available_borrows,
    calculate_available_collateral_to_liquidate,
    calculate_compounded_interest,
    calculate_linear_interest,
    calculate_user_account_data,
    get_normalized_debt,
    get_normalized_income,
    is_liquidatable,
    liquidation_configuration,
    percent_div,
    percent_mul,
    ray_div,
    ray_mul,
    ray_to_wad,
    stable_debt_balance,
    variable_debt_balance,
    wad_div,
    wad_mul,
    wad_to_ray,
)

HALF = Fraction(1, 2)
YEAR = 365 * 24 * 3600
T0 = 1_700_000_000


def half_up(numerator: int, denominator: int) -> int:
    return math.floor(Fraction(numerator, denominator) + HALF)


def test_constants() -> None:
    assert (WAD, HALF_WAD, RAY, HALF_RAY) == (10**18, 5 * 10**17, 10**27, 5 * 10**26)
    assert WAD_RAY_RATIO == RAY // WAD == 10**9
    assert (PERCENTAGE_FACTOR, HALF_PERCENTAGE_FACTOR) == (10_000, 5_000)
    assert SECONDS_PER_YEAR == 31_536_000
    assert HEALTH_FACTOR_LIQUIDATION_THRESHOLD == 10**18
    assert CLOSE_FACTOR_HF_THRESHOLD == 95 * 10**16
    assert issubclass(MathOverflowError, ArithmeticError)
    assert issubclass(MathDivisionByZeroError, AaveMathError)


# --------------------------------------------------------------------------- hand vectors


def test_wad_mul_vectors() -> None:
    assert wad_mul(1, HALF_WAD) == 1  # exactly 0.5 wei: rounds up
    assert wad_mul(1, HALF_WAD - 1) == 0
    assert wad_mul(3, HALF_WAD) == 2  # 1.5 -> 2
    assert wad_mul(25 * 10**17, HALF_WAD) == 125 * 10**16
    assert wad_mul(0, UINT256_MAX) == 0
    assert wad_mul(UINT256_MAX, 0) == 0
    assert wad_mul(UINT256_MAX - HALF_WAD, 1) == UINT256_MAX // WAD
    with pytest.raises(MathOverflowError):  # a*b fits, but a*b + HALF_WAD does not
        wad_mul(UINT256_MAX - HALF_WAD + 1, 1)
    limit = (UINT256_MAX - HALF_WAD) // 3
    assert wad_mul(limit, 3) == (limit * 3 + HALF_WAD) // WAD
    with pytest.raises(MathOverflowError):
        wad_mul(limit + 1, 3)
    with pytest.raises(MathOverflowError):
        wad_mul(UINT256_MAX, 2)


def test_wad_div_vectors() -> None:
    assert wad_div(1, 2 * WAD) == 1  # exactly 0.5: rounds up
    assert wad_div(1, 2 * WAD + 2) == 0
    assert wad_div(1, 3) == 333_333_333_333_333_333
    assert wad_div(2, 3) == 666_666_666_666_666_667
    assert wad_div(0, 7) == 0
    assert wad_div(165 * 10**9, 150 * 10**9) == 11 * 10**17
    with pytest.raises(MathDivisionByZeroError):
        wad_div(1, 0)
    with pytest.raises(MathDivisionByZeroError):
        wad_div(0, 0)
    limit = (UINT256_MAX - 5) // WAD  # b = 10 -> b/2 = 5
    assert wad_div(limit, 10) == (limit * WAD + 5) // 10
    with pytest.raises(MathOverflowError):
        wad_div(limit + 1, 10)


def test_ray_mul_and_div_vectors() -> None:
    assert ray_mul(1, HALF_RAY) == 1
    assert ray_mul(1, HALF_RAY - 1) == 0
    assert ray_mul(10**6, 105 * 10**25) == 1_050_000
    assert ray_mul(UINT256_MAX, 0) == 0
    with pytest.raises(MathOverflowError):
        ray_mul((UINT256_MAX - HALF_RAY) // 7 + 1, 7)
    assert ray_mul((UINT256_MAX - HALF_RAY) // 7, 7) > 0
    assert ray_div(1, 2 * RAY) == 1
    assert ray_div(1, 2 * RAY + 2) == 0
    assert ray_div(105 * 10**6, 105 * 10**25) == 10**8
    with pytest.raises(MathDivisionByZeroError):
        ray_div(5, 0)
    with pytest.raises(MathOverflowError):
        ray_div((UINT256_MAX - 1) // RAY + 1, 2)


def test_ray_to_wad_rounds_half_up_and_never_reverts() -> None:
    assert ray_to_wad(0) == 0
    assert ray_to_wad(499_999_999) == 0
    assert ray_to_wad(500_000_000) == 1  # exact tie rounds up
    assert ray_to_wad(1_499_999_999) == 1
    assert ray_to_wad(1_500_000_000) == 2
    assert ray_to_wad(RAY) == WAD
    # 2**256 - 1 ends in ...913_129639935: remainder < 0.5e9, so no round-up, and no revert.
    expected = 115792089237316195423570985008687907853269984665640564039457584007913
    assert ray_to_wad(UINT256_MAX) == expected


def test_wad_to_ray() -> None:
    assert wad_to_ray(0) == 0
    assert wad_to_ray(WAD) == RAY
    assert wad_to_ray(UINT256_MAX // 10**9) == (UINT256_MAX // 10**9) * 10**9
    with pytest.raises(MathOverflowError):
        wad_to_ray(UINT256_MAX // 10**9 + 1)


def test_percent_vectors() -> None:
    assert percent_mul(1, 5_000) == 1  # 0.5 -> 1
    assert percent_mul(1, 4_999) == 0
    assert percent_mul(3, 5_000) == 2  # 1.5 -> 2
    assert percent_mul(10_000, 10_500) == 10_500
    assert percent_mul(UINT256_MAX, 0) == 0
    assert percent_div(1, 20_000) == 1  # 0.5 -> 1
    assert percent_div(100, 10_500) == 95  # 95.238
    assert percent_div(10_500, 10_500) == 10_000
    with pytest.raises(MathDivisionByZeroError):
        percent_div(1, 0)
    with pytest.raises(MathOverflowError):
        percent_mul((UINT256_MAX - HALF_PERCENTAGE_FACTOR) // 8250 + 1, 8250)
    with pytest.raises(MathOverflowError):
        percent_div((UINT256_MAX - 5250) // PERCENTAGE_FACTOR + 1, 10_500)
    assert percent_div((UINT256_MAX - 5250) // PERCENTAGE_FACTOR, 10_500) > 0


def test_negative_or_oversized_inputs_are_rejected() -> None:
    with pytest.raises(ValueError):
        ray_mul(-1, RAY)
    with pytest.raises(ValueError):
        wad_div(UINT256_MAX + 1, 1)
    with pytest.raises(ValueError):
        percent_mul(1, -5)


# --------------------------------------------------------------------------- random properties


def _random_uint(rng: random.Random) -> int:
    return rng.getrandbits(rng.choice([0, 1, 8, 32, 64, 96, 128, 160, 200, 230, 250, 256]))


MulFn = Callable[[int, int], int]
CASES_MUL: list[tuple[MulFn, int]] = [(wad_mul, WAD), (ray_mul, RAY), (percent_mul, 10**4)]
CASES_DIV: list[tuple[MulFn, int]] = [(wad_div, WAD), (ray_div, RAY), (percent_div, 10**4)]


@pytest.mark.parametrize(("fn", "unit"), CASES_MUL)
def test_mul_matches_reference(fn: MulFn, unit: int) -> None:
    rng = random.Random(f"mul-{unit}")
    for _ in range(4000):
        a, b = _random_uint(rng), _random_uint(rng)
        if a * b + unit // 2 > UINT256_MAX:
            with pytest.raises(MathOverflowError):
                fn(a, b)
        else:
            assert fn(a, b) == half_up(a * b, unit), (a, b)


@pytest.mark.parametrize(("fn", "unit"), CASES_DIV)
def test_div_matches_reference(fn: MulFn, unit: int) -> None:
    rng = random.Random(f"div-{unit}")
    for _ in range(4000):
        a, b = _random_uint(rng), _random_uint(rng)
        if b == 0:
            with pytest.raises(MathDivisionByZeroError):
                fn(a, b)
        elif a * unit + b // 2 > UINT256_MAX:
            with pytest.raises(MathOverflowError):
                fn(a, b)
        else:
            assert fn(a, b) == half_up(a * unit, b), (a, b)


def test_ties_round_up_randomly() -> None:
    rng = random.Random("ties")
    for _ in range(2000):
        q = rng.getrandbits(100)
        # a * 1 = q*unit + unit/2 exactly: a tie, must round up to q + 1.
        assert wad_mul(q * WAD + HALF_WAD, 1) == q + 1
        assert ray_mul(q * RAY + HALF_RAY, 1) == q + 1
        assert percent_mul(q * 10**4 + 5_000, 1) == q + 1
        assert ray_to_wad(q * 10**9 + 500_000_000) == q + 1
        assert ray_to_wad(q * 10**9 + 499_999_999) == q


def test_ray_wad_conversions_random() -> None:
    rng = random.Random("conv")
    for _ in range(4000):
        a = _random_uint(rng)
        assert ray_to_wad(a) == half_up(a, 10**9)
        if a * 10**9 > UINT256_MAX:
            with pytest.raises(MathOverflowError):
                wad_to_ray(a)
        else:
            assert wad_to_ray(a) == a * 10**9
            assert ray_to_wad(wad_to_ray(a)) == a


# --------------------------------------------------------------------------- interest


def reference_compounded(rate: int, dt: int) -> int:
    """MathUtils.calculateCompoundedInterest written out again, step by step."""
    if dt == 0:
        return RAY
    rate_squared = (rate * rate + RAY // 2) // RAY
    b2 = rate_squared // (YEAR * YEAR)
    b3 = ((b2 * rate + RAY // 2) // RAY) // YEAR
    second = (dt * (dt - 1) * b2) // 2
    third = (dt * (dt - 1) * max(dt - 2, 0) * b3) // 6
    return RAY + (rate * dt) // YEAR + second + third


FIVE_PERCENT = 5 * 10**25


def test_linear_interest() -> None:
    assert calculate_linear_interest(FIVE_PERCENT, T0, T0) == RAY
    assert calculate_linear_interest(FIVE_PERCENT, T0, T0 + YEAR) == RAY + FIVE_PERCENT
    # 1 second: 5e25 / 31536000 = 1585489599188229325.2... -> floor
    assert calculate_linear_interest(FIVE_PERCENT, T0, T0 + 1) == RAY + 1_585_489_599_188_229_325
    with pytest.raises(MathUnderflowError):
        calculate_linear_interest(FIVE_PERCENT, T0 + 1, T0)
    with pytest.raises(ValueError):
        calculate_linear_interest(FIVE_PERCENT, 2**40, 2**41)


def test_compounded_interest_one_second_and_two_seconds() -> None:
    # n = 1: the quadratic and cubic terms vanish (n - 1 = 0).
    assert (
        calculate_compounded_interest(FIVE_PERCENT, T0, T0 + 1) == RAY + 1_585_489_599_188_229_325
    )
    # n = 2: the cubic term vanishes (expMinusTwo = 0), the quadratic one is b2.
    b2 = ((FIVE_PERCENT * FIVE_PERCENT + HALF_RAY) // RAY) // (YEAR * YEAR)
    assert b2 == 2_513_777_269
    expected = RAY + (FIVE_PERCENT * 2) // YEAR + b2
    assert calculate_compounded_interest(FIVE_PERCENT, T0, T0 + 2) == expected


@pytest.mark.parametrize("dt", [0, 1, 2, 3, 3600, 86_400, YEAR, 5 * YEAR])
@pytest.mark.parametrize("rate", [0, 1, 10**25, FIVE_PERCENT, 3 * 10**27, 10**30])
def test_compounded_interest_matches_reference(rate: int, dt: int) -> None:
    assert calculate_compounded_interest(rate, T0, T0 + dt) == reference_compounded(rate, dt)


def test_compounded_interest_one_year_close_to_exp() -> None:
    got = calculate_compounded_interest(FIVE_PERCENT, T0, T0 + YEAR)
    # Exact series 1 + x + x^2/2 + x^3/6 = 1.0512708 (e^0.05 = 1.0512711), but the contract's
    # basePowerThree = rayMul(b2, rate) / YEAR = 125688863 // 31536000 truncates 3.98 to 3,
    # so the cubic term is ~25% short: 1.0512657 on chain.
    b3 = ((2_513_777_269 * FIVE_PERCENT + HALF_RAY) // RAY) // YEAR
    assert b3 == 3
    assert Fraction(1_051_265, 10**6) < Fraction(got, RAY) < Fraction(1_051_266, 10**6)
    assert Fraction(got, RAY) < Fraction(math.exp(0.05))  # the approximation undercharges


def test_compounded_interest_random_against_reference() -> None:
    rng = random.Random("compound")
    for _ in range(2000):
        rate = rng.randrange(0, 4 * 10**27)
        dt = rng.choice([rng.randrange(0, 100), rng.randrange(0, 10 * YEAR)])
        assert calculate_compounded_interest(rate, T0, T0 + dt) == reference_compounded(rate, dt)


def test_compounded_interest_reverts() -> None:
    with pytest.raises(MathUnderflowError):
        calculate_compounded_interest(FIVE_PERCENT, T0, T0 - 1)
    with pytest.raises(MathOverflowError):  # rayMul(rate, rate) overflows
        calculate_compounded_interest(2**200, T0, T0 + 10)


def test_normalized_income_and_debt() -> None:
    index = 11 * 10**26
    assert get_normalized_income(index, FIVE_PERCENT, T0, T0) == index
    assert get_normalized_income(index, FIVE_PERCENT, T0, T0 + YEAR) == 1155 * 10**24
    assert get_normalized_debt(index, FIVE_PERCENT, T0, T0) == index
    dt = 3600
    expected = ray_mul(reference_compounded(FIVE_PERCENT, dt), index)
    assert get_normalized_debt(index, FIVE_PERCENT, T0, T0 + dt) == expected
    assert expected == (reference_compounded(FIVE_PERCENT, dt) * index + HALF_RAY) // RAY


def test_token_balances() -> None:
    assert atoken_balance(1_000 * 10**6, 105 * 10**25) == 1_050 * 10**6
    assert atoken_balance(1, 15 * 10**26) == 2  # 1.5 -> 2
    assert atoken_balance(1, 15 * 10**26 - 1) == 1
    assert variable_debt_balance(0, UINT256_MAX) == 0  # short-circuit: no rayMul, no revert
    assert variable_debt_balance(3, 15 * 10**26) == 5  # 4.5 -> 5
    assert stable_debt_balance(0, FIVE_PERCENT, T0, T0 - 1) == 0  # returns before the interest
    principal = 1_000 * 10**6
    compounded = reference_compounded(FIVE_PERCENT, YEAR)
    assert stable_debt_balance(principal, FIVE_PERCENT, T0, T0 + YEAR) == half_up(
        principal * compounded, RAY
    )
    assert stable_debt_balance(principal, FIVE_PERCENT, T0, T0) == principal


def test_asset_unit_wraps_like_unchecked() -> None:
    assert asset_unit(6) == 10**6
    assert asset_unit(77) == 10**77
    assert asset_unit(78) == 10**78 % 2**256
    with pytest.raises(ValueError):
        asset_unit(256)


# --------------------------------------------------------------------------- account data


def reserve(
    price: int,
    decimals: int = 18,
    *,
    collateral: int = 0,
    variable: int = 0,
    stable: int = 0,
    ltv: int = 8000,
    threshold: int = 8250,
    emode: int = 0,
    using: bool = True,
    income: int = RAY,
    debt_index: int = RAY,
) -> UserReserveInput:
    return UserReserveInput(
        asset_unit=10**decimals,
        price=price,
        scaled_atoken_balance=collateral,
        scaled_variable_debt=variable,
        stable_debt_balance=stable,
        normalized_income=income,
        normalized_debt=debt_index,
        ltv=ltv,
        liquidation_threshold=threshold,
        using_as_collateral=using,
        emode_category=emode,
    )


WETH = 2_000 * 10**8
USDC = 10**8


def test_account_data_basic_position() -> None:
    data = calculate_user_account_data(
        [reserve(WETH, collateral=10**18), reserve(USDC, 6, variable=1_500 * 10**6, using=False)]
    )
    assert data.total_collateral_base == 2_000 * 10**8
    assert data.total_debt_base == 1_500 * 10**8
    assert (data.avg_ltv, data.avg_liquidation_threshold) == (8000, 8250)
    assert data.health_factor == 11 * 10**17  # 2000 * 0.825 / 1500
    assert data.has_zero_ltv_collateral is False
    assert tuple(data)[4] == data.health_factor  # the contract's tuple order


def test_account_data_indexes_and_stable_debt() -> None:
    # aToken: rayMul(1e18, 1.1e27) = 1.1e18 -> 2200e8; debt: rayMul(1000e6, 1.2e27) + 300e6
    data = calculate_user_account_data(
        [
            reserve(WETH, collateral=10**18, income=11 * 10**26),
            reserve(USDC, 6, variable=1_000 * 10**6, stable=300 * 10**6, debt_index=12 * 10**26),
        ]
    )
    assert data.total_collateral_base == 2_200 * 10**8
    assert data.total_debt_base == 1_500 * 10**8
    assert data.health_factor == wad_div(percent_mul(2_200 * 10**8, 8250), 1_500 * 10**8)
    assert data.health_factor == 1_210_000_000_000_000_000


def test_account_data_rounds_debt_and_collateral_down() -> None:
    # 1.19.3: price * debt / unit floors, so 1 wei of an 18-decimal token at $1 is worth 0.
    dust = calculate_user_account_data([reserve(USDC, collateral=10**18, variable=1)])
    assert dust.total_debt_base == 0
    assert dust.health_factor == UINT256_MAX
    data = calculate_user_account_data(
        [reserve(USDC, collateral=10**18 + 10**10 - 1, variable=3 * 10**10 - 1)]
    )
    assert data.total_collateral_base == 10**8  # floor((1e18 + 1e10 - 1) * 1e8 / 1e18)
    assert data.total_debt_base == 2  # floor((3e10 - 1) * 1e8 / 1e18) = 2, not 3


def test_account_data_weighted_average_floors() -> None:
    data = calculate_user_account_data(
        [
            reserve(1, 0, collateral=1, ltv=8000, threshold=8500),
            reserve(1, 0, collateral=2, ltv=7000, threshold=7501),
            reserve(1, 0, variable=1, using=False),
        ]
    )
    assert data.total_collateral_base == 3
    assert data.avg_ltv == 7333  # 22000 / 3
    assert data.avg_liquidation_threshold == 7834  # 23502 / 3
    assert data.health_factor == wad_div(percent_mul(3, 7834), 1) == 2 * WAD


def test_account_data_zero_ltv_and_disabled_collateral() -> None:
    data = calculate_user_account_data(
        [
            reserve(USDC, collateral=100 * 10**18, ltv=0, threshold=7000),
            reserve(USDC, collateral=100 * 10**18, ltv=8000, threshold=8500),
            reserve(USDC, collateral=500 * 10**18, threshold=0),  # threshold 0: not collateral
            reserve(USDC, collateral=700 * 10**18, using=False),  # flag off: not collateral
        ]
    )
    assert data.total_collateral_base == 200 * 10**8
    assert data.avg_ltv == 4000  # the zero-ltv asset counts in the total only
    assert data.avg_liquidation_threshold == 7750
    assert data.has_zero_ltv_collateral is True
    assert data.health_factor == UINT256_MAX


def test_account_data_emode() -> None:
    reserves = [
        reserve(101 * 10**6, collateral=10**18, ltv=7500, threshold=8000, emode=1),
        reserve(WETH, collateral=10**18, ltv=8000, threshold=8250, emode=2),
        reserve(99 * 10**6, 6, variable=500 * 10**6, using=False, emode=1),
    ]
    plain = calculate_user_account_data(reserves)
    assert plain.total_collateral_base == 101 * 10**6 + 2_000 * 10**8
    ignored = calculate_user_account_data(reserves, 0, 9700, 9750, 10**8)
    assert ignored == plain  # eMode parameters are not read when the user has no category
    data = calculate_user_account_data(reserves, 1, 9700, 9750, 10**8)
    # Category-1 assets are priced at the eMode price (1e8) and use the eMode ltv/threshold.
    assert data.total_collateral_base == 10**8 + 2_000 * 10**8
    assert data.total_debt_base == 500 * 10**8
    assert data.avg_ltv == (10**8 * 9700 + 2_000 * 10**8 * 8000) // (2_001 * 10**8)
    assert data.avg_liquidation_threshold == (10**8 * 9750 + 2_000 * 10**8 * 8250) // (
        2_001 * 10**8
    )
    no_source = calculate_user_account_data(reserves, 1, 9700, 9750, 0)
    assert no_source.total_collateral_base == plain.total_collateral_base
    assert no_source.total_debt_base == 495 * 10**8
    assert no_source.avg_ltv == (101 * 10**6 * 9700 + 2_000 * 10**8 * 8000) // (
        plain.total_collateral_base
    )


def test_account_data_zero_ltv_asset_in_emode_adds_no_ltv() -> None:
    data = calculate_user_account_data(
        [reserve(USDC, collateral=10**18, ltv=0, threshold=8000, emode=1)], 1, 9700, 9750, 0
    )
    assert data.avg_ltv == 0  # the reserve ltv (0) gates it, not the eMode ltv
    assert data.avg_liquidation_threshold == 9750
    assert data.has_zero_ltv_collateral is True


def test_account_data_empty_and_overflow() -> None:
    assert tuple(calculate_user_account_data([])) == (0, 0, 0, 0, UINT256_MAX, False)
    assert tuple(calculate_user_account_data([reserve(WETH, using=False)])) == (
        0,
        0,
        0,
        0,
        UINT256_MAX,
        False,
    )
    with pytest.raises(MathOverflowError):
        calculate_user_account_data([reserve(2**200, collateral=2**60)])


def test_available_borrows_and_liquidatable() -> None:
    assert calculate_available_borrows(2_000 * 10**8, 1_500 * 10**8, 8000) == 100 * 10**8
    assert calculate_available_borrows(2_000 * 10**8, 1_700 * 10**8, 8000) == 0
    assert is_liquidatable(HEALTH_FACTOR_LIQUIDATION_THRESHOLD - 1)
    assert not is_liquidatable(HEALTH_FACTOR_LIQUIDATION_THRESHOLD)


# --------------------------------------------------------------------------- liquidation


def test_close_factor() -> None:
    debt = 1_000 * 10**6
    hf_096, hf_094 = 96 * 10**16, 94 * 10**16
    assert calculate_actual_debt_to_liquidate(debt, hf_096, UINT256_MAX) == 500 * 10**6
    assert calculate_actual_debt_to_liquidate(debt, hf_096, 100 * 10**6) == 100 * 10**6
    assert calculate_actual_debt_to_liquidate(debt, hf_094, UINT256_MAX) == debt
    assert calculate_actual_debt_to_liquidate(debt, CLOSE_FACTOR_HF_THRESHOLD, 2**255) == debt
    assert calculate_actual_debt_to_liquidate(debt, CLOSE_FACTOR_HF_THRESHOLD + 1, 2**255) == (
        500 * 10**6
    )
    assert calculate_actual_debt_to_liquidate(3, hf_096, UINT256_MAX) == 2  # 1.5 rounds up
    assert calculate_actual_debt_to_liquidate(1, hf_096, UINT256_MAX) == 1


def _liquidate(
    debt_to_cover: int, balance: int, bonus: int = 10_500, fee: int = 0
) -> LiquidationAmounts:
    return calculate_available_collateral_to_liquidate(
        collateral_price=WETH,
        collateral_asset_unit=10**18,
        debt_price=USDC,
        debt_asset_unit=10**6,
        debt_to_cover=debt_to_cover,
        user_collateral_balance=balance,
        liquidation_bonus=bonus,
        liquidation_protocol_fee_percentage=fee,
    )


def test_collateral_to_liquidate_without_fee() -> None:
    # 1000 USDC covers 0.5 WETH; +5% bonus -> 0.525 WETH.
    assert _liquidate(1_000 * 10**6, 10 * 10**18) == (525 * 10**15, 1_000 * 10**6, 0)
    # base floors: 1 wei of USDC = 1e8 * 1 * 1e18 / (2000e8 * 1e6) = 5e8 wei of WETH.
    assert _liquidate(1, 10**18) == (525_000_000, 1, 0)
    assert _liquidate(3, 10**18, bonus=10_001) == (1_500_150_000, 3, 0)


def test_collateral_to_liquidate_with_protocol_fee() -> None:
    # bonus part = 0.525 - 0.525/1.05 = 0.025 WETH; 10% of it goes to the treasury.
    got = _liquidate(1_000 * 10**6, 10 * 10**18, fee=1_000)
    assert got == (5225 * 10**14, 1_000 * 10**6, 25 * 10**14)
    assert got[0] + got[2] == 525 * 10**15


def test_collateral_cap_branch() -> None:
    # The user has 0.3 WETH, less than the 0.525 needed: all of it goes, and the debt
    # repaid is 0.3 WETH = 600 USDC divided by 1.05: (600e6 * 1e4 + 5250) // 10500.
    assert _liquidate(1_000 * 10**6, 3 * 10**17) == (3 * 10**17, 571_428_571, 0)
    collateral, debt, fee = _liquidate(1_000 * 10**6, 3 * 10**17, fee=1_000)
    assert debt == 571_428_571
    # 0.3e18 / 1.05 = 285714285714285714.28 -> 285714285714285714; bonus = 14285714285714286
    # fee = 14285714285714286 * 0.1 = 1428571428571428.6 -> 1428571428571429 (half up)
    assert fee == 1_428_571_428_571_429
    assert collateral == 3 * 10**17 - 1_428_571_428_571_429
    # Exactly enough collateral: not the cap branch, debt stays as asked.
    assert _liquidate(1_000 * 10**6, 525 * 10**15) == (525 * 10**15, 1_000 * 10**6, 0)


def test_collateral_to_liquidate_reverts() -> None:
    with pytest.raises(MathDivisionByZeroError):
        calculate_available_collateral_to_liquidate(
            collateral_price=0,
            collateral_asset_unit=10**18,
            debt_price=USDC,
            debt_asset_unit=10**6,
            debt_to_cover=1,
            user_collateral_balance=1,
            liquidation_bonus=10_500,
            liquidation_protocol_fee_percentage=0,
        )
    with pytest.raises(MathUnderflowError):  # bonus < 100% with a fee: bonus part is negative
        _liquidate(1_000 * 10**6, 10 * 10**18, bonus=9_000, fee=1_000)


def test_liquidation_configuration() -> None:
    base = {"collateral_liquidation_bonus": 10_500, "collateral_price": WETH, "debt_price": USDC}
    emode = {"emode_liquidation_bonus": 10_100, "emode_price": 10**8}
    outside = liquidation_configuration(
        user_emode_category=0, collateral_emode_category=1, **base, **emode
    )
    assert outside == (10_500, WETH, USDC)
    inside = liquidation_configuration(
        user_emode_category=1, collateral_emode_category=1, **base, **emode
    )
    assert inside == (10_100, 10**8, 10**8)
    # Collateral outside the user's category: reserve bonus and price, but the debt is still
    # priced by the eMode source (the contract does not check the debt asset's category).
    other = liquidation_configuration(
        user_emode_category=1, collateral_emode_category=2, **base, **emode
    )
    assert other == (10_500, WETH, 10**8)
    no_source = liquidation_configuration(
        user_emode_category=1,
        collateral_emode_category=1,
        **base,
        emode_liquidation_bonus=10_100,
        emode_price=0,
    )
    assert no_source == (10_100, WETH, USDC)

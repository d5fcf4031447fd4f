"""Unit tests of the Aave v3.6 mirrors (math_v36, math_v36_liquidation, rules) against
values worked out by hand from the Solidity of aave-v3-origin 3.6.0."""

from __future__ import annotations

import pytest

from keeper.errors import ConfigError
from strategies.aave_v3 import math_lib
from strategies.aave_v3 import math_v36 as m
from strategies.aave_v3 import math_v36_liquidation as liq
from strategies.aave_v3.rules import RuleSet, rules_for_revision

RAY, WAD = 10**27, 10**18
USD = 10**8  # base currency unit


def test_rounding_helpers_round_as_the_assembly() -> None:
    # rayMulFloor/Ceil: 3 * 0.5 RAY / RAY = 1.5 -> 1 / 2; rayMul rounds half up -> 2
    assert math_lib.ray_mul_floor(3, RAY // 2) == 1
    assert math_lib.ray_mul_ceil(3, RAY // 2) == 2
    assert math_lib.ray_mul_ceil(4, RAY // 2) == 2  # exact: no +1
    # rayDivFloor/Ceil: 1 * RAY / (1.5 RAY) = 0.66 -> 0 / 1
    assert math_lib.ray_div_floor(1, 3 * RAY // 2) == 0
    assert math_lib.ray_div_ceil(1, 3 * RAY // 2) == 1
    # mulDivCeil(7, 3, 2) = ceil(10.5) = 11; percentDivCeil(1, 3) = ceil(10000 / 3) = 3334
    assert math_lib.mul_div_ceil(7, 3, 2) == 11
    assert math_lib.mul_div_ceil(6, 3, 2) == 9
    assert math_lib.percent_div_ceil(1, 3) == 3334
    assert math_lib.percent_mul_floor(9_999, 5_000) == 4_999  # 4999.5 down
    with pytest.raises(math_lib.MathDivisionByZeroError):
        math_lib.mul_div_ceil(1, 1, 0)
    with pytest.raises(math_lib.MathOverflowError):
        math_lib.ray_mul_ceil(2**255, 2)


def test_v34_compounded_interest() -> None:
    """x = rate*dt/Y; RAY + x + rayMul(x, x/2 + rayMul(x, x/6))."""
    year = math_lib.SECONDS_PER_YEAR
    rate = 5 * 10**25  # 5 % a year, one year: x = 0.05 RAY
    # x/6 = 8333333333333333333333333; rayMul(x, x/6) = 416666666666666666666667 (half up);
    # x/2 + that = 25416666666666666666666667; rayMul(x, ..) = 1270833333333333333333333.
    assert math_lib.calculate_compounded_interest_v34(rate, 0, year) == (
        1_051_270_833_333_333_333_333_333_333)
    assert math_lib.calculate_compounded_interest_v34(rate, 5, 5) == RAY
    # The 1.19.3 three-term form differs on the same inputs (it is a different formula).
    assert math_lib.calculate_compounded_interest(rate, 0, year) != (
        1_051_270_833_333_333_333_333_333_333)


def test_token_balances_and_their_inversion() -> None:
    index = 1_100_000_000_000_000_000_000_000_001  # 1.1 RAY + 1 wei
    # 10 scaled: 11.000000000000000000000000010 -> 11 (floor) / 12 (ceil)
    assert m.atoken_balance(10, index) == 11
    assert m.variable_debt_balance(10, index) == 12
    for scaled in (0, 1, 7, 10, 123_456_789, 10**24 + 3):
        for ceil in (False, True):
            f = math_lib.ray_mul_ceil if ceil else math_lib.ray_mul_floor
            assert m.scaled_from_balance(f(scaled, index), index, ceil=ceil) == scaled
    with pytest.raises(ValueError, match="no scaled balance"):
        # 1.5 RAY: floor balances go 0, 1, 3, 4, 6 ... so 2 has no scaled balance
        m.scaled_from_balance(2, 3 * RAY // 2, ceil=False)


def _reserve(rid: int, *, collateral: int = 0, debt: int = 0, price: int = USD, ltv: int = 0,
             lt: int = 0, use: bool = True, borrow: bool = False) -> m.ReserveInput:
    # 18 decimals, index 1 RAY: the balances are the scaled amounts
    return m.ReserveInput(rid, WAD, price, collateral, debt, RAY, RAY, ltv, lt, use, borrow)


def test_account_data_emode_bitmap_and_lt0_collateral() -> None:
    """e-mode 2 (ltv 90 %, lt 93 %) has reserves 0 and 1 on its collateral bitmap; reserve 1
    has LT 0 and LTV 0 of its own, reserve 2 (not on the bitmap) keeps its 80 %/85 %."""
    category = m.EModeInput(ltv=9_000, liquidation_threshold=9_300, liquidation_bonus=10_100,
                            collateral_bitmap=0b011)
    reserves = [
        _reserve(0, collateral=1_000 * WAD, ltv=8_000, lt=8_500),
        _reserve(1, collateral=500 * WAD),  # LT 0: counts inside e-mode 2 at 93 %
        _reserve(2, collateral=200 * WAD, ltv=8_000, lt=8_500),
        _reserve(3, debt=1_200 * WAD, price=USD, use=False, borrow=True),
    ]
    data = m.calculate_user_account_data(reserves, 2, category)
    # collateral 1000 + 500 + 200 = 1700 USD; debt 1200 USD
    assert data.total_collateral_base == 1_700 * USD
    assert data.total_debt_base == 1_200 * USD
    # ltv: (1000 * 9000 + 500 * 9000 + 200 * 8000) / 1700 = 8882 (floor of 8882.35)
    assert data.avg_ltv == 8_882
    # lt sum = 1000*9300 + 500*9300 + 200*8500 = 15,650,000 (x 1e8); avg = 9205 (9205.88)
    assert data.avg_liquidation_threshold == 9_205
    # HF = wadDiv(15,650,000e8, 1200e8) / 1e4 = 13041.666..e18 / 1e4 -> 1304166666666666666
    assert data.health_factor == 1_304_166_666_666_666_666
    assert not data.has_zero_ltv_collateral
    # Outside e-mode the LT-0 reserve still counts in the totals but adds nothing to HF.
    plain = m.calculate_user_account_data(reserves, 0, category)
    assert plain.total_collateral_base == 1_700 * USD
    assert plain.has_zero_ltv_collateral  # reserve 1 has LTV 0 outside e-mode
    # (1000 + 200) * 8500 / 1200 / 1e4 = 0.85
    assert plain.health_factor == 850_000_000_000_000_000
    # The ltvzeroBitmap sets LTV 0 inside the category.
    zero = m.EModeInput(9_000, 9_300, 10_100, 0b011, 0, 0b001)
    assert m.user_reserve_ltv(0, 8_000, 2, zero) == 0
    assert m.user_reserve_ltv(2, 8_000, 2, zero) == 8_000


def test_debt_in_base_currency_rounds_up() -> None:
    # 1 wei of an 18-decimal asset at $1 (1e8): 1e8 / 1e18 -> 1 unit of base currency
    assert m.user_debt_in_base_currency(1, RAY, USD, WAD) == 1
    assert m.user_balance_in_base_currency(1, RAY, USD, WAD) == 0


def test_close_factor_by_the_2k_rule() -> None:
    usdc = 10**6
    args = {"debt_price": USD, "debt_asset_unit": usdc, "collateral_price": USD,
            "collateral_asset_unit": usdc}
    # $1,999 of debt: the whole reserve debt, whatever the HF
    assert liq.max_liquidatable_debt(
        borrower_reserve_debt=1_999 * usdc, borrower_collateral_balance=10_000 * usdc,
        total_debt_base=1_999 * USD, health_factor=99 * 10**16, **args) == 1_999 * usdc
    # $3,000 debt of $5,000 total, $4,000 collateral, HF 0.99: 50 % of the WHOLE debt = $2,500
    assert liq.max_liquidatable_debt(
        borrower_reserve_debt=3_000 * usdc, borrower_collateral_balance=4_000 * usdc,
        total_debt_base=5_000 * USD, health_factor=99 * 10**16, **args) == 2_500 * usdc
    # ... but only when the reserve's debt is worth more than that half
    assert liq.max_liquidatable_debt(
        borrower_reserve_debt=2_400 * usdc, borrower_collateral_balance=4_000 * usdc,
        total_debt_base=5_000 * USD, health_factor=99 * 10**16, **args) == 2_400 * usdc
    # HF <= 0.95: the whole reserve debt
    assert liq.max_liquidatable_debt(
        borrower_reserve_debt=3_000 * usdc, borrower_collateral_balance=4_000 * usdc,
        total_debt_base=5_000 * USD, health_factor=95 * 10**16, **args) == 3_000 * usdc


def test_dust_rule() -> None:
    usdc = 10**6
    common = {"debt_price": USD, "debt_asset_unit": usdc, "collateral_price": USD,
              "collateral_asset_unit": usdc, "protocol_fee": 0}
    # $1,500 debt, $1,800 collateral: repaying $500 leaves $1,000 debt but $1,275 collateral
    # (500 * 1.05 = 525 seized) -> accepted; $600 leaves $900 debt -> dust
    assert not liq.leaves_dust(borrower_reserve_debt=1_500 * usdc, actual_debt=500 * usdc,
                               borrower_collateral_balance=1_800 * usdc,
                               actual_collateral=525 * usdc, **common)
    assert liq.leaves_dust(borrower_reserve_debt=1_500 * usdc, actual_debt=600 * usdc,
                           borrower_collateral_balance=1_800 * usdc,
                           actual_collateral=630 * usdc, **common)
    # all the debt, or all the collateral: accepted whatever is left
    assert not liq.leaves_dust(borrower_reserve_debt=1_500 * usdc, actual_debt=1_500 * usdc,
                               borrower_collateral_balance=1_800 * usdc,
                               actual_collateral=1_575 * usdc, **common)
    assert not liq.leaves_dust(borrower_reserve_debt=1_500 * usdc, actual_debt=1_400 * usdc,
                               borrower_collateral_balance=1_470 * usdc,
                               actual_collateral=1_470 * usdc, **common)


def test_liquidation_amounts_fee_and_deficit() -> None:
    """$1,000 of USDC collateral (6 decimals), $1,200 of DAI debt (18), bonus 5 %, fee 10 %:
    the collateral caps the seizure; the debt needed is ceil(1000 / 1.05) and, the position
    having no other collateral, the rest of the debt becomes a deficit."""
    usdc = 10**6
    out = liq.execute_liquidation_call(
        debt_to_cover=2**256 - 1, total_collateral_base=1_000 * USD,
        total_debt_base=1_200 * USD, health_factor=8 * 10**17,
        borrower_scaled_collateral=1_000 * usdc, collateral_index=RAY,
        borrower_reserve_debt=1_200 * WAD, debt_index=RAY, collateral_price=USD,
        collateral_asset_unit=usdc, debt_price=USD, debt_asset_unit=WAD,
        liquidation_bonus=10_500, liquidation_protocol_fee_percentage=1_000)
    # debt needed: (1e8 * 1000e6 * 1e18) / (1e8 * 1e6) = 1000e18, percentDivCeil(.., 10500)
    # = ceil(1000e18 * 1e4 / 10500) = 952380952380952380953
    assert out.debt_repaid == 952_380_952_380_952_380_953
    # bonus part: 1000e6 - percentDiv(1000e6, 10500) = 1000e6 - 952380952 = 47619048;
    # fee = percentMul(47619048, 1000) = 4761905; seized = 1000e6 - 4761905
    assert out.protocol_fee == 4_761_905
    assert out.collateral_seized == 1_000 * usdc - 4_761_905
    assert out.no_collateral_left
    assert out.deficit == 1_200 * WAD - 952_380_952_380_952_380_953
    # A repay too small to burn one scaled unit of debt reverts (InvalidBurnAmount).
    with pytest.raises(m.LiquidationRevert, match="InvalidBurnAmount"):
        liq.execute_liquidation_call(
            debt_to_cover=1, total_collateral_base=1_000 * USD, total_debt_base=1_200 * USD,
            health_factor=8 * 10**17, borrower_scaled_collateral=1_000 * usdc,
            collateral_index=RAY, borrower_reserve_debt=1_200 * WAD, debt_index=2 * RAY,
            collateral_price=USD, collateral_asset_unit=usdc, debt_price=USD,
            debt_asset_unit=WAD, liquidation_bonus=10_500,
            liquidation_protocol_fee_percentage=1_000)


def test_validation_order_and_reasons() -> None:
    ok: dict[str, object] = {"borrower": "0xa", "liquidator": "0xb", "collateral_active": True,
          "collateral_paused": False, "debt_active": True, "debt_paused": False,
          "sentinel_set": False, "sentinel_allows": True, "collateral_grace_until": 0,
          "debt_grace_until": 0, "now": 1_000, "health_factor": 9 * 10**17,
          "using_as_collateral": True, "reserve_debt": 1}
    liq.validate_liquidation_call(**ok)  # type: ignore[arg-type]
    cases: list[tuple[dict[str, object], str]] = [
        ({"liquidator": "0xA"}, "SelfLiquidation"),
        ({"debt_active": False}, "ReserveInactive"),
        ({"collateral_paused": True}, "ReservePaused"),
        ({"sentinel_set": True, "sentinel_allows": False, "health_factor": 97 * 10**16},
         "PriceOracleSentinelCheckFailed"),
        ({"debt_grace_until": 1_000}, "LiquidationGraceSentinelCheckFailed"),
        ({"health_factor": WAD}, "HealthFactorNotBelowThreshold"),
        ({"using_as_collateral": False}, "CollateralCannotBeLiquidated"),
        ({"reserve_debt": 0}, "SpecifiedCurrencyNotBorrowedByUser"),
    ]
    for change, reason in cases:
        with pytest.raises(m.LiquidationRevert) as failed:
            liq.validate_liquidation_call(**{**ok, **change})  # type: ignore[arg-type]
        assert failed.value.reason == reason
    # The sentinel is not asked below HF 0.95; a grace period ending before now has lapsed.
    liq.validate_liquidation_call(**{**ok, "sentinel_set": True, "sentinel_allows": False,
                                     "health_factor": 94 * 10**16})  # type: ignore[arg-type]
    liq.validate_liquidation_call(**{**ok, "debt_grace_until": 999})  # type: ignore[arg-type]


def test_rules_by_revision() -> None:
    assert rules_for_revision(1, "0xpool") is RuleSet.V3_0
    assert rules_for_revision(10, "0xpool") is RuleSet.V3_6
    for revision in (2, 4, 7, 9, 11):
        with pytest.raises(ConfigError, match=f"POOL_REVISION {revision}"):
            rules_for_revision(revision, "0xpool")
    with pytest.raises(ConfigError, match="answers no POOL_REVISION"):
        rules_for_revision(None, "0xpool")

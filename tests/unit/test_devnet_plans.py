"""Pure parts of the devnet: the borrower population, the price path and the crash steps."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from keeper.devnet.borrowers import RiskParams, plan_population, size_debts
from keeper.devnet.crash import crash_steps
from keeper.devnet.price_path import PricePoint, load_price_path, relative_moves
from keeper.errors import InputFileError

RISK = RiskParams(
    aave_ltv_bps={"WETH": 8000, "WBTC": 7300, "USDC": 7700, "DAI": 7500},
    aave_lt_bps={"WETH": 8250, "WBTC": 7800, "USDC": 8000, "DAI": 8000},
    emode_ltv_bps=9300,
    emode_lt_bps=9500,
    morpho_lltv_wad=860_000_000_000_000_000,
)


def test_population_is_deterministic_and_varied() -> None:
    first, again = plan_population(200, 7), plan_population(200, 7)
    assert first == again
    assert plan_population(200, 8) != first
    kinds = Counter(p.kind for p in first)
    assert {"weth-usdc", "wbtc-usdc", "weth-dai", "multi", "emode-stable", "short-eth"} <= set(
        kinds
    )
    protocols = Counter(p.protocol for p in first)
    assert protocols["morpho_blue"] == 60 and protocols["aave_v3"] == 140
    sizes = [sum(p.collateral_usd.values()) for p in first]
    assert min(sizes) < 2_000 and max(sizes) > 1_000_000  # retail and whales
    near = [p for p in first if p.target_health < Decimal("1.12")]
    assert len(near) > len(first) // 3  # many within a few percent of liquidation
    assert len({p.address for p in first}) == 200


def test_debt_sizing_hits_the_target_health_and_respects_ltv() -> None:
    for plan in plan_population(300, 3):
        debts = size_debts(plan, RISK)
        debt = sum(debts.values())
        collateral = plan.collateral_usd
        if plan.protocol == "morpho_blue":
            limit = sum(collateral.values(), Decimal(0)) * Decimal("0.86")
            assert debt <= limit * Decimal("0.995") + Decimal("0.000001")
            continue
        if plan.emode:
            lt = sum(collateral.values(), Decimal(0)) * Decimal("0.95")
            ltv = sum(collateral.values(), Decimal(0)) * Decimal("0.93")
        else:
            lt = sum((v * RISK.aave_lt_bps[s] for s, v in collateral.items()), Decimal(0))
            ltv = sum((v * RISK.aave_ltv_bps[s] for s, v in collateral.items()), Decimal(0))
            lt, ltv = lt / 10_000, ltv / 10_000
        assert debt <= ltv * Decimal("0.995") + Decimal("0.000001")
        assert lt / debt >= plan.target_health - Decimal("0.000001")


def test_bundled_price_path_is_the_2021_05_19_crash() -> None:
    points = load_price_path()
    assert len(points) == 144
    assert points[0].time == "2021-05-19T00:00"
    low = min(points, key=lambda p: p.price)
    assert low.price == Decimal("1944.91")
    assert all(p.gas_gwei is not None and p.gas_gwei > 0 for p in points)


def test_crash_steps_scale_moves_by_beta() -> None:
    points = [PricePoint("t0", Decimal(100), None), PricePoint("t1", Decimal(60), Decimal(80))]
    steps = crash_steps(points, {"WETH": Decimal(2000), "WBTC": Decimal(30000), "USDC": Decimal(1)})
    assert steps[0].prices == {"WETH": Decimal("2000.00"), "WBTC": Decimal("30000.00")}
    # -40% on ETH; BTC moves with beta 0.7 -> -28%; stablecoins are not driven.
    assert steps[1].prices == {"WETH": Decimal("1200.00"), "WBTC": Decimal("21600.00")}
    assert steps[1].gas_gwei == Decimal(80)
    assert relative_moves(points, Decimal(10)) == [Decimal("10.00"), Decimal("6.00")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,price\n", "at least one row"),
        ("time,price\nt0,abc\n", ":2: expected time,price"),
        ("time,price\nt0,100\nt1,-5\n", ":3: price must be positive"),
        ("time,price\nt0\n", ":2: expected time,price"),
    ],
)
def test_malformed_price_path_names_file_and_line(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "path.csv"
    path.write_text(content)
    with pytest.raises(InputFileError, match=message) as info:
        load_price_path(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_price_path(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        load_price_path(tmp_path / "nope.csv")

"""The risk view without a chain: price drops, Morpho's curve on a hand-made book, and the
tables and plots of `keeper risk`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from keeper import cli
from keeper.liquidation_curve import BASE_CURRENCY, DEFAULT_DROPS, CurvePoint, dropped
from keeper.log import reset_logging
from keeper.risk import RiskView, plot_figure, tables, write_plot
from strategies.morpho_blue import risk as morpho_risk
from strategies.morpho_blue.math import ORACLE_PRICE_SCALE, MarketParams, MarketState
from strategies.morpho_blue.math import PositionState as Position

WETH, USDC = "0x" + "11" * 20, "0x" + "22" * 20
WAD = 10**18
# 1 WETH (18 decimals) = 2,000 USDC (6 decimals), as a Morpho oracle quotes it.
PRICE = 2000 * 10**6 * ORACLE_PRICE_SCALE // 10**18
PARAMS = MarketParams(loan_token=USDC, collateral_token=WETH, oracle="0x" + "33" * 20,
                      irm="0x" + "44" * 20, lltv=86 * 10**16)
# 1,000,000 USDC borrowed for as many shares (1e6 shares per asset, as Morpho starts).
MARKET = MarketState(total_supply_assets=10**12, total_supply_shares=10**18,
                     total_borrow_assets=10**12, total_borrow_shares=10**18)


def _borrower(debt_usdc: int, collateral_weth: int) -> Position:
    return Position(borrow_shares=debt_usdc * 10**12, collateral=collateral_weth * WAD)


def test_dropped_rounds_down_and_refuses_nonsense() -> None:
    assert dropped(200_000_000_000, 20) == 160_000_000_000
    assert dropped(7, 50) == 3
    assert dropped(123, 0) == 123
    with pytest.raises(ValueError):
        dropped(1, 100)


def test_morpho_price_moves_with_the_collateral_or_the_loan() -> None:
    view = morpho_risk.MarketView(PARAMS, MARKET, PRICE)
    assert morpho_risk.moved_price(view, WETH, 10) == PRICE * 90 // 100
    assert morpho_risk.moved_price(view, USDC, 20) == PRICE * 100 // 80
    assert morpho_risk.moved_price(view, "0x" + "55" * 20, 30) == PRICE


def test_morpho_curve_is_exact_and_monotone() -> None:
    markets = {"m": morpho_risk.MarketView(PARAMS, MARKET, PRICE)}
    # HF at 0 %: 2000*0.86/1000 = 1.72; 2000*0.86/1700 = 1.01; 2000/2100 < 1 (bad debt now).
    positions = {"m": {"a": _borrower(1000, 1), "b": _borrower(1700, 1), "c": _borrower(2100, 1),
                       "d": Position(collateral=WAD)}}
    curve = morpho_risk.liquidation_curve(markets, positions, DEFAULT_DROPS)
    weth = [p for p in curve if p.asset == WETH]
    assert [p.drop_pct for p in weth] == list(DEFAULT_DROPS)
    assert all(p.positions == 3 and p.unit == USDC for p in weth)
    at = {p.drop_pct: p for p in weth}
    assert at[0].liquidatable == 1 and at[0].bad_debt == 100 * 10**6
    assert at[0].liquidatable_collateral == 2000 * 10**6
    assert at[5].liquidatable == 2  # 1900*0.86 < 1700
    assert at[45].liquidatable == 3  # 1100*0.86 < 1000
    assert at[50].bad_debt == (2100 - 1000 + 1700 - 1000) * 10**6
    counts = [p.liquidatable for p in weth]
    debts = [p.bad_debt for p in weth]
    assert counts == sorted(counts) and debts == sorted(debts)
    usdc = {p.drop_pct: p for p in curve if p.asset == USDC}
    assert usdc[50].liquidatable == 0  # the debt got cheaper: everyone is healthier


def _view() -> RiskView:
    points = [
        CurvePoint("aave_v3", WETH, d, BASE_CURRENCY, 8, 10, d // 10, d * 10**14, d * 10**12)
        for d in DEFAULT_DROPS
    ] + [
        CurvePoint("morpho_blue", WETH, d, USDC, None, 5, d // 20, d * 10**12, 0)
        for d in DEFAULT_DROPS
    ]
    return RiskView(7, points, {WETH: "WETH", USDC: "USDC"}, {WETH: 18, USDC: 6})


def test_tables_show_each_protocol_in_its_unit_within_80_columns() -> None:
    # An 80-column console, as piped output gets: nothing cut short ("13,205,0…" was).
    console = Console(record=True, width=80)
    for table in tables(_view()):
        console.print(table)
    text = console.export_text()
    assert "WETH price drop (block 7, 15 positions with debt)" in text
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    rows = [line for line in text.splitlines() if "-50%" in line]
    # aave: 50 // 10 of 10 positions, 50 * 1e14 base units = $50M, bad debt $500k (USD);
    # morpho: 50 * 1e12 raw USDC = 50M USDC.
    assert all(v in rows[0] for v in ("5/10", "$50.00M", "$500,000")), rows[0]
    assert all(v in rows[1] for v in ("2/5", "50.00M USDC", "0 USDC")), rows[1]
    assert "aave_v3" in text and "morpho_blue" in text


@pytest.mark.parametrize(("name", "words"), [
    ("curve.svg", ("curve.svg", ".png or an .html")),
    ("nodir/curve.png", ("folder nodir does not exist",)),
    ("x" * 300 + ".png", ("cannot write the plot",)),  # a name too long: only opening tells
])
def test_a_plot_that_cannot_be_written_is_refused_before_the_devnet_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, words: tuple[str, ...]
) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        result = CliRunner().invoke(cli.main, ["risk", "--devnet", "--plot", name])
    finally:
        reset_logging()  # the command set logging up on the runner's stream, now closed
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("keeper: error: "), lines
    assert all(w in lines[0] for w in words), lines[0]
    assert list(tmp_path.iterdir()) == []  # the check left nothing behind


def test_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png, page = tmp_path / "curve.png", tmp_path / "curve.html"
    write_plot(_view(), png)
    write_plot(_view(), page)
    assert png.read_bytes().startswith(b"\x89PNG")
    text = page.read_text()
    assert "data:image/png;base64," in text and "WETH price drop" in text
    assert "block 7: 15 positions with debt" in text
    # The command prints its tables itself, once: writing the page prints nothing.
    assert capsys.readouterr().out == ""


def test_plot_axes_read_in_millions_of_their_unit() -> None:
    figure = plot_figure(_view())
    (axes,) = figure.axes
    assert axes.get_title() == "WETH price drop (15 positions)"
    assert axes.get_xlabel() == "WETH price change (%)"
    # Aave in USD, Morpho in USDC on one panel: millions, the units named in the legend.
    assert axes.get_ylabel() == "millions USD or USDC (see legend)"
    lines: list[Any] = list(axes.get_lines())  # matplotlib's ydata type is too wide to iterate
    top = max(float(y) for line in lines for y in line.get_ydata())
    assert 1 <= top < 1000  # no 1e7 multiplier
    assert axes.yaxis.get_offset_text().get_text() == ""

"""`keeper backtest sweep` without running it: the parameter grid and its errors, the one
line when Ray is missing, the daemon never importing Ray, and the combined report's table
and plot from backtest reports (one of them failed)."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from decimal import Decimal

import pytest
from click.testing import CliRunner

from keeper.backtest.model import BacktestReport, Liquidation, Opportunity
from keeper.backtest.sweep import SweepUsageError, parse_grid
from keeper.backtest.sweep_params import Tuning
from keeper.backtest.sweep_report import (
    COLUMNS,
    Cell,
    SweepReport,
    plot_sweep,
    render_sweep_html,
    sweep_table,
)
from keeper.backtest.units import CELL
from keeper.cli import main


def test_the_grid_is_every_combination_in_a_stable_order() -> None:
    tunings = parse_grid("none, 0.25", "5,10", "1")
    assert [(t.bid_share, t.min_profit_usd, t.batch_max) for t in tunings] == [
        (None, Decimal(5), 1), (None, Decimal(10), 1),
        (Decimal("0.25"), Decimal(5), 1), (Decimal("0.25"), Decimal(10), 1)]
    assert parse_grid("0.5,0.5", "5", "5") == [Tuning(Decimal("0.5"))]
    assert Tuning(Decimal("0.5")).bids() is not None and Tuning().bids() is None
    # The insert position varies fastest; next-block (today's replay) unless asked for.
    assert [(t.bid_share, t.insert) for t in parse_grid("0,0.5", "5", "5",
                                                        "after-oracle, next-block")] == [
        (Decimal(0), "after-oracle"), (Decimal(0), "next-block"),
        (Decimal("0.5"), "after-oracle"), (Decimal("0.5"), "next-block")]
    assert Tuning().insert == "next-block" and "insert" not in Tuning().keeper_kwargs()
    assert Tuning(insert="after-oracle").label().endswith(", after-oracle")
    assert Tuning(insert="after-oracle").to_json()["insert"] == "after-oracle"


@pytest.mark.parametrize(("shares", "floors", "batches", "inserts", "message"), [
    ("x", "5", "5", "next-block", "--bid-share: 'x' is not a number"),
    ("1.5", "5", "5", "next-block", "a bid share must be within [0, 1]"),
    ("0", "-1", "5", "next-block", "the minimum profit must be >= 0"),
    ("0", "5", "0", "next-block", "a batch size must be within [1, 20]"),
    ("0", "5", "two", "next-block", "bad sweep parameter"),
    ("0", "5", "5", "next-block,top",
     "bad sweep parameter: an insert position must be after-oracle or next-block, not 'top'"),
])
def test_bad_parameters_are_one_clear_error(shares: str, floors: str, batches: str,
                                            inserts: str, message: str) -> None:
    with pytest.raises(SweepUsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_grid(shares, floors, batches, inserts)


def test_without_ray_the_sweep_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when not installed
    result = CliRunner().invoke(main, ["backtest", "sweep", "--price-path",
                                       "steth_eth_2022-06_depeg", "--steps", "2"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "keeper: error: keeper backtest sweep needs Ray: pip install 'keeper[sweep]'")


def test_the_daemon_and_the_backtest_command_never_import_ray() -> None:
    code = ("import sys, keeper.run, keeper.backtest.cli, keeper.backtest.devnet_replay; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr


def _report(profit: float, missed: float) -> dict[str, object]:
    report = BacktestReport(mode="price-path", chain_id=31337, from_block=1, to_block=9,
                            quote_symbol="WETH", blocks_replayed=8, gas_spent_wei=2 * 10**16)
    report.keeper.append(Liquidation(3, "0xt", "0xk", "aave_v3", "0xa", "WBTC", "USDC", 1, 1,
                                     profit, 10**16, by_keeper=True))
    report.opportunities += [
        Opportunity(2, "aave_v3", "0xa", "WBTC", "USDC", profit, "keeper", latency_blocks=1),
        Opportunity(2, "aave_v3", "0xb", "WBTC", "USDC", missed, None, missed_because="x")]
    return report.to_json()


def test_the_combined_report_reads_each_backtests_figures() -> None:
    cells = [Cell("crash", 12, Tuning(Decimal(0)), report=_report(3.0, 1.0)),
             Cell("crash", 12, Tuning(Decimal("0.5"), insert="after-oracle"),
                  report=_report(2.0, 2.0)),
             Cell("depeg", 12, Tuning(Decimal(0)), error="anvil exited")]
    report = SweepReport(cells, seconds=4.0)
    assert cells[0].figures() == {
        "opportunities": 2, "taken": 1, "liquidations": 1, "pnl": 3.0, "missed": 1.0,
        "capture_rate": 0.75, "latency_blocks": 1.0, "gas_eth": 0.02, "blocks": 8,
        "quote": "WETH"}
    assert cells[1].row()[5] == "after-oracle" and cells[0].row()[5] == "next-block"
    assert cells[1].row()[9:13] == ("2.00", "2.00", "50.0%", "1.00")
    assert cells[2].figures() == {} and cells[2].row()[6] == "failed: anvil exited"
    assert all(len(c.row()) == len(COLUMNS) for c in cells)
    assert sweep_table(report).row_count == 3
    page = render_sweep_html(report)
    assert page.count("<tr>") == 4 and "data:image/png;base64," in page
    assert "<th>insert</th>" in page and "<td>after-oracle</td>" in page
    labels = [t.get_text() for t in plot_sweep(report).axes[1].get_xticklabels()]
    assert labels == ["bid 0, min $5, batch 5, next-block",
                      "bid 0.5, min $5, batch 5, after-oracle"], labels
    assert [c["figures"] for c in report.to_json()["cells"]] == [c.figures() for c in cells]
    # A long failure fits its cell (24 characters), whole in the tooltip.
    why = "anvil exited: port 8545 is in use by another process"
    page = render_sweep_html(SweepReport([Cell("crash", 12, Tuning(Decimal(0)), error=why)]))
    cells_text = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", page)]
    assert max(len(c) for c in cells_text) <= CELL and f'title="failed: {why}"' in page

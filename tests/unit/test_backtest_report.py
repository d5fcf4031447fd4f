"""The backtest report (console, HTML, JSON), the shipped price paths, and `keeper backtest`'s
input errors: one `keeper: error:` line and exit code 2."""

from __future__ import annotations

import html
import io
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from keeper import cli
from keeper.backtest.figures import (
    FIGURES,
    plot_health,
    plot_liquidations,
    plot_liquidators,
    plot_pnl,
    png_base64,
)
from keeper.backtest.model import (
    BacktestReport,
    HealthSample,
    Liquidation,
    Opportunity,
    PriceSample,
)
from keeper.backtest.path_file import PATHS, load_path, resolve_path
from keeper.backtest.report import ReplayProgress, print_summary, render_html, write_html
from keeper.backtest.units import CELL
from keeper.errors import InputFileError
from keeper.log import reset_logging

SHIPPED = sorted(PATHS.glob("*.csv"))


def _liquidation(block: int, profit: float, *, keeper: bool = True) -> Liquidation:
    return Liquidation(
        block=block, tx=f"0x{block:064x}", liquidator="keeper" if keeper else "0xabc",
        protocol="aave_v3", account="0x01", collateral="WETH", debt="USDC", repaid=10**6,
        seized=10**17, profit_quote=profit, gas_wei=10**15, by_keeper=keeper,
    )


def sample_report() -> BacktestReport:
    return BacktestReport(
        mode="price-path", chain_id=31337, from_block=100, to_block=110, quote_symbol="WETH",
        blocks_replayed=10, seconds=2.0,
        opportunities=[
            Opportunity(101, "aave_v3", "0x01", "WETH", "USDC", 1.5, "keeper", latency_blocks=2),
            Opportunity(103, "aave_v3", "0x02", "WETH", "DAI", 0.5, None,
                        missed_because="no-capital"),
        ],
        keeper=[_liquidation(103, 1.0), _liquidation(105, 0.5)],
        historical=[_liquidation(104, 0.25, keeper=False)],
        prices=[PriceSample(100 + i, 1_700_000_000 + i, "WETH", 2000.0 - 50 * i)
                for i in range(10)],
        health=[HealthSample(100 + i, 50, i, {0.05: 0.9, 0.25: 1.0, 0.5: 1.2, 0.75: 1.5,
                                              0.95: 2.0}) for i in range(10)],
        gas_spent_wei=3 * 10**15,
        notes=["a note"],
    )


def test_figures_of_a_report() -> None:
    report = sample_report()
    assert report.keeper_net_profit == pytest.approx(1.5)
    assert report.available_net_profit == pytest.approx(2.0)
    assert report.capture_rate == pytest.approx(0.75)
    assert report.blocks_per_second == pytest.approx(5.0)


def test_html_is_self_contained_with_every_plot(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    write_html(sample_report(), path)
    text = path.read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 5  # prices, health, liquidations by block, PnL, liquidators
    assert all(len(i) > 1000 for i in images)
    assert "http://" not in text and "https://" not in text  # nothing loaded from elsewhere
    assert "75.0%" in text and "no-capital" in text and f"0x{105:064x}" in text


def test_html_legend_gives_each_reason_once() -> None:
    report = sample_report()
    missed = report.opportunities[1]
    report.opportunities[1:] = [
        replace(missed, missed_detail="debt asset balance is committed"),
        replace(missed, account="0x03", missed_detail="the debt asset on hand could not repay"),
        replace(missed, account="0x04", missed_because="unprofitable",
                missed_detail="worth nothing after gas and slippage")]
    page = render_html(report)
    assert page.count("<b>no-capital</b>") == 1 and page.count("<b>unprofitable</b>") == 1
    assert ("<li><b>no-capital</b>, either:<ul><li>debt asset balance is committed</li>"
            "<li>the debt asset on hand could not repay</li></ul></li>") in page


def test_html_tables_fit_and_show_token_units() -> None:
    report = sample_report()
    whale = "0x" + "ab" * 20
    report.keeper.append(Liquidation(
        block=106, tx="0x" + "cd" * 32, liquidator=whale, protocol="morpho_blue", account=whale,
        collateral="WETH", debt="USDC", repaid=465313717744221, seized=465313717744221380249635,
        profit_quote=12345.678901, gas_wei=10**15, by_keeper=True))
    report.decimals = {"WETH": 18, "USDC": 6, "DAI": 18}
    page = render_html(report)
    cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", page, re.S)]
    assert max(len(c) for c in cells) <= CELL, max(cells, key=len)
    assert "465313717744221" not in page  # exact integers only in the JSON
    assert "465,313,718 USDC" in cells and "465,313.72 WETH" in cells
    assert "0xabab…abab" in cells and f'title="{whale}"' in page
    assert "$" in page  # USD at the oracle's prices


def test_every_plot_has_a_title_and_axis_units() -> None:
    report = sample_report()
    boxes: set[tuple[int, int]] = set()
    for figure in (plot(report) for plot in FIGURES):
        axes = figure.axes[0]
        assert axes.get_title() and axes.get_xlabel() and axes.get_ylabel(), axes.get_title()
        assert all(a.get_ylabel() for a in figure.axes)
        if axes.get_xlabel() == "block":  # every block axis spans the replayed range
            assert tuple(axes.get_xlim()) == (report.from_block, report.to_block)
            # ... over the same pixels, so a block is at the same place in every plot (as
            # drawn: a layout engine places the axes only then).
            png_base64(figure)
            box = axes.get_position()
            boxes.add((round(box.x0 * figure.get_figwidth(), 2),
                       round(box.x1 * figure.get_figwidth(), 2)))
    assert len(boxes) == 1, boxes
    health = plot_health(report)
    (legend,) = health.legends
    assert "positions with HF < 1 (right)" in [t.get_text() for t in legend.get_texts()]
    # Counts tick at integers.
    ticks = plot_liquidations(report).axes[0].get_yticks()
    assert all(float(t).is_integer() for t in ticks)
    assert "blocks 100-110" in health.axes[0].get_title()
    # Counts of liquidations and of the positions they hit (all three hit account 0x01).
    assert plot_liquidations(report).axes[0].get_title() == (
        "liquidations by block: 3, of 1 position (50 with debt; blocks 100-110)")
    assert "50 positions" in health.axes[0].get_title()
    # Every plot's title names the range and the positions with debt in it.
    for figure in (plot(report) for plot in FIGURES):
        assert "blocks 100-110" in figure.axes[0].get_title()
        title = figure.axes[0].get_title()
        assert "50 positions" in title or "(50 with debt" in title, title
    # The PnL plot shows what was available beside what the keeper took.
    pnl = plot_pnl(report).axes[0]
    assert "capture 75.0%" in pnl.get_title()
    # Any: matplotlib's ydata type is too wide to index.
    lines: list[Any] = [line for line in pnl.get_lines()
                        if line.get_label() == "available (keeper + missed)"]
    (available,) = lines
    assert float(available.get_ydata()[-1]) == pytest.approx(report.available_net_profit)
    # Each liquidator's bar says its value in the quote token and in USD.
    texts = [t.get_text() for t in plot_liquidators(report).axes[0].texts]
    assert "2 liquidations: 1.5000 WETH, $2,725" in texts and (
        "1 liquidation: 0.25 WETH, $450" in texts), texts


def test_progress_without_a_terminal_prints_lines(capsys: pytest.CaptureFixture[str]) -> None:
    console = Console(file=io.StringIO(), force_terminal=False)
    with ReplayProgress(console, unit="steps") as progress:
        for done in range(1, 21):
            progress(done, 20, done * 3)
    lines = capsys.readouterr().err.splitlines()
    assert 2 <= len(lines) <= 11 and "20/20 steps" in lines[-1] and "60 blocks" in lines[-1]
    assert "steps/s" in lines[-1]


def test_html_of_an_empty_report() -> None:
    empty = BacktestReport(mode="tape", chain_id=1, from_block=5, to_block=5, quote_symbol="WETH")
    assert render_html(empty).count("<img") == 5


def test_json_is_plain_json() -> None:
    data = json.loads(json.dumps(sample_report().to_json()))
    assert data["capture_rate"] == pytest.approx(0.75)
    assert data["health"][0]["quantiles"]["0.5"] == 1.2
    assert len(data["keeper"]) == 2


def test_console_summary() -> None:
    console = Console(record=True, width=80)
    print_summary(console, sample_report())
    text = console.export_text()
    assert "capture rate" in text and "75.0%" in text and "no-capital" in text
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    # USD at the oracle's price of each block (WETH at 2,000 - 50 per block from 100): the
    # keeper's 1.0 WETH at 103 and 0.5 at 105, the missed 0.5 WETH at 103.
    lines = text.splitlines()
    assert any("keeper" in line and "$2,725" in line for line in lines), text
    assert any("no-capital" in line and "0.5000 WETH" not in line and "$925" in line
               for line in lines), text


def test_progress_says_what_it_counts(capsys: pytest.CaptureFixture[str]) -> None:
    console = Console(record=True, width=120, force_terminal=False)
    with ReplayProgress(console, unit="steps") as progress:
        progress(3, 10, 7)
        progress(10, 10, 12)
    first, *_, last = capsys.readouterr().err.splitlines()
    # Steps per second for a bar that counts steps, and the blocks replayed beside them.
    assert "3/10 steps" in first and "steps/s, 7 blocks" in first, first
    assert "10/10 steps" in last and "12 blocks" in last and "blocks/s" not in last, last
    assert console.export_text() == ""  # off a terminal, no bar is drawn


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_paths_load_and_credit_their_source(path: Path) -> None:
    loaded = load_path(path)
    assert len(loaded.points) > 20
    header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    assert "Source:" in header and "commit" in header
    assert set(loaded.betas) <= {"WETH", "WBTC"} and loaded.betas
    if "eth_usd" in path.name:
        assert all(p.gas_gwei is not None for p in loaded.points[:100])


def test_steth_path_is_the_june_2022_depeg() -> None:
    loaded = load_path(resolve_path("steth_eth_2022-06_depeg"))
    assert loaded.betas == {"WETH": Decimal(1)}
    low = min(p.price for p in loaded.points)
    assert Decimal("0.93") < low < Decimal("0.94")
    assert all(p.time.startswith("2022-06") for p in loaded.points)


def test_a_path_driving_an_unknown_asset_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("# drives: STETH=1\ntime,price\n2022-06-01,1\n2022-06-02,0.9\n")
    with pytest.raises(InputFileError, match="STETH"):
        load_path(path)


@pytest.fixture
def clean_logging() -> Iterator[None]:
    yield
    reset_logging()


def assert_one_error(result: Result, *words: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("keeper: error: "), lines
    for word in words:
        assert word in lines[0]


@pytest.mark.usefixtures("clean_logging")
def test_cli_input_errors(tmp_path: Path) -> None:
    def run(*args: str) -> Result:
        log = ["--log-file", str(tmp_path / "backtest.log")]
        return CliRunner().invoke(cli.main, ["--log-format", "json", "backtest", *log, *args])

    bad = tmp_path / "bad.csv"
    bad.write_text("time,price\n2021-05-19T00:00,abc\n")
    assert_one_error(run(), "--devnet", "--rpc", "--tape")
    assert_one_error(run("--devnet"), "--price-path")
    assert_one_error(run("--devnet", "--price-path", str(tmp_path / "missing.csv")),
                     "missing.csv", "not found")
    assert_one_error(run("--devnet", "--price-path", str(bad)), "bad.csv:2")
    assert_one_error(run("--rpc", "http://127.0.0.1:1", "--from", "9", "--to", "3"),
                     "--from 9 --to 3")
    assert_one_error(run("--rpc", "http://127.0.0.1:1", "--to", "3"), "--from")
    assert_one_error(run("--devnet", "--rpc", "http://127.0.0.1:1"), "--devnet and --rpc")
    assert_one_error(run("--tape", str(tmp_path / "none.tape"), "--from", "1", "--to", "2"),
                     "none.tape")
    assert_one_error(run("--devnet", "--price-path", "eth_usd_2021-05-19_10min",
                         "--log-file", str(tmp_path / "no" / "log")), "cannot write the log")
    assert_one_error(run("--devnet", "--price-path", "eth_usd_2021-05-19_10min",
                         "--insert", "top"), "--insert", "after-oracle", "next-block")


@pytest.mark.usefixtures("clean_logging")
@pytest.mark.parametrize(("content", "words"), [
    ("garbage\n1,2,3,4\n", ("garbage.csv:1", "header")),
    ("time_utc,price\n2021-05-19T00:00,1\n", ("at least two rows",)),
    ("time_utc,price\n2021-05-19T00:00,1\n1,2,3,4\n", ("garbage.csv:3",)),
    ("time_utc,price\nyesterday,1\ntoday,2\n", ("garbage.csv:2", "ISO-8601")),
    ("time_utc,price\n2021-05-19T00:10,1\n2021-05-19T00:00,2\n", ("garbage.csv:3", "after")),
    ("", ("garbage.csv", "empty")),
    ("# a comment\n", ("garbage.csv", "empty")),
    # Numbers a replay cannot drive a feed with: each was an internal error or a replay.
    ("time_utc,price\n2021-05-19T00:00,nan\n2021-05-19T00:10,2\n", ("garbage.csv:2", "'nan'")),
    ("time_utc,price\n2021-05-19T00:00,1\n2021-05-19T00:10,inf\n", ("garbage.csv:3", "'inf'")),
    ("time_utc,price\n2021-05-19T00:00,1\n2021-05-19T00:10,-2\n", ("garbage.csv:3", "positive")),
    ("time_utc,price\n2021-05-19T00:00,1e-22\n2021-05-19T00:10,3\n",
     ("garbage.csv:3", "million-fold", "1e-22")),
    ("time_utc,price,gas_gwei\n2021-05-19T00:00,1,-1\n2021-05-19T00:10,2,3\n",
     ("garbage.csv:2", "gas price -1")),
    ("time_utc,price,gas_gwei\n2021-05-19T00:00,1,x\n2021-05-19T00:10,2,3\n",
     ("garbage.csv:2", "gas price 'x'")),
    ("time_utc,price\n2021-05-19T00:00\n2021-05-19T00:10,2\n", ("garbage.csv:2", "1 columns")),
])
def test_a_bad_path_file_is_refused_before_the_devnet_starts(
    tmp_path: Path, content: str, words: tuple[str, ...]
) -> None:
    path = tmp_path / "garbage.csv"
    path.write_text(content)
    result = CliRunner().invoke(cli.main, [
        "backtest", "--log-file", str(tmp_path / "log"), "--devnet", "--price-path", str(path)])
    assert_one_error(result, *words)


@pytest.mark.usefixtures("clean_logging")
def test_steps_and_output_folder_are_checked_before_the_replay(tmp_path: Path) -> None:
    def run(*args: str) -> Result:
        return CliRunner().invoke(cli.main, [
            "backtest", "--log-file", str(tmp_path / "log"), "--devnet", "--price-path",
            "steth_eth_2022-06_depeg", *args])

    assert_one_error(run("--steps", "999"), "--steps 999", "only 31 steps")
    assert_one_error(run("--html", str(tmp_path / "nodir" / "r.html")), "nodir",
                     "does not exist")
    assert_one_error(run("--html", str(tmp_path)), "is a directory")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if not os.access(locked, os.W_OK):  # root writes anywhere
        assert_one_error(run("--html", str(locked / "r.html")), "cannot write")
    # What permission bits do not tell (root included): the file is opened, then removed.
    assert_one_error(run("--html", str(tmp_path / ("x" * 300 + ".html"))),
                     "cannot write the HTML report", "too long")
    assert [p.name for p in tmp_path.iterdir()] == ["locked"]
    assert_one_error(run("--capital", "0"), "--capital")


@pytest.mark.usefixtures("clean_logging")
def test_the_summary_comes_first_and_the_log_outlives_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay stubbed out (its report is the sample): an HTML report that fails to write
    at the end costs one line, not the summary; what logs while it is drawn (matplotlib, as
    it loads) goes to the log file, never into a closed one."""
    from keeper.backtest import cli as backtest_cli  # noqa: PLC0415
    from keeper.backtest import devnet_replay  # noqa: PLC0415

    def replayed(*_args: object, **_kwargs: object) -> BacktestReport:
        return sample_report()

    def drawn(_report: BacktestReport, path: Path) -> None:
        logging.getLogger("matplotlib").warning("drawing %s", path.name)
        raise InputFileError(f"{path}: cannot write the HTML report (No space left on device)")

    monkeypatch.setattr(devnet_replay, "run_price_path", replayed)
    monkeypatch.setattr(backtest_cli, "write_html", drawn)
    log = tmp_path / "backtest.log"
    result = CliRunner().invoke(cli.main, [
        "backtest", "--log-file", str(log), "--devnet", "--price-path",
        "steth_eth_2022-06_depeg", "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 2, result.output
    assert "capture rate" in result.stdout and "75.0%" in result.stdout
    assert result.stderr.splitlines() == [
        f"keeper: error: {tmp_path / 'r.html'}: cannot write the HTML report (No space left "
        "on device)"]
    assert "drawing r.html" in log.read_text()
    logging.getLogger("matplotlib").warning("after the command")  # its log closed: no error

"""The combined report of a backtest sweep: one row per (price path, parameter set).

Each `Cell` holds one backtest's whole report (`BacktestReport.to_json()`) or the error that
ended it; `SweepReport` reads the same figures off each that `keeper backtest` prints
(opportunities, taken, liquidations, the keeper's net profit, missed value, capture rate,
gas), and renders them as a console table, an HTML page with the table and a plot of
capture and PnL per parameter set (one bar per price path), and JSON that keeps every
cell's full report.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from keeper.backtest.figures import new_figure, png_base64
from keeper.backtest.report import html_table
from keeper.backtest.sweep_params import Tuning
from keeper.errors import InputFileError

ETH = 10**18
COLUMNS = ("path", "steps", "bid", "min $", "batch", "insert", "opps", "taken", "liqs", "PnL",
           "missed", "capture", "latency", "gas ETH", "blocks")
"""Headers short enough for an 80-column console: bid share, minimum profit (USD), largest
batch, insert position (after-oracle, next-block), opportunities, those taken, the
keeper's liquidations, its net profit and the missed value (in the quote token: the
report's notes name it), capture rate, the taken opportunities' mean latency (blocks:
where the insert position shows), gas spent."""
HEAD = COLUMNS.index("opps")  # the parameters' columns, before the figures


@dataclass(frozen=True)
class Cell:
    """One backtest of the sweep: its path, steps and parameters, and its report or error."""

    path: str
    steps: int | None
    tuning: Tuning
    report: dict[str, Any] | None = None
    error: str | None = None

    def figures(self) -> dict[str, Any]:
        """The headline figures of its report (none when it failed)."""
        r = self.report
        if r is None:
            return {}
        latencies = [o["latency_blocks"] for o in r["opportunities"]
                     if o["taken_by"] == "keeper" and o["latency_blocks"] is not None]
        return {
            "opportunities": len(r["opportunities"]),
            "taken": sum(1 for o in r["opportunities"] if o["taken_by"] == "keeper"),
            "liquidations": len(r["keeper"]),
            "pnl": r["keeper_net_profit"],
            "missed": r["missed_net_profit"],
            "capture_rate": r["capture_rate"],
            "latency_blocks": sum(latencies) / len(latencies) if latencies else None,
            "gas_eth": r["gas_spent_wei"] / ETH,
            "blocks": r["blocks_replayed"],
            "quote": r["quote_symbol"],
        }

    def row(self) -> tuple[str, ...]:
        share = "none" if self.tuning.bid_share is None else str(self.tuning.bid_share)
        head = (self.path, "all" if self.steps is None else str(self.steps), share,
                str(self.tuning.min_profit_usd), str(self.tuning.batch_max), self.tuning.insert)
        f = self.figures()
        if not f:
            return (*head, f"failed: {self.error}"[:60], *[""] * (len(COLUMNS) - HEAD - 1))
        capture = "-" if f["capture_rate"] is None else f"{f['capture_rate']:.1%}"
        latency = "-" if f["latency_blocks"] is None else f"{f['latency_blocks']:.2f}"
        return (*head, str(f["opportunities"]), str(f["taken"]), str(f["liquidations"]),
                f"{f['pnl']:,.2f}", f"{f['missed']:,.2f}", capture, latency,
                f"{f['gas_eth']:.3f}", str(f["blocks"]))


@dataclass
class SweepReport:
    """Every cell of a sweep, in grid order (paths, then parameter sets)."""

    cells: list[Cell]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "notes": self.notes, "cells": [
            {"path": c.path, "steps": c.steps, "tuning": c.tuning.to_json(),
             "figures": c.figures(), "error": c.error, "report": c.report}
            for c in self.cells]}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)


def sweep_table(report: SweepReport) -> Table:
    table = Table(title=f"backtest sweep: {len(report.cells)} backtests in "
                        f"{report.seconds:.0f} s")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for cell in report.cells:
        table.add_row(*cell.row())
    return table


def print_sweep(console: Console, report: SweepReport) -> None:
    console.print(sweep_table(report))
    quotes = sorted({c.figures()["quote"] for c in report.cells if c.report is not None})
    console.print(f"[dim]PnL and missed in {', '.join(quotes) or 'the quote token'}; "
                  "capture = PnL / (PnL + missed)[/dim]")
    for note in report.notes:
        console.print(f"[dim]note: {note}[/dim]")


def plot_sweep(report: SweepReport) -> Any:
    """Capture rate and PnL per parameter set, one bar per price path."""
    labels = list(dict.fromkeys(c.tuning.label() for c in report.cells))
    paths = list(dict.fromkeys(c.path for c in report.cells))
    figure = new_figure(10, 6.5)
    capture_axes, pnl_axes = figure.subplots(2, 1, sharex=True)
    width = 0.8 / max(len(paths), 1)
    for i, path in enumerate(paths):
        by_label = {c.tuning.label(): c.figures() for c in report.cells if c.path == path}
        xs = [j + i * width for j in range(len(labels))]
        captures = [100 * (by_label.get(lb, {}).get("capture_rate") or 0.0) for lb in labels]
        pnls = [by_label.get(lb, {}).get("pnl", 0.0) for lb in labels]
        capture_axes.bar(xs, captures, width, label=path)
        pnl_axes.bar(xs, pnls, width, label=path)
    quote = next((c.figures()["quote"] for c in report.cells if c.report), "quote")
    capture_axes.set_ylabel("capture rate (%)")
    capture_axes.set_title("capture rate per parameter set")
    capture_axes.legend(fontsize="small")
    pnl_axes.set_ylabel(f"keeper net profit ({quote})")
    pnl_axes.set_title("PnL per parameter set")
    pnl_axes.set_xticks([j + width * (len(paths) - 1) / 2 for j in range(len(labels))])
    pnl_axes.set_xticklabels(labels, rotation=20, ha="right", fontsize="small")
    return figure


def render_sweep_html(report: SweepReport) -> str:
    # Cells within 24 characters as in a backtest's report: a long path or a failure's
    # reason is cut, whole in the cell's tooltip (and in --json-out).
    table = html_table(COLUMNS, (cell.row() for cell in report.cells))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    title = f"keeper backtest sweep: {len(report.cells)} backtests"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin-bottom: 2em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: left; white-space: nowrap; }}
img {{ display: block; margin: 1em 0; max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{table}
<ul>{notes}</ul>
<img alt="capture and PnL per parameter set"
 src="data:image/png;base64,{png_base64(plot_sweep(report))}">
<p>Every backtest's full report is in <code>--json-out</code>.</p>
</body></html>
"""


def write_sweep_html(report: SweepReport, path: Path) -> None:
    try:
        path.write_text(render_sweep_html(report))
    except OSError as exc:
        raise InputFileError(f"{path}: cannot write the sweep's report ({exc.strerror})"
                             ) from None

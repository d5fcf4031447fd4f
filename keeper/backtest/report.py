"""Rendering a `BacktestReport`: the progress bar, the console summary, and the HTML report.

The HTML report is one self-contained file: the figures are drawn with matplotlib's Agg
backend (no display needed) and embedded as base64 PNGs, next to the summary and the
tables of liquidations and opportunities. `--json` is `BacktestReport.to_json()`.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from keeper.backtest.model import BacktestReport, Liquidation
from keeper.errors import InputFileError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

GWEI = 10**9
ETH = 10**18


class ReplayProgress:
    """A rich progress bar for a replay, with blocks/s and the ETA.

    Call it as `progress(done, total)` (blocks) or `progress(done, total, blocks)` when
    the bar counts something else (price-path steps) and `blocks` were replayed so far.
    """

    def __init__(self, console: Console, unit: str = "blocks") -> None:
        self.unit = unit
        self._started = time.monotonic()
        self._bar = Progress(
            TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console,
            transient=True,
        )
        self._task = self._bar.add_task("replay", total=None, rate="")

    def __enter__(self) -> ReplayProgress:
        self._started = time.monotonic()
        self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._bar.stop()

    def __call__(self, done: int, total: int, blocks: int | None = None) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        replayed = done if blocks is None else blocks
        self._bar.update(self._task, completed=done, total=total,
                         rate=f"{replayed / elapsed:,.1f} blocks/s")


# ---------------------------------------------------------------------------------- console


def _wei(amount: int, unit: int = ETH) -> str:
    return f"{amount / unit:,.6f}"


def summary_table(report: BacktestReport) -> Table:
    """The headline figures of a backtest."""
    table = Table(title=f"backtest ({report.mode}): blocks {report.from_block}-{report.to_block}",
                  show_header=False)
    capture = report.capture_rate
    taken = sum(o.taken_by == "keeper" for o in report.opportunities)
    latencies = [o.latency_blocks for o in report.opportunities if o.latency_blocks is not None]
    rows = [
        ("blocks replayed", f"{report.blocks_replayed} in {report.seconds:.1f} s "
                            f"({report.blocks_per_second:,.1f} blocks/s)"),
        ("opportunities", f"{len(report.opportunities)} ({taken} taken by the keeper)"),
        ("keeper liquidations", str(len(report.keeper))),
        ("keeper net profit", f"{report.keeper_net_profit:,.6f} {report.quote_symbol}"),
        ("available net profit", f"{report.available_net_profit:,.6f} {report.quote_symbol}"),
        ("capture rate", "-" if capture is None else f"{capture:.1%}"),
        ("median latency", "-" if not latencies
         else f"{sorted(latencies)[len(latencies) // 2]} blocks"),
        ("gas spent", f"{_wei(report.gas_spent_wei)} ETH"),
        ("historical liquidations", str(len(report.historical))),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def liquidators_table(report: BacktestReport) -> Table:
    """Keeper vs historical liquidators: count and profit each."""
    table = Table(title="liquidators")
    for column in ("liquidator", "liquidations", f"profit ({report.quote_symbol})"):
        table.add_column(column)
    for name, (count, profit) in _by_liquidator(report).items():
        table.add_row(name, str(count), f"{profit:,.6f}")
    return table


def missed_table(report: BacktestReport) -> Table:
    """Why the opportunities the keeper did not take were missed."""
    table = Table(title="missed opportunities by reason")
    table.add_column("reason")
    table.add_column("count")
    reasons = Counter(o.missed_because or "taken by another liquidator"
                      for o in report.opportunities if o.taken_by != "keeper")
    for reason, count in reasons.most_common():
        table.add_row(reason, str(count))
    return table


def print_summary(console: Console, report: BacktestReport) -> None:
    console.print(summary_table(report))
    console.print(liquidators_table(report))
    if any(o.taken_by != "keeper" for o in report.opportunities):
        console.print(missed_table(report))
    for note in report.notes:
        console.print(f"[dim]note: {note}[/dim]")


def _by_liquidator(report: BacktestReport) -> dict[str, tuple[int, float]]:
    out: dict[str, tuple[int, float]] = {"keeper": (len(report.keeper), report.keeper_net_profit)}
    for liquidation in report.historical:
        count, profit = out.get(liquidation.liquidator, (0, 0.0))
        out[liquidation.liquidator] = (count + 1, profit + liquidation.profit_quote)
    return out


# ------------------------------------------------------------------------------------ plots


def new_figure(width: float = 9, height: float = 3.6) -> Figure:
    """A matplotlib figure on the Agg backend (no display needed)."""
    import matplotlib  # noqa: PLC0415 (slow import, needed only for the HTML report)

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # noqa: PLC0415

    return Figure(figsize=(width, height), layout="constrained")


def png_base64(figure: Figure) -> str:
    """The figure as a base64 PNG, for an <img src="data:image/png;base64,...">."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode()


def plot_prices(report: BacktestReport) -> Figure:
    figure = new_figure()
    axes = figure.subplots()
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for sample in report.prices:
        series[sample.asset].append((sample.block, sample.price))
    for asset, points in sorted(series.items()):
        first = points[0][1]
        axes.plot([b for b, _ in points], [100 * p / first for _, p in points],
                  label=f"{asset} (start {first:,.2f})")
    axes.set(title="price path (% of the first price)", xlabel="block", ylabel="%")
    if series:
        axes.legend()
    return figure


def plot_health(report: BacktestReport) -> Figure:
    figure = new_figure()
    axes = figure.subplots()
    samples = [h for h in report.health if h.quantiles]
    blocks = [h.block for h in samples]

    def line(q: float) -> list[float]:
        return [min(h.quantiles.get(q, float("nan")), 3.0) for h in samples]

    if samples:
        axes.fill_between(blocks, line(0.05), line(0.95), alpha=0.2, label="5-95%")
        axes.fill_between(blocks, line(0.25), line(0.75), alpha=0.35, label="25-75%")
        axes.plot(blocks, line(0.5), label="median")
        axes.axhline(1.0, color="red", linewidth=0.8)
        unhealthy = axes.twinx()
        unhealthy.plot(blocks, [h.below_one for h in samples], color="black", linewidth=0.8,
                       linestyle="--", label="HF < 1")
        unhealthy.set_ylabel("positions with HF < 1")
        axes.legend(loc="lower left")
    axes.set(title="health factors of tracked positions (capped at 3)", xlabel="block",
             ylabel="health factor")
    return figure


def _sources(report: BacktestReport) -> list[tuple[str, list[Liquidation]]]:
    """The keeper's and the historical liquidations, each when there are any."""
    both = (("keeper", report.keeper), ("historical", report.historical))
    return [(label, items) for label, items in both if items]


def _with_legend(figure: Figure, report: BacktestReport) -> Figure:
    if _sources(report):
        figure.axes[0].legend()
    return figure


def plot_liquidations(report: BacktestReport) -> Figure:
    figure = new_figure()
    axes = figure.subplots()
    for label, items in _sources(report):
        counts = Counter(x.block for x in items)
        axes.bar(list(counts), list(counts.values()), label=label, alpha=0.7)
    axes.set(title="liquidations by block", xlabel="block", ylabel="liquidations")
    return _with_legend(figure, report)


def plot_pnl(report: BacktestReport) -> Figure:
    figure = new_figure()
    axes = figure.subplots()

    def cumulative(items: list[Liquidation]) -> tuple[list[int], list[float]]:
        total, blocks, values = 0.0, [], []
        for item in sorted(items, key=lambda x: x.block):
            total += item.profit_quote
            blocks.append(item.block)
            values.append(total)
        return blocks, values

    for label, items in _sources(report):
        axes.step(*cumulative(items), where="post", label=label)
    axes.set(title=f"cumulative net profit ({report.quote_symbol})", xlabel="block",
             ylabel=report.quote_symbol)
    return _with_legend(figure, report)


def plot_liquidators(report: BacktestReport) -> Figure:
    figure = new_figure()
    axes = figure.subplots()
    rows = _by_liquidator(report)
    names = [n if n == "keeper" else f"{n[:8]}…" for n in rows]
    axes.bar(names, [profit for _, profit in rows.values()])
    axes.set(title=f"keeper vs historical liquidators (net profit, {report.quote_symbol})",
             ylabel=report.quote_symbol)
    return figure


FIGURES = (plot_prices, plot_health, plot_liquidations, plot_pnl, plot_liquidators)


# ------------------------------------------------------------------------------------- html


def _rows(cells: Iterator[tuple[object, ...]]) -> str:
    return "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
        for row in cells
    )


def html_table(headers: tuple[str, ...], cells: Iterator[tuple[object, ...]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{_rows(cells)}</tbody></table>"


def render_html(report: BacktestReport) -> str:
    """The whole report as one HTML document (figures inline)."""
    summary = summary_table(report)
    figures = "".join(
        f'<img alt="{f.__name__}" src="data:image/png;base64,{png_base64(f(report))}">'
        for f in FIGURES
    )
    headline = html_table(("figure", "value"), (
        (str(label), str(value)) for label, value in zip(
            summary.columns[0].cells, summary.columns[1].cells, strict=True)
    ))
    liquidations = html_table(
        ("block", "tx", "liquidator", "protocol", "account", "collateral", "debt", "repaid",
         "seized", f"profit ({report.quote_symbol})", "gas (ETH)"),
        ((x.block, x.tx, "keeper" if x.by_keeper else x.liquidator, x.protocol, x.account,
          x.collateral, x.debt, x.repaid, x.seized, f"{x.profit_quote:.6f}",
          _wei(x.gas_wei)) for x in sorted([*report.keeper, *report.historical],
                                          key=lambda x: (x.block, x.tx))),
    )
    opportunities = html_table(
        ("first block", "protocol", "account", "collateral", "debt",
         f"profit ({report.quote_symbol})", "taken by", "latency (blocks)", "missed because"),
        ((o.first_block, o.protocol, o.account, o.collateral, o.debt, f"{o.profit_quote:.6f}",
          o.taken_by or "-", "-" if o.latency_blocks is None else o.latency_blocks,
          o.missed_because or "-") for o in report.opportunities),
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>keeper backtest {report.mode}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin-bottom: 2em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: left; }}
img {{ display: block; margin: 1em 0; max-width: 100%; }}
</style></head><body>
<h1>keeper backtest: {html.escape(report.mode)}, chain {report.chain_id}</h1>
{headline}
<ul>{notes}</ul>
{figures}
<h2>liquidations</h2>
{liquidations}
<h2>opportunities</h2>
{opportunities}
</body></html>
"""


def write_html(report: BacktestReport, path: Path) -> None:
    """Write the HTML report; a path that cannot be written is one clear error."""
    document = render_html(report)
    try:
        path.write_text(document)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot write the HTML report ({exc.strerror})") from None


@contextmanager
def timed() -> Iterator[list[float]]:
    """`with timed() as t:` ... `t[0]` is the seconds the block took."""
    out = [0.0]
    started = time.monotonic()
    try:
        yield out
    finally:
        out[0] = time.monotonic() - started

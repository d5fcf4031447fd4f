"""Rendering a `BacktestReport`: the progress bar, the console summary, and the HTML report.

The HTML report is one self-contained file: the figures (`keeper.backtest.figures`, drawn
with matplotlib's Agg backend, no display needed) are embedded as base64 PNGs, next to the
summary and the tables of liquidations and opportunities. `--json` is
`BacktestReport.to_json()`.
"""

from __future__ import annotations

import html
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from keeper.backtest.figures import (
    FIGURES,
    by_liquidator,
    liquidator_usd,
    png_base64,
    span,
    usd_of,
)
from keeper.backtest.model import BacktestReport
from keeper.backtest.units import amount, cell, raw_amount, short, usd
from keeper.errors import InputFileError

GWEI = 10**9
ETH = 10**18
SENT = ("confirmed", "reverted", "lost")  # outcomes whose transaction was signed and sent


class ReplayProgress:
    """Progress of a replay: a rich bar on a terminal, a plain line every tenth otherwise.

    Call it as `progress(done, total)` (blocks) or `progress(done, total, blocks)` when
    the bar counts something else (price-path steps, `unit`) and `blocks` were replayed so
    far; the rate is in that unit per second.
    """

    def __init__(self, console: Console, unit: str = "blocks") -> None:
        self.unit = unit
        self.console = console
        self._started = time.monotonic()
        self._tty = console.is_terminal
        self._told = -1  # the last tenth reported without a terminal
        self._bar = Progress(
            TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console,
            transient=True, disable=not self._tty,
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
        rate = f"{done / elapsed:,.1f} {self.unit}/s"
        if blocks is not None and self.unit != "blocks":
            rate += f", {_blocks(blocks)}"
        self._bar.update(self._task, completed=done, total=total, rate=rate)
        tenth = done * 10 // max(total, 1)
        if not self._tty and (tenth > self._told or done == total):
            self._told = tenth
            print(f"replayed {done}/{total} {self.unit} ({rate}) in {elapsed:.1f} s",
                  file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- console


def _eth(wei: int) -> str:
    return amount(wei / ETH, "ETH")


def _blocks(count: int) -> str:
    return f"{count:,} block" if count == 1 else f"{count:,} blocks"


def reconciliation(report: BacktestReport) -> list[str]:
    """How the opportunities, the liquidations and the transactions add up, in words."""
    taken = [o for o in report.opportunities if o.taken_by == "keeper"]
    missed = [o for o in report.opportunities if o.taken_by != "keeper"]
    reasons = Counter(o.missed_because or f"taken by {o.taken_by}" for o in missed)
    in_taken = sum(max(o.liquidations, 1) for o in taken)
    lines = [
        f"{len(report.opportunities)} opportunities (a position liquidatable, until a "
        f"liquidation of it or the end) = {len(taken)} taken by the keeper + "
        f"{len(missed)} not"
        + (f" ({', '.join(f'{n} {r}' for r, n in reasons.most_common())})" if missed else ""),
        f"the {len(taken)} taken hold the keeper's {in_taken} liquidations"
        + ("" if in_taken == len(report.keeper) else
           f" ({len(report.keeper)} in the chain's receipts)")
        + "; latency counts the blocks from the first block a position was liquidatable "
        "to the keeper's liquidation of it",
    ]
    if report.attempts:
        sent = sum(n for status, n in report.attempts.items() if status in SENT)
        lines.append(
            f"{sum(report.attempts.values())} liquidations attempted: "
            + ", ".join(f"{n} {status}" for status, n in report.attempts.items())
            + f"; {sent} transactions sent (confirmed, reverted or lost), the rest never "
            "signed")
    return lines


def summary_table(report: BacktestReport) -> Table:
    """The headline figures of a backtest."""
    positions = max((h.positions for h in report.health), default=0)
    table = Table(title=f"backtest ({report.mode}): blocks {report.from_block}-"
                        f"{report.to_block}, {positions} positions with debt",
                  show_header=False)
    capture = report.capture_rate
    taken = [o for o in report.opportunities if o.taken_by == "keeper"]
    missed = [o for o in report.opportunities if o.taken_by is None]
    keeper = [(x.block, x.profit_quote) for x in report.keeper]
    latencies = sorted(o.latency_blocks for o in taken if o.latency_blocks is not None)
    keeper_usd = usd_of(report, keeper)
    missed_usd = usd_of(report, ((o.valued_at or o.first_block, max(o.profit_quote, 0))
                                  for o in missed))
    quote = report.quote_symbol
    # Every value fits a 24-character cell (the HTML report's tables).
    rows = [
        ("blocks", f"{report.from_block}-{report.to_block}"),
        ("replayed", f"{report.blocks_replayed} blocks in {report.seconds:.1f} s"),
        ("opportunities", str(len(report.opportunities))),
        ("taken by the keeper", str(len(taken))),
        ("not taken", str(len(report.opportunities) - len(taken))),
        ("keeper liquidations", str(len(report.keeper))),
        ("keeper net profit", amount(report.keeper_net_profit, quote)),
        ("keeper net profit (USD)", usd(keeper_usd)),
        ("missed value", amount(report.missed_net_profit, quote)),
        ("missed value (USD)", usd(missed_usd)),
        ("available value", amount(report.available_net_profit, quote)),
        ("capture rate", "-" if capture is None else f"{capture:.1%}"),
        ("median latency", "-" if not latencies
         else _blocks(latencies[len(latencies) // 2])),
        ("max latency", "-" if not latencies else _blocks(latencies[-1])),
        ("gas spent", _eth(report.gas_spent_wei)),
        ("minimum profit", amount(report.min_profit_quote, quote)),
        ("historical liquidations", str(len(report.historical))),
    ]
    if report.capital_usd is not None:
        rows.append(("capital per asset", usd(report.capital_usd)))
    for name, value in rows:
        table.add_row(name, value)
    return table


def liquidators_table(report: BacktestReport) -> Table:
    """Keeper vs historical liquidators: count and profit each."""
    table = Table(title="liquidators")
    for column in ("liquidator", "liquidations", f"net profit ({report.quote_symbol})",
                   "net profit (USD)"):
        table.add_column(column)
    for name, (count, profit) in by_liquidator(report).items():
        table.add_row(short(name), str(count), amount(profit), usd(liquidator_usd(report, name)))
    return table


def missed_table(report: BacktestReport) -> Table:
    """Why the opportunities the keeper did not take were missed, and what they were worth."""
    table = Table(title="missed opportunities by reason")
    for column in ("reason", "count", f"value ({report.quote_symbol})", "value (USD)"):
        table.add_column(column)
    for row in _missed(report):
        table.add_row(*row)
    return table


def _missed(report: BacktestReport) -> list[tuple[str, str, str, str]]:
    """(reason, count, value, value in USD) of the missed opportunities, most valuable
    first; each valued at the oracle's prices of the block it was valued at."""
    rows: dict[str, list[tuple[int, float]]] = {}
    for o in report.opportunities:
        if o.taken_by == "keeper":
            continue
        reason = cell(o.missed_because or f"taken by {o.taken_by}")
        rows.setdefault(reason, []).append((o.valued_at or o.first_block,
                                            max(o.profit_quote, 0.0)))
    ordered = sorted(rows.items(),
                     key=lambda item: (-sum(v for _, v in item[1]), -len(item[1]), item[0]))
    return [(reason, str(len(items)), amount(sum(v for _, v in items)),
             usd(usd_of(report, items))) for reason, items in ordered]


def print_summary(console: Console, report: BacktestReport) -> None:
    console.print(summary_table(report))
    console.print(liquidators_table(report))
    if any(o.taken_by != "keeper" for o in report.opportunities):
        console.print(missed_table(report))
    for line in reconciliation(report):
        console.print(line)
    for note in report.notes:
        console.print(f"[dim]note: {note}[/dim]")


# ------------------------------------------------------------------------------------- html


def _rows(cells: Iterable[tuple[object, ...]]) -> str:
    return "".join(
        "<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in cells
    )


def _td(value: object) -> str:
    text, shown = str(value), cell(value)
    title = f' title="{html.escape(text)}"' if shown != text else ""
    return f"<td{title}>{html.escape(shown)}</td>"


def html_table(headers: tuple[str, ...], cells: Iterable[tuple[object, ...]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{_rows(cells)}</tbody></table>"


def _token(report: BacktestReport, raw: int, symbol: str) -> str:
    decimals = report.decimals.get(symbol)
    return raw_amount(raw, decimals, symbol) if decimals is not None else f"{raw} (raw)"


def render_html(report: BacktestReport) -> str:
    """The whole report as one HTML document (figures inline)."""
    summary = summary_table(report)
    figures = "".join(
        f'<img alt="{f.__name__}" src="data:image/png;base64,{png_base64(f(report))}">'
        for f in FIGURES
    )
    headline = "<table><tbody>" + "".join(
        f"<tr><th>{html.escape(str(label))}</th><td>{html.escape(str(value))}</td></tr>"
        for label, value in zip(summary.columns[0].cells, summary.columns[1].cells, strict=True)
    ) + "</tbody></table>"
    quote = report.quote_symbol
    liquidations = html_table(
        ("block", "tx", "liquidator", "protocol", "account", "repaid", "seized",
         f"profit ({quote})", "profit (USD)", "gas (ETH)"),
        ((x.block, x.tx, "keeper" if x.by_keeper else x.liquidator, x.protocol, x.account,
          _token(report, x.repaid, x.debt), _token(report, x.seized, x.collateral),
          amount(x.profit_quote), _usd_at(report, x.block, x.profit_quote),
          amount(x.gas_wei / ETH))
         for x in sorted([*report.keeper, *report.historical], key=lambda x: (x.block, x.tx))),
    )
    opportunities = html_table(
        ("first block", "last block", "protocol", "account", "pair", f"value ({quote})",
         "value (USD)", "taken by", "latency", "why not taken"),
        ((o.first_block, "-" if o.last_block is None else o.last_block, o.protocol, o.account,
          f"{o.collateral}/{o.debt}", amount(o.profit_quote),
          _usd_at(report, o.valued_at or o.first_block, o.profit_quote), o.taken_by or "-",
          "-" if o.latency_blocks is None else f"{o.latency_blocks} blocks",
          o.missed_because or "-") for o in report.opportunities),
    )
    missed = html_table(("reason", "count", f"value ({quote})", "value (USD)"),
                        _missed(report))
    # One entry per reason: the keeper's own attempt and the replay's valuation may both
    # explain a `no-capital`, each in its words.
    meanings: dict[str, list[str]] = {}
    for o in report.opportunities:
        if o.missed_because and o.missed_detail:
            said = meanings.setdefault(o.missed_because, [])
            if o.missed_detail not in said:
                said.append(o.missed_detail)
    legend = "".join(
        f"<li><b>{html.escape(r)}</b>: {html.escape(d[0])}</li>" if len(d) == 1 else
        f"<li><b>{html.escape(r)}</b>, either:<ul>"
        + "".join(f"<li>{html.escape(x)}</li>" for x in d) + "</ul></li>"
        for r, d in sorted(meanings.items()))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in [*reconciliation(report),
                                                            *report.notes])
    positions = max((h.positions for h in report.health), default=0)
    title = (f"keeper backtest ({report.mode}), chain {report.chain_id}: {span(report)}, "
             f"{positions} positions with debt")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin-bottom: 2em;
         display: block; max-width: 100%; overflow-x: auto; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: left; white-space: nowrap; }}
img {{ display: block; margin: 1em 0; max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{headline}
<ul>{notes}</ul>
{figures}
<h2>missed opportunities by reason</h2>
{missed}
<ul>{legend}</ul>
<h2>liquidations</h2>
{liquidations}
<h2>opportunities</h2>
{opportunities}
<p>Exact amounts (raw token units, wei) are in <code>keeper backtest --json</code>.</p>
</body></html>
"""


def _usd_at(report: BacktestReport, block: int, value: float) -> str:
    price = report.usd(report.quote_symbol, block)
    return usd(None if price is None else value * price)


def check_writable(path: Path, what: str) -> None:
    """Before the work, not after it: an output that cannot be written is one line now."""
    folder = path.parent if str(path.parent) else Path(".")
    # Opened, not asked: permission bits say nothing to root, nor of a read-only mount or a
    # name too long, which only the write at the end would have met.
    try:
        if path.is_dir():
            raise InputFileError(f"{path}: is a folder; give a file for {what}")
        if not folder.is_dir():
            raise InputFileError(f"{path}: folder {folder} does not exist (for {what})")
        existed = path.exists()
        with path.open("a"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        raise InputFileError(f"{short_path(path)}: cannot write {what} there "
                             f"({exc.strerror})") from None


def short_path(path: Path) -> str:
    """A path for a one-line error: its ends when it is longer than a line."""
    text = str(path)
    return text if len(text) <= 60 else f"{text[:28]}…{text[-28:]}"


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

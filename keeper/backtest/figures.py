"""The backtest report's figures: matplotlib on its Agg backend (no display needed), one
function per figure, each of a `BacktestReport`; `keeper.backtest.report` embeds them in the
HTML report as base64 PNGs. Also the sums both the figures and the console tables show.

matplotlib is imported inside the functions: it is slow to import and only the HTML
report (and `keeper risk --plot`) needs it.
"""

from __future__ import annotations

import base64
import io
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from keeper.backtest.model import BacktestReport, Liquidation
from keeper.backtest.units import amount, short, usd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def usd_of(report: BacktestReport, items: Iterable[tuple[int, float]]) -> float | None:
    """The USD value of quote amounts, each at its block's oracle price."""
    total = 0.0
    for block, value in items:
        price = report.usd(report.quote_symbol, block)
        if price is None:
            return None
        total += value * price
    return total


def by_liquidator(report: BacktestReport) -> dict[str, tuple[int, float]]:
    """(liquidations, net profit) of the keeper and of each historical liquidator."""
    out: dict[str, tuple[int, float]] = {"keeper": (len(report.keeper), report.keeper_net_profit)}
    for liquidation in report.historical:
        count, profit = out.get(liquidation.liquidator, (0, 0.0))
        out[liquidation.liquidator] = (count + 1, profit + liquidation.profit_quote)
    return out


def liquidator_usd(report: BacktestReport, name: str) -> float | None:
    """The net profit of one of `by_liquidator`'s names in USD, each liquidation at its
    block's oracle price."""
    mine = report.keeper if name == "keeper" else [
        x for x in report.historical if x.liquidator == name]
    return usd_of(report, ((x.block, x.profit_quote) for x in mine))


def new_figure(width: float = 9, height: float = 3.6, *, laid_out: bool = True) -> Figure:
    """A matplotlib figure on the Agg backend (no display needed), laid out by matplotlib's
    constrained layout unless `laid_out` is False (the caller places its axes)."""
    import matplotlib  # noqa: PLC0415 (slow import, needed only for the HTML report)

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # noqa: PLC0415

    return Figure(figsize=(width, height), layout="constrained" if laid_out else None)


# The plots over blocks share their margins, in inches, instead of each laying itself out:
# then their axes start and end at the same pixel, and a block sits at the same place in
# every plot (the health plot's right-hand axis made its box narrower than the others').
BLOCKS_WIDTH = 9.0
MARGINS = {"left": 0.85, "right": 0.85, "top": 0.55, "bottom": 0.5}


def blocks_figure(height: float = 3.6, below: float = 0.0) -> Figure:
    """A figure for a plot over blocks, its axes box where every other one's is; `below`
    inches are kept under the x-axis (for a legend)."""
    figure = new_figure(BLOCKS_WIDTH, height, laid_out=False)
    figure.subplots_adjust(
        left=MARGINS["left"] / BLOCKS_WIDTH, right=1 - MARGINS["right"] / BLOCKS_WIDTH,
        top=1 - MARGINS["top"] / height, bottom=(MARGINS["bottom"] + below) / height)
    return figure


def MaxNLocator(*, integer: bool) -> Any:  # noqa: N802 (matplotlib's name, imported late)
    from matplotlib.ticker import MaxNLocator as Locator  # noqa: PLC0415

    return Locator(integer=integer)


def StrMethodFormatter(spec: str) -> Any:  # noqa: N802
    from matplotlib.ticker import StrMethodFormatter as Formatter  # noqa: PLC0415

    return Formatter(spec)


def png_base64(figure: Figure) -> str:
    """The figure as a base64 PNG, for an <img src="data:image/png;base64,...">."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode()


def span(report: BacktestReport) -> str:
    """The replayed range, as every title names it."""
    return f"blocks {report.from_block}-{report.to_block}"


def scope(report: BacktestReport) -> str:
    """The replayed range and the positions with debt in it (the most at any sample)."""
    positions = max((h.positions for h in report.health), default=0)
    return f"{span(report)}, {positions} position{'' if positions == 1 else 's'} with debt"


def _blocks_axis(axes: Axes, report: BacktestReport) -> None:
    """Every plot over blocks spans the replayed range, so their x-axes line up."""
    low, high = report.from_block, max(report.to_block, report.from_block + 1)
    axes.set_xlim(low, high)
    axes.set_xlabel("block")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.xaxis.set_major_formatter(StrMethodFormatter("{x:.0f}"))


def _counts_axis(axes: Axes) -> None:
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(bottom=0)


def plot_prices(report: BacktestReport) -> Figure:
    figure = blocks_figure()
    axes = figure.subplots()
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for sample in report.prices:
        series[sample.asset].append((sample.block, sample.price))
    moved = {a: p for a, p in series.items() if len({v for _, v in p}) > 1}
    for asset, points in sorted(moved.items()):
        first = points[0][1]
        axes.plot([b for b, _ in points], [100 * p / first for _, p in points],
                  label=f"{asset} (start {usd(first)})")
    axes.set(title=f"oracle prices, % of the first ({scope(report)})",
             ylabel="% of the first price")
    _blocks_axis(axes, report)
    if moved:
        axes.legend()
    return figure


def plot_health(report: BacktestReport) -> Figure:
    figure = blocks_figure(height=4.4, below=0.6)
    axes = figure.subplots()
    samples = [h for h in report.health if h.quantiles]
    blocks = [h.block for h in samples]
    positions = max((h.positions for h in samples), default=0)

    def line(q: float) -> list[float]:
        return [min(h.quantiles.get(q, float("nan")), 3.0) for h in samples]

    unhealthy = axes.twinx()
    if samples:
        axes.fill_between(blocks, line(0.05), line(0.95), alpha=0.2, label="HF 5-95 %")
        axes.fill_between(blocks, line(0.25), line(0.75), alpha=0.35, label="HF 25-75 %")
        axes.plot(blocks, line(0.5), label="HF median")
        axes.axhline(1.0, color="red", linewidth=0.8, label="HF = 1 (liquidatable below)")
        unhealthy.step(blocks, [h.below_one for h in samples], where="post", color="black",
                       linewidth=0.8, linestyle="--", label="positions with HF < 1 (right)")
        handles, labels = axes.get_legend_handles_labels()
        more, more_labels = unhealthy.get_legend_handles_labels()
        # Below the plot, not over the bands: every series of both axes in one legend.
        figure.legend(handles + more, labels + more_labels, loc="lower center",
                      ncols=3, fontsize="small")
    unhealthy.set_ylabel("positions with HF < 1")
    _counts_axis(unhealthy)
    axes.set(title=f"health factors of {positions} positions with debt (capped at 3; "
                   f"{span(report)})", ylabel="health factor")
    _blocks_axis(axes, report)
    return figure


def _sources(report: BacktestReport) -> list[tuple[str, list[Liquidation]]]:
    """The keeper's and the historical liquidations, each when there are any."""
    both = (("keeper", report.keeper), ("historical", report.historical))
    return [(label, items) for label, items in both if items]


def _with_legend(figure: Figure) -> Figure:
    """A legend when the plot has any labelled series (an empty legend is a warning)."""
    axes = figure.axes[0]
    if axes.get_legend_handles_labels()[0]:
        axes.legend()
    return figure


def plot_liquidations(report: BacktestReport) -> Figure:
    figure = blocks_figure()
    axes = figure.subplots()
    for label, items in _sources(report):
        counts = Counter(x.block for x in items)
        axes.bar(list(counts), list(counts.values()), label=label, alpha=0.7, width=1.0)
    total = len(report.keeper) + len(report.historical)
    liquidated = len({(x.protocol, x.account.lower())
                      for x in [*report.keeper, *report.historical]})
    positions = max((h.positions for h in report.health), default=0)
    axes.set(title=f"liquidations by block: {total}, of {liquidated} "
                   f"position{'' if liquidated == 1 else 's'} ({positions} with debt; "
                   f"{span(report)})",
             ylabel="liquidations per block")
    _blocks_axis(axes, report)
    _counts_axis(axes)
    return _with_legend(figure)


def plot_pnl(report: BacktestReport) -> Figure:
    figure = blocks_figure()
    axes = figure.subplots()

    def cumulative(items: Iterable[tuple[int, float]]) -> tuple[list[int], list[float]]:
        total, blocks, values = 0.0, [report.from_block], [0.0]
        for block, value in sorted(items):
            total += value
            blocks.append(block)
            values.append(total)
        blocks.append(report.to_block)
        values.append(total)
        return blocks, values

    for label, items in _sources(report):
        axes.step(*cumulative((x.block, x.profit_quote) for x in items), where="post",
                  label=label)
    missed = [(o.valued_at or o.first_block, o.profit_quote) for o in report.opportunities
              if o.taken_by is None and o.profit_quote > 0]
    if missed:
        # What was there to take: the keeper's profit plus each missed opportunity at its
        # value, when it was valued; the gap to the keeper's line is the capture rate.
        axes.step(*cumulative([*((x.block, x.profit_quote) for x in report.keeper), *missed]),
                  where="post", linestyle="--", color="grey",
                  label="available (keeper + missed)")
    dollars = usd_of(report, [(x.block, x.profit_quote) for x in report.keeper])
    worth = "" if dollars is None else f", {usd(dollars)}"
    capture = "" if report.capture_rate is None else f"; capture {report.capture_rate:.1%}"
    # Two lines: on one, a large run's figures ran past the plot's edge.
    axes.set(title=f"cumulative net profit ({scope(report)})\nthe keeper: "
                   f"{amount(report.keeper_net_profit, report.quote_symbol)}{worth}{capture}",
             ylabel=f"net profit ({report.quote_symbol})")
    _blocks_axis(axes, report)
    return _with_legend(figure)


def plot_liquidators(report: BacktestReport) -> Figure:
    figure = new_figure()
    axes = figure.subplots()
    rows = by_liquidator(report)
    names = [short(n) for n in rows]
    bars = axes.bar(names, [profit for _, profit in rows.values()])
    # Each bar says its count and value, in the quote token and in USD at the oracle's prices.
    labels = []
    for name, (count, profit) in rows.items():
        dollars = liquidator_usd(report, name)
        labels.append(f"{count} liquidation{'' if count == 1 else 's'}: "
                      f"{amount(profit, report.quote_symbol)}"
                      + ("" if dollars is None else f", {usd(dollars)}"))
    axes.bar_label(bars, labels, fontsize="small")
    axes.margins(y=0.15)  # room for the labels above the tallest bar
    axes.set(title=f"net profit by liquidator ({scope(report)})", xlabel="liquidator",
             ylabel=f"net profit ({report.quote_symbol})")
    return figure


FIGURES = (plot_prices, plot_health, plot_liquidations, plot_pnl, plot_liquidators)

"""`keeper risk`: the liquidation curve of the current book, per asset and price drop.

For each asset and each drop (0, -5, ..., -50 % by default), every strategy that offers
`liquidation_curve(block, drops)` re-values its whole book with that one price moved
(exact integer math, the protocol's own: see strategies/*/risk.py) and reports how many
positions become liquidatable, the collateral they hold, and the bad debt (debt above
collateral value) the protocol would be left with. It tells an operator how much capital
and DEX depth the next move needs.

The book comes from the configured chain (`--config`: live, or a fork's RPC) or from the
cached devnet (`--devnet`, started and stopped here). Output: tables, `--json`, and
`--plot PATH` (a .png, or a self-contained .html with the tables).
"""

from __future__ import annotations

import asyncio
import html
import io
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from rich.console import Console
from rich.table import Table

from keeper.backtest.units import compact
from keeper.chain.follower import block_ref
from keeper.chain.http import HttpRpc
from keeper.cli import AppState
from keeper.errors import InputFileError
from keeper.liquidation_curve import BASE_CURRENCY, DEFAULT_DROPS, CurvePoint
from keeper.strategy import Capabilities, Strategy
from keeper.types import BlockRef

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_SYMBOL = "0x95d89b41"  # symbol()
_DECIMALS = "0x313ce567"  # decimals()


@dataclass(frozen=True)
class RiskView:
    """The curve of every strategy at one block, with the tokens' symbols and decimals."""

    block: int
    points: list[CurvePoint]
    symbols: dict[str, str]
    decimals: dict[str, int]

    def name(self, token: str) -> str:
        return "USD" if token == BASE_CURRENCY else self.symbols.get(token, token[:10])

    def amount(self, point: CurvePoint, value: int) -> float:
        """`value` of the point's unit in whole units (USD, or tokens)."""
        decimals = point.decimals
        if decimals is None:
            decimals = self.decimals.get(point.unit, 0)
        return value / float(10**decimals)

    def groups(self) -> list[tuple[str, str]]:
        """(protocol, unit) pairs, in a stable order: one column group (or line) each."""
        return sorted({(p.protocol, p.unit) for p in self.points})

    def assets(self) -> list[str]:
        return sorted({p.asset for p in self.points}, key=self.name)

    def positions(self, asset: str | None = None) -> int:
        """Positions with debt: each (protocol, unit) book counted once (for `asset`'s
        curve, or the largest count any asset's curve saw)."""
        if asset is None:
            return max((self.positions(a) for a in self.assets()), default=0)
        books = {(p.protocol, p.unit): p.positions for p in self.points if p.asset == asset}
        return sum(books.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "points": [
                {**asdict(p), "asset_symbol": self.name(p.asset), "unit_symbol": self.name(p.unit),
                 "liquidatable_collateral": str(p.liquidatable_collateral),
                 "bad_debt": str(p.bad_debt)}
                for p in self.points
            ],
        }


async def _token_meta(
    chain: HttpRpc, tokens: Sequence[str]
) -> tuple[dict[str, str], dict[str, int]]:
    """symbol() and decimals() of each token, in one batch (a token that lacks them is skipped)."""
    calls = [("eth_call", [{"to": t, "data": d}, "latest"]) for t in tokens
             for d in (_SYMBOL, _DECIMALS)]
    answers = await chain.batch(calls) if calls else []
    symbols: dict[str, str] = {}
    decimals: dict[str, int] = {}
    for token, symbol, digits in zip(tokens, answers[::2], answers[1::2], strict=True):
        try:
            (symbols[token],) = decode(["string"], bytes.fromhex(str(symbol).removeprefix("0x")))
            decimals[token] = int(str(digits), 16)
        except (DecodingError, ValueError):
            continue
    return symbols, decimals


async def curve(chain: HttpRpc, strategies: Sequence[Strategy], head: BlockRef,
                drops: Sequence[int] = DEFAULT_DROPS) -> RiskView:
    """The curve of every synced strategy that offers one, at `head`."""
    points: list[CurvePoint] = []
    for source in Capabilities.of(strategies).curves:
        points += source.liquidation_curve(head, drops)
    tokens = sorted({p.asset for p in points} | {p.unit for p in points} - {BASE_CURRENCY})
    symbols, decimals = await _token_meta(chain, tokens)
    return RiskView(head.number, points, symbols, decimals)


async def devnet_curve(rpc_url: str, strategies: Sequence[Strategy],
                       drops: Sequence[int] = DEFAULT_DROPS) -> RiskView:
    """Sync `strategies` at the head of the chain at `rpc_url`, then draw the curve."""
    chain = await HttpRpc.open(rpc_url)
    try:
        head = block_ref(await chain.call("eth_getBlockByNumber", ["latest", False]))
        for strategy in strategies:
            await strategy.sync(chain, head)
        return await curve(chain, strategies, head, drops)
    finally:
        await chain.aclose()


async def _configured_curve(state: AppState, drops: Sequence[int]) -> RiskView:
    from keeper.run import keeper_from_config  # noqa: PLC0415 (loads the strategy plugins)

    keeper, _ = await keeper_from_config(state.config(), send=False)
    try:
        head = await keeper.sync()
        return await curve(keeper.chain, keeper.engine.strategies, head, drops)
    finally:
        await keeper.aclose()


def _run_devnet(borrowers: int, seed: int, drops: Sequence[int]) -> RiskView:
    from keeper.demo import devnet_strategies  # noqa: PLC0415 (loads the strategy plugins)
    from keeper.devnet.deploy import DevnetSpec, start_devnet  # noqa: PLC0415

    anvil, info, _cached = start_devnet(DevnetSpec(borrowers=borrowers, seed=seed))
    try:
        # Every Aave market the devnet holds (v3.0 and v3.6), each its own curve.
        strategies = devnet_strategies(info, info.accounts.liquidator,
                                       aave_markets=tuple(info.aave_markets()))
        return asyncio.run(devnet_curve(info.rpc_url, strategies, drops))
    finally:
        anvil.stop()


# ----------------------------------------------------------------------------------- output


def tables(view: RiskView) -> list[Table]:
    """One table per asset: a row per (protocol, drop), with the positions liquidatable, the
    collateral they hold and the bad debt, each in its unit ("$13.21M", "21.45M USDC").

    A protocol's rows are a section of their own, not columns: the table stays within an
    80-column console (piped output too) whatever the number of protocols, and no figure is
    cut short. The exact integers are in `--json`.
    """
    out = []
    by_key = {(p.asset, p.drop_pct, p.protocol, p.unit): p for p in view.points}
    drops = sorted({p.drop_pct for p in view.points})
    for asset in view.assets():
        table = Table(title=f"{view.name(asset)} price drop (block {view.block}, "
                            f"{view.positions(asset)} positions with debt)")
        table.add_column("protocol")
        for column in ("drop", "liquidatable", "collateral", "bad debt"):
            table.add_column(column, justify="right")
        groups = [g for g in view.groups() if any((asset, d, *g) in by_key for d in drops)]
        for protocol, unit in groups:
            name = view.name(unit)
            for row, drop in enumerate(drops):
                p = by_key.get((asset, drop, protocol, unit))
                cells = ["-"] * 3 if p is None else [
                    f"{p.liquidatable}/{p.positions}",
                    compact(view.amount(p, p.liquidatable_collateral), name),
                    compact(view.amount(p, p.bad_debt), name),
                ]
                table.add_row(protocol if row == 0 else "", f"-{drop}%", *cells,
                              end_section=row == len(drops) - 1)
        out.append(table)
    return out


def _scale(values: Sequence[float]) -> tuple[float, str]:
    """(divisor, name) that keeps an axis's numbers short: millions, thousands or units."""
    top = max((abs(v) for v in values), default=0.0)
    if top >= 1e6:
        return 1e6, "millions"
    if top >= 1e3:
        return 1e3, "thousands"
    return 1.0, ""


def plot_png(view: RiskView) -> str:
    """The curves as one base64 PNG (`plot_figure`)."""
    from keeper.backtest.figures import png_base64  # noqa: PLC0415 (matplotlib)

    return png_base64(plot_figure(view))


def plot_figure(view: RiskView) -> Figure:
    """A panel per asset, a line per (protocol, unit); the y-axis in millions (or
    thousands) of the one unit its lines share, else of the unit each line's label names."""
    from keeper.backtest.figures import new_figure  # noqa: PLC0415 (matplotlib)

    assets = view.assets()
    columns = 2 if len(assets) > 1 else 1
    rows = (len(assets) + columns - 1) // columns
    figure = new_figure(5.5 * columns, 3.4 * rows + 0.4)
    figure.suptitle(f"liquidation curve at block {view.block}: {view.positions()} positions "
                    "with debt")
    panels = figure.subplots(rows, columns, squeeze=False).flatten()
    series: dict[tuple[str, str, str], list[CurvePoint]] = defaultdict(list)
    for p in view.points:
        series[(p.asset, p.protocol, p.unit)].append(p)
    for axes, asset in zip(panels, assets, strict=False):
        mine = {k: sorted(v, key=lambda p: p.drop_pct) for k, v in sorted(series.items())
                if k[0] == asset}
        divisor, scale = _scale([view.amount(p, v) for points in mine.values() for p in points
                                 for v in (p.liquidatable_collateral, p.bad_debt)])
        units = sorted({view.name(unit) for _a, _p, unit in mine})
        for (_owner, protocol, unit), points in mine.items():
            drops = [-p.drop_pct for p in points]
            label = f"{protocol}, {view.name(unit)}"
            axes.plot(drops, [view.amount(p, p.liquidatable_collateral) / divisor
                              for p in points], marker="o", label=f"{label}: collateral")
            axes.plot(drops, [view.amount(p, p.bad_debt) / divisor for p in points],
                      linestyle="--", label=f"{label}: bad debt")
        unit_text = units[0] if len(units) == 1 else " or ".join(units) + " (see legend)"
        axes.set(title=f"{view.name(asset)} price drop ({view.positions(asset)} positions)",
                 xlabel=f"{view.name(asset)} price change (%)",
                 ylabel=f"{scale} {unit_text}".strip())
        axes.legend(fontsize="x-small")
    for axes in panels[len(assets):]:
        axes.set_axis_off()
    return figure


def write_plot(view: RiskView, path: Path) -> None:
    """A .png of the curves, or an .html page with the plot and the tables (nothing is
    printed: the command prints its tables once, itself)."""
    image = plot_png(view)
    try:
        if path.suffix.lower() == ".png":
            import base64  # noqa: PLC0415

            path.write_bytes(base64.b64decode(image))
            return
        console = Console(file=io.StringIO(), record=True, width=160)
        for table in tables(view):
            console.print(table)
        text = html.escape(console.export_text())
        title = (f"liquidation curve at block {view.block}: {view.positions()} positions "
                 "with debt")
        path.write_text(
            f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><h1>{title}</h1>"
            f"<img alt='liquidation curve' src='data:image/png;base64,{image}'>"
            f"<pre>{text}</pre></body></html>\n")
    except OSError as exc:
        raise InputFileError(f"{path}: cannot write the plot ({exc.strerror})") from None


def _drops(max_drop: int, step: int) -> tuple[int, ...]:
    return tuple(range(0, max_drop + 1, step))


@click.command("risk")
@click.option("--devnet", is_flag=True,
              help="Start the cached devnet and use its book (otherwise: the --config chain).")
@click.option("--borrowers", default=300, show_default=True, type=click.IntRange(1, 2000),
              help="Devnet borrower population.")
@click.option("--seed", default=7, show_default=True, type=int, help="Devnet population seed.")
@click.option("--max-drop", default=50, show_default=True, type=click.IntRange(0, 95),
              help="Largest price drop, in %.")
@click.option("--step", default=5, show_default=True, type=click.IntRange(1, 50),
              help="Drop step, in %.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Draw the curves: PATH.png, or PATH.html with the tables.")
@click.option("--json", "as_json", is_flag=True, help="Print the points as JSON.")
@click.pass_obj
def risk(  # noqa: PLR0917 (click passes every option as an argument)
    state: AppState, devnet: bool, borrowers: int, seed: int, max_drop: int, step: int,
    plot_path: Path | None, as_json: bool,
) -> None:
    """The liquidation curve: collateral liquidatable and bad debt at each price drop."""
    drops = _drops(max_drop, step)
    if plot_path is not None:
        from keeper.backtest.report import check_writable  # noqa: PLC0415

        if plot_path.suffix.lower() not in {".png", ".html", ".htm"}:
            raise InputFileError(f"{plot_path}: --plot writes a .png or an .html file")
        check_writable(plot_path, "the plot")
    if devnet:
        view = _run_devnet(borrowers, seed, drops)
    else:
        view = asyncio.run(_configured_curve(state, drops))
    if plot_path is not None:
        write_plot(view, plot_path)
    if as_json:
        click.echo(json.dumps(view.as_json(), indent=2))
        return
    console = Console()
    for table in tables(view):
        console.print(table)
    if plot_path is not None:
        console.print(f"plot written to {plot_path}")

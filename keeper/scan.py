"""`keeper scan`: sync once at the head, print every tracked position and every ranked
opportunity (nothing is sent), as tables or as JSON."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from keeper.cli import pass_config
from keeper.config import KeeperConfig
from keeper.engine import Engine
from keeper.run import keeper_from_config, quote_decimals
from keeper.types import BlockRef, Opportunity

WIDE = 160  # table width when stdout is not a terminal (rich would use 80)


def position_rows(engine: Engine, block: BlockRef) -> list[dict[str, Any]]:
    """Every tracked position of the strategies that offer `positions(block)`."""
    return [
        {"strategy": row.strategy, "account": row.account,
         "collateral_value": row.collateral_value, "debt_value": row.debt_value,
         "health_factor": row.health_factor}
        for source in engine.capabilities.positions for row in source.positions(block)
    ]


def opportunity_row(opp: Opportunity) -> dict[str, Any]:
    """The fields of a ranked opportunity that `scan` shows."""
    symbols = {"collateral_symbol": opp.candidate.collateral_symbol,
               "debt_symbol": opp.candidate.debt_symbol}
    return {
        "strategy": opp.strategy,
        "account": opp.account,
        "collateral": opp.collateral,
        "debt": opp.debt,
        "repay": opp.debt_to_cover,
        "collateral_received": opp.collateral_received,
        "gross": opp.gross_value,
        "slippage": opp.slippage,
        "gas": opp.gas_cost,
        "net": opp.net_profit,
        "health_factor": opp.health_factor,
        "key": opp.key,
        **{k: v for k, v in symbols.items() if v},
    }


def _jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in row.items()}


@dataclasses.dataclass(frozen=True)
class ScanResult:
    """One scan: the head, the positions and the ranked opportunities."""

    block: int
    quote_decimals: int
    positions: list[dict[str, Any]]
    opportunities: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "positions": [_jsonable(r) for r in self.positions],
            "opportunities": [_jsonable(r) for r in self.opportunities],
        }


async def scan_once(config: KeeperConfig) -> ScanResult:
    """Sync at the current head and evaluate once (nothing is sent)."""
    keeper, _ = await keeper_from_config(config, send=False)
    try:
        head = await keeper.sync()
        opportunities = await keeper.engine.evaluate(head)
        decimals = await quote_decimals(keeper.chain, keeper.engine.quote_token)
        return ScanResult(head.number, decimals, position_rows(keeper.engine, head),
                          [opportunity_row(o) for o in opportunities])
    finally:
        await keeper.aclose()


def _wad(value: Any) -> str:
    if not isinstance(value, int):
        return "-"
    if value >= 2**255:
        return "∞"
    return f"{Decimal(value) / 10**18:.4f}"


def _units(value: int, decimals: int) -> str:
    return f"{Decimal(value) / 10**decimals:.6f}"


def _short(address: Any) -> str:
    text = str(address)
    return f"{text[:8]}…{text[-6:]}" if len(text) == 42 else text


def render_tables(result: ScanResult) -> list[Table]:
    """The positions table and the opportunities table."""
    positions = Table(title=f"positions at block {result.block}")
    for column in ("strategy", "account", "collateral value", "debt value", "health factor"):
        positions.add_column(column, justify="left" if column in {"strategy", "account"}
                             else "right")
    for row in sorted(result.positions, key=lambda r: (r["strategy"], r["account"])):
        positions.add_row(row["strategy"], str(row["account"]), str(row["collateral_value"]),
                          str(row["debt_value"]), _wad(row["health_factor"]))
    q = result.quote_decimals
    opportunities = Table(title="ranked opportunities (values in the quote token)")
    for column in ("strategy", "account", "collateral", "debt", "repay", "gross", "slippage",
                   "gas", "net profit"):
        opportunities.add_column(column)
    for row in result.opportunities:
        opportunities.add_row(
            row["strategy"], _short(row["account"]),
            row.get("collateral_symbol") or _short(row["collateral"]),
            row.get("debt_symbol") or _short(row["debt"]), str(row["repay"]),
            _units(row["gross"], q), _units(row["slippage"], q), _units(row["gas"], q),
            _units(row["net"], q),
        )
    return [positions, opportunities]


@click.command("scan")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@pass_config
def scan(config: KeeperConfig, as_json: bool) -> None:
    """Sync once at the head; print the tracked positions and the ranked opportunities."""
    result = asyncio.run(scan_once(config))
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
        return
    console = Console(width=None if sys.stdout.isatty() else WIDE)
    for table in render_tables(result):
        console.print(table)

"""`keeper scan` and `keeper run`: the engine wired from the config file.

`engine_from_config` builds an `Engine` from a validated `KeeperConfig`: the
first HTTP endpoint (its chain id checked), the Uniswap V2 pairs of
`dex.uniswap_v2_factory`, every enabled `[strategies.<name>]` section created
through its plugin, and, only when sending, the account and an `Executor`
writing to `execution.journal`.

`keeper scan` syncs once at the head and prints every tracked position (from
strategies that offer `positions(block)`) and every ranked opportunity, as a
table or as JSON. `keeper run` is the daemon: it sends in `mode = "live"`,
stops on SIGINT/SIGTERM after the in-flight sends finish and prints a one-line
journal summary. Dry-run (a local fork) is not implemented yet and is refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import click
import structlog
from rich.console import Console
from rich.table import Table

from keeper import plugins
from keeper.chain.http import HttpRpc
from keeper.cli import pass_config
from keeper.config import KeeperConfig
from keeper.dex.uniswap_v2 import PairBook
from keeper.engine import Engine
from keeper.errors import ChainMismatch, ConfigError, KeeperError
from keeper.execution.executor import Executor
from keeper.execution.fees import FeePolicy
from keeper.execution.journal import Journal, JournalSummary
from keeper.ranking import realized_value
from keeper.secrets import redact_url
from keeper.strategy import Strategy, StrategyContext, StrategyFactory
from keeper.types import BlockRef, Opportunity

log = structlog.get_logger(__name__)

GWEI = 10**9
WIDE = 160  # table width when stdout is not a terminal (rich would use 80)
DECIMALS = "0x313ce567"  # decimals()
NO_LIQUIDATOR = "0x0000000000000000000000000000000000000000"
"""The liquidator address strategies are given when nothing will be sent (scan)."""


class DryRunNotImplemented(KeeperError):
    """`execution.mode = "dry-run"` needs a local fork, which `keeper run` cannot start yet."""


def refuse_dry_run(config: KeeperConfig) -> None:
    """Raise unless `execution.mode` is "live": dry-run must never send to the real chain."""
    if config.execution.mode != "live":
        raise DryRunNotImplemented(
            f"execution.mode = {config.execution.mode!r} (sending to a local fork) is not "
            "implemented yet; nothing was sent. Use 'keeper scan' to look, or set "
            "execution.mode = 'live' to send to the configured chain"
        )


async def quote_decimals(chain: HttpRpc, token: str) -> int:
    """The ERC-20 `decimals()` of the quote token."""
    answer = await chain.eth_call(token, DECIMALS)
    raw = answer.removeprefix("0x")
    if not raw:
        raise ConfigError(f"execution.quote_token {token} has no decimals(): is it an ERC-20?")
    return int(raw, 16)


def create_strategies(config: KeeperConfig, context: StrategyContext) -> list[Strategy]:
    """One strategy per enabled `[strategies.<name>]` section, created by its plugin."""
    out: list[Strategy] = []
    for name, section in config.strategies.sections().items():
        if getattr(section, "enabled", True) is False:
            continue
        plugin = plugins.load(name)
        if not isinstance(plugin, StrategyFactory):
            raise ConfigError(
                f"strategies.{name}: the plugin cannot run a strategy yet; "
                f"set strategies.{name}.enabled = false"
            )
        out.append(plugin.create(section, context))
    if not out:
        raise ConfigError("no enabled strategy: configure at least one [strategies.<name>]")
    return out


async def engine_from_config(config: KeeperConfig, *, send: bool) -> Engine:
    """A ready (not yet synced) engine; `send` loads the account and opens the journal."""
    if send:
        refuse_dry_run(config)
    config.require_engine_keys("run" if send else "scan")
    execution = config.execution
    assert execution.quote_token is not None and config.dex.uniswap_v2_factory is not None
    account = config.account.load() if send else None
    if send and account is None:
        raise ConfigError(
            "sending needs an account: set KEEPER_ACCOUNT__PRIVATE_KEY "
            "or account.keystore and account.password_file"
        )
    endpoint = config.chain.http_urls[0]
    rate = endpoint.requests_per_second
    chain = await HttpRpc.open(
        endpoint.url, requests_per_second=int(rate) if rate is not None else None
    )
    journal: Journal | None = None
    try:
        if chain.chain_id != config.chain.chain_id:
            raise ChainMismatch(
                f"RPC {redact_url(endpoint.url)} serves chain id {chain.chain_id}, "
                f"but chain.chain_id is {config.chain.chain_id}"
            )
        quote = execution.quote_token.lower()
        decimals = await quote_decimals(chain, quote)
        head = int(await chain.call("eth_blockNumber", []), 16)
        dex = await PairBook.load(chain, config.dex.uniswap_v2_factory.lower(), head)
        liquidator = account.address if account is not None else NO_LIQUIDATOR
        strategies = create_strategies(config, StrategyContext(chain.chain_id, liquidator))
        priority_fee = int(execution.priority_fee_gwei * GWEI)
        executor: Executor | None = None
        if account is not None:
            journal = Journal(execution.journal)

            def appraise(c: str, d: str, got: int, paid: int, gas: int) -> int:
                return realized_value(dex, quote, collateral=c, debt=d,
                                      collateral_received=got, debt_paid=paid, gas_paid=gas)

            fees = FeePolicy(int(execution.max_fee_per_gas_gwei * GWEI), priority_fee)
            executor = Executor(chain, account, journal, fees, appraise)
            await executor.start()
        return Engine(
            chain, strategies, dex, executor, quote_token=quote,
            min_profit=int(execution.min_profit_quote * 10**decimals),
            priority_fee=priority_fee,
        )
    except BaseException:
        if journal is not None:
            journal.close()
        await chain.aclose()
        raise


# ---------------------------------------------------------------------------- scan


def _field(item: object, *names: str) -> Any:
    for name in names:
        if hasattr(item, name):
            return getattr(item, name)
    return None


def position_rows(engine: Engine, block: BlockRef) -> list[dict[str, Any]]:
    """Every tracked position of the strategies that offer `positions(block)`."""
    rows: list[dict[str, Any]] = []
    for strategy in engine.strategies:
        positions = getattr(strategy, "positions", None)
        if positions is None:
            continue
        items: Iterable[object] = positions(block)
        for item in items:
            rows.append({
                "strategy": strategy.name,
                "account": _field(item, "account", "user"),
                "collateral_value": _field(item, "collateral_value", "collateral_base"),
                "debt_value": _field(item, "debt_value", "debt_base"),
                "health_factor": _field(item, "health_factor"),
            })
    return rows


def opportunity_row(opp: Opportunity) -> dict[str, Any]:
    """The fields of a ranked opportunity that `scan` shows."""
    symbols = {
        "collateral_symbol": opp.details.get("collateral_symbol"),
        "debt_symbol": opp.details.get("debt_symbol"),
    }
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
        **{k: v for k, v in symbols.items() if isinstance(v, str)},
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
    engine = await engine_from_config(config, send=False)
    try:
        head = await engine.sync()
        opportunities = await engine.evaluate(head)
        decimals = await quote_decimals(engine.chain, engine.quote_token)
        return ScanResult(head.number, decimals, position_rows(engine, head),
                          [opportunity_row(o) for o in opportunities])
    finally:
        await engine.chain.aclose()


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


# ---------------------------------------------------------------------------- run


def summary_line(summary: JournalSummary, decimals: int = 18) -> str:
    """One line: intent counts by status, realized profit and gas used."""
    counts = ", ".join(f"{status} {count}" for status, count in summary.counts.items())
    profit = Decimal(summary.realized_profit) / 10**decimals
    return (f"keeper: stopped; journal: {counts}; realized profit {profit:f} (quote token); "
            f"gas used {summary.gas_used}")


async def run_daemon(
    config: KeeperConfig, stop: asyncio.Event | None = None
) -> tuple[JournalSummary, int]:
    """Run the live engine until SIGINT/SIGTERM (or `stop`).

    Returns the journal's summary and the quote token's decimals.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = (signal.SIGINT, signal.SIGTERM)
    for signum in handled:
        loop.add_signal_handler(signum, stop.set)
    try:
        engine = await engine_from_config(config, send=True)
    except BaseException:
        for signum in handled:
            loop.remove_signal_handler(signum)
        raise
    assert engine.executor is not None
    journal = engine.executor.journal
    try:
        log.info("keeper running", mode=config.execution.mode, chain_id=config.chain.chain_id,
                 account=engine.executor.address)
        await engine.run(stop)
        return journal.summary(), await quote_decimals(engine.chain, engine.quote_token)
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        await engine.chain.aclose()
        journal.close()


@click.command("run")
@pass_config
def run(config: KeeperConfig) -> None:
    """The daemon: follow the chain and send profitable liquidations (mode = "live")."""
    refuse_dry_run(config)
    config.require_engine_keys("run")
    summary, decimals = asyncio.run(run_daemon(config))
    click.echo(summary_line(summary, decimals))

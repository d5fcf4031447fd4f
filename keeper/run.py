"""`keeper scan` and `keeper run`: the engine wired from the config file.

`engine_from_config` builds an `Engine` from a validated `KeeperConfig`: the
first HTTP endpoint (its chain id checked), the Uniswap V2 pairs of
`dex.uniswap_v2_factory`, every enabled `[strategies.<name>]` section created
through its plugin, and, only when sending, the account and an `Executor`
writing to `execution.journal`.

`keeper scan` syncs once at the head and prints every tracked position (from
strategies that offer `positions(block)`) and every ranked opportunity, as a
table or as JSON. `keeper run` is the daemon: it stops on SIGINT/SIGTERM after
the in-flight sends finish and prints a one-line journal summary.

`mode = "live"` sends to the configured chain. `mode = "dry-run"` (or
`keeper run --dry-run`) never does: the engine still reads the configured
chain, but the executor sends to a local anvil fork of it
(`keeper.execution.fork`), started at the head and moved to the engine's head
while nothing is in flight on it; it sends as the configured account (its real
balances, forked) and journals to `execution.journal` with `.dry-run` before
the suffix, so dry-run claims never block a later live send. The summary then
counts the liquidations confirmed on the fork and their realized profit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import click
import structlog
from rich.console import Console
from rich.table import Table

from keeper import plugins
from keeper.breakers import Breakers
from keeper.chain.failover import FailoverRpc
from keeper.chain.http import HttpRpc
from keeper.chain.ws import WsSubscriptions
from keeper.cli import pass_config
from keeper.config import KeeperConfig
from keeper.dex.uniswap_v2 import PairBook
from keeper.engine import Engine
from keeper.errors import ChainMismatch, ConfigError, KeeperError
from keeper.execution.executor import Executor
from keeper.execution.fees import FeePolicy
from keeper.execution.flash_route import FlashRoute
from keeper.execution.fork import DryRunFork, ForkExecutor
from keeper.execution.journal import Journal, JournalSummary
from keeper.health import Health
from keeper.metrics import Metrics, MonitoringServer, serve
from keeper.monitor import Monitor
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


def dry_run_journal(path: Path) -> Path:
    """The dry-run journal next to the live one: keeper-journal.sqlite -> ….dry-run.sqlite."""
    return path.with_name(f"{path.stem}.dry-run{path.suffix}")


def with_mode(config: KeeperConfig, mode: Literal["live", "dry-run"]) -> KeeperConfig:
    """`config` with `execution.mode` replaced (`keeper run --dry-run` wins over the file)."""
    if config.execution.mode == mode:
        return config
    execution = config.execution.model_copy(update={"mode": mode})
    return config.model_copy(update={"execution": execution})


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


async def engine_from_config(
    config: KeeperConfig, *, send: bool
) -> tuple[Engine, DryRunFork | None]:
    """A ready (not yet synced) engine; `send` loads the account and opens the journal.

    In dry-run (`send` and `execution.mode = "dry-run"`) the executor sends to a
    local fork, returned too: the caller stops it (`DryRunFork.aclose`).
    """
    config.require_engine_keys("run" if send else "scan")
    execution = config.execution
    dry_run = send and execution.mode == "dry-run"
    assert execution.quote_token is not None and config.dex.uniswap_v2_factory is not None
    account = config.account.load() if send else None
    if send and account is None:
        what = ("execution.mode = 'dry-run' (it sends as your account, on a local fork)"
                if dry_run else "sending")
        raise ConfigError(
            f"{what} needs an account: set KEEPER_ACCOUNT__PRIVATE_KEY "
            "or account.keystore and account.password_file"
        )
    endpoint = config.chain.http_urls[0]
    # Every configured endpoint, in failover order, each with its own rate limit.
    chain: HttpRpc = await FailoverRpc.open(
        config.chain.http_urls, block_time=config.chain.block_time_seconds,
        chain_id=config.chain.chain_id, timeout=config.chain.request_timeout_seconds,
    )
    journal: Journal | None = None
    fork: DryRunFork | None = None
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

            def appraise(c: str, d: str, got: int, paid: int, gas: int) -> int:
                return realized_value(dex, quote, collateral=c, debt=d,
                                      collateral_received=got, debt_paid=paid, gas_paid=gas)

            fees = FeePolicy(int(execution.max_fee_per_gas_gwei * GWEI), priority_fee)
            if dry_run:
                fork = await DryRunFork.start(endpoint.url, chain.chain_id, head)
                journal = Journal(dry_run_journal(execution.journal))
                on_fork = ForkExecutor(fork.rpc, account, journal, fees, appraise,
                                       follow=fork.follow)
                fork.attach(on_fork)
                await fork.resync()  # not start(): the journal's nonces are fork nonces
                executor = on_fork
            else:
                journal = Journal(execution.journal)
                executor = Executor(chain, account, journal, fees, appraise)
                await executor.start()
        flash: FlashRoute | None = None
        if executor is not None and execution.flash_executor is not None:
            flash = await flash_route(executor, execution.flash_executor, dex, quote)
        engine = Engine(
            chain, strategies, dex, executor, quote_token=quote,
            min_profit=int(execution.min_profit_quote * 10**decimals),
            priority_fee=priority_fee, flash=flash, batch_max=execution.batch_max,
        )
        return engine, fork
    except BaseException:
        if journal is not None:
            journal.close()
        if fork is not None:
            await fork.aclose()
        await chain.aclose()
        raise


OWNER = "0x8da5cb5b"  # owner()


async def flash_route(
    executor: Executor, address: str, dex: PairBook, quote: str
) -> FlashRoute:
    """The flash executor's route, after checking it is a contract the account owns."""
    chain = executor.chain
    code = await chain.call("eth_getCode", [address.lower(), "latest"])
    if not isinstance(code, str) or len(code) <= 2:
        raise ConfigError(f"execution.flash_executor {address} has no code on this chain: "
                          "deploy one with 'keeper deploy-executor'")
    try:
        owner = "0x" + (await chain.eth_call(address.lower(), OWNER))[-40:]
    except KeeperError:
        raise ConfigError(f"execution.flash_executor {address} is not a FlashLiquidator "
                          "(no owner())") from None
    if owner.lower() != executor.address:
        raise ConfigError(f"execution.flash_executor {address} is owned by {owner}, not by "
                          f"the account {executor.address}")
    return await FlashRoute.discover(chain, address, dex, quote)


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
    engine, _ = await engine_from_config(config, send=False)
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


def summary_line(summary: JournalSummary, decimals: int = 18, *, dry_run: bool = False) -> str:
    """One line: intent counts by status, realized profit and gas used."""
    counts = ", ".join(f"{status} {count}" for status, count in summary.counts.items())
    profit = Decimal(summary.realized_profit) / 10**decimals
    if dry_run:
        return (f"keeper: stopped; dry run on a local fork, nothing sent to the chain; "
                f"{summary.counts.get('confirmed', 0)} liquidations confirmed on the fork; "
                f"journal: {counts}; realized profit on the fork {profit:f} (quote token); "
                f"gas used {summary.gas_used}")
    return (f"keeper: stopped; journal: {counts}; realized profit {profit:f} (quote token); "
            f"gas used {summary.gas_used}")


@dataclasses.dataclass(frozen=True)
class DaemonResult:
    """How a daemon run ended: its journal's summary, and what was left in flight."""

    summary: JournalSummary
    quote_decimals: int
    abandoned: int = 0  # liquidations in flight when a second signal cut the wait short


async def run_daemon(config: KeeperConfig, stop: asyncio.Event | None = None) -> DaemonResult:
    """Run the engine until SIGINT/SIGTERM (or `stop`); in dry-run it sends to a fork only.

    The first signal stops taking new work and waits for the liquidations in flight (their
    receipts); a second one abandons that wait. Abandoned transactions stay in the journal
    as sent, so the next start finds them.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
    running: list[asyncio.Task[None]] = []

    def on_signal() -> None:
        if not stop.is_set():
            stop.set()
            log.info("stopping: finishing in-flight liquidations; signal again to abandon them")
        elif running:
            running[0].cancel()

    for signum in handled:
        loop.add_signal_handler(signum, on_signal)
    try:
        engine, fork = await engine_from_config(config, send=True)
    except BaseException:
        for signum in handled:
            loop.remove_signal_handler(signum)
        raise
    assert engine.executor is not None
    journal = engine.executor.journal
    ws_url = config.chain.ws_url
    ws = WsSubscriptions(ws_url) if ws_url is not None else None
    server: MonitoringServer | None = None
    try:
        monitor = build_monitor(config, engine)
        engine.monitor = monitor
        engine.chain.observer = monitor.rpc
        # SIGUSR1 resumes sending after a breaker tripped (the operator fixed the cause).
        loop.add_signal_handler(signal.SIGUSR1, lambda: _reset_breakers(monitor))
        handled = (*handled, signal.SIGUSR1)
        if config.monitoring.enabled:
            server = await start_monitoring(config, monitor)
        log.info("keeper running", mode=config.execution.mode, chain_id=config.chain.chain_id,
                 account=engine.executor.address, journal=str(journal.path),
                 intake="websocket" if ws is not None else "http polling",
                 fork=fork.anvil.rpc_url if fork is not None else None,
                 monitoring=server.url if server is not None else None)
        running.append(asyncio.ensure_future(engine.run(stop, ws)))
        abandoned = 0
        try:
            await running[0]
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are cancelled ourselves, not by the second signal
            abandoned = engine.inflight
            log.warning("stopping now: in-flight liquidations abandoned (journaled as sent)",
                        count=abandoned)
        return DaemonResult(journal.summary(),
                            await quote_decimals(engine.chain, engine.quote_token), abandoned)
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        try:
            if server is not None:
                await server.aclose()
            await engine.chain.aclose()
            journal.close()
        finally:
            if fork is not None:
                await fork.aclose()


def build_monitor(config: KeeperConfig, engine: Engine) -> Monitor:
    """Metrics, health and breakers from `[monitoring]` and `[breakers]`."""
    breakers = Breakers(config.breakers.limits())
    health = Health(stall_seconds=config.monitoring.stall_seconds,
                    max_head_lag=config.monitoring.max_head_lag_seconds, breakers=breakers)
    metrics = Metrics(strategies=[s.name for s in engine.strategies])
    return Monitor(metrics, health, breakers)


async def start_monitoring(config: KeeperConfig, monitor: Monitor) -> MonitoringServer:
    """The /metrics and /health server, or one clear line if its port cannot be bound."""
    host, port = config.monitoring.host, config.monitoring.port
    try:
        return await serve(host, port, metrics=monitor.metrics, health=monitor.health)
    except OSError as exc:
        raise ConfigError(f"monitoring: cannot listen on {host}:{port} ({exc.strerror}); "
                          "set monitoring.port (0 picks a free one) or "
                          "monitoring.enabled = false") from None


def _reset_breakers(monitor: Monitor) -> None:
    names = monitor.breakers.reset()
    log.warning("breakers reset by SIGUSR1; sending resumes", breakers=names)


@click.command("run")
@click.option("--dry-run", is_flag=True,
              help="Send to a local anvil fork of the chain, never to the chain itself "
                   "(overrides execution.mode).")
@pass_config
def run(config: KeeperConfig, dry_run: bool) -> None:
    """The daemon: follow the chain and send profitable liquidations (or, dry-run, to a fork)."""
    if dry_run:
        config = with_mode(config, "dry-run")
    config.require_engine_keys("run")
    result = asyncio.run(run_daemon(config))
    line = summary_line(result.summary, result.quote_decimals,
                        dry_run=config.execution.mode == "dry-run")
    if result.abandoned:
        line += f"; abandoned {result.abandoned} in flight (journaled as sent)"
    click.echo(line)

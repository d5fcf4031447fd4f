"""`keeper run`: the daemon, wired from the config file.

`keeper_from_config` builds a `Keeper` (keeper/wiring.py) from a validated `KeeperConfig`:
every configured HTTP endpoint behind failover (the chain id checked, then every
configured address's code and interface, keeper/addresses.py), the Uniswap V2 pairs of
`dex.uniswap_v2_factory`, every enabled `[strategies.<name>]` section created through its
plugin, and, only when sending, the account and an `Executor` writing to
`execution.journal` (with `[ha]`, a replica on the shared journal: keeper/ha/). `keeper
scan` (keeper/scan.py) uses it without an account. `keeper run` is the daemon: it holds
the journal's and the account's locks (keeper/lock.py), reads the tokens' symbols for
the console (keeper/units.py), posts `[alerts]` webhooks (keeper/alerts.py), stops on
SIGINT/SIGTERM after the in-flight sends finish and prints this run's summary
(`run_summary`: token units, reasons for what was abandoned and lost).

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
import signal
import time
from fractions import Fraction
from typing import Literal

import click
import structlog

from keeper import plugins
from keeper.addresses import check_addresses
from keeper.alerts import Alerts
from keeper.bids import BidPolicy
from keeper.breakers import Breakers
from keeper.chain.failover import FailoverRpc
from keeper.chain.http import HttpRpc
from keeper.chain.ws import WsSubscriptions
from keeper.cli import pass_config
from keeper.config import KeeperConfig
from keeper.dex.uniswap_v2 import PairBook
from keeper.dex.uniswap_v3 import V3Book
from keeper.dex.venue import Venue, Venues
from keeper.errors import ChainMismatch, ConfigError, KeeperError
from keeper.execution.bundles_config import Executor, make_executor
from keeper.execution.dispatch import LivePositions
from keeper.execution.fees import FeePolicy
from keeper.execution.flash_route import FlashRoute
from keeper.execution.fork import DryRunFork, ForkExecutor
from keeper.execution.journal import Journal
from keeper.execution.outcomes import DEFAULT_KEEP
from keeper.ha.config import open_replica
from keeper.health import Health
from keeper.intake.wire import run_with_intake
from keeper.log import flush_repeats
from keeper.metrics import Metrics, MonitoringServer, serve
from keeper.monitor import Monitor
from keeper.prepared import FeedRule
from keeper.ranking import realized_value
from keeper.run_support import (
    DaemonResult,
    dry_run_journal,
    hold_locks,
    run_summary,
    show_token_names,
)
from keeper.secrets import redact_url
from keeper.strategy import Strategy, StrategyContext, StrategyFactory
from keeper.wiring import Keeper, assemble

log = structlog.get_logger(__name__)

GWEI = 10**9
DECIMALS = "0x313ce567"  # decimals()
NO_LIQUIDATOR = "0x0000000000000000000000000000000000000000"
"""The liquidator address strategies are given when nothing will be sent (scan)."""


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
    """One strategy per enabled `[strategies.<name>]` section, created by its plugin.

    A section with `plugin = "..."` is another instance of that plugin (e.g. a second Aave
    market); its strategy takes the section's name, so every strategy's name is unique.
    """
    out: list[Strategy] = []
    for name, section in config.strategies.sections().items():
        if getattr(section, "enabled", True) is False:
            continue
        plugin = plugins.load(getattr(section, "plugin", None) or name)
        if not isinstance(plugin, StrategyFactory):
            raise ConfigError(
                f"strategies.{name}: the plugin cannot run a strategy yet; "
                f"set strategies.{name}.enabled = false"
            )
        strategy = plugin.create(section, context)
        if strategy.name != name:
            strategy.name = name  # an instance: journals and metrics tell the markets apart
        out.append(strategy)
    if not out:
        raise ConfigError("no enabled strategy: configure at least one [strategies.<name>]")
    return out


async def keeper_from_config(
    config: KeeperConfig, *, send: bool, monitor: Monitor | None = None,
    keep_outcomes: int | None = DEFAULT_KEEP,
) -> tuple[Keeper, DryRunFork | None]:
    """A ready (not yet synced) keeper; `send` loads the account and opens the journal.

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
                if dry_run else "execution.mode = 'live'")
        raise ConfigError(
            f"{what} needs an account: set KEEPER_ACCOUNT__PRIVATE_KEY "
            "or account.keystore and account.password_file"
        )
    endpoint = config.chain.http_urls[0]
    # Every configured endpoint, in failover order, each with its own rate limit.
    chain: HttpRpc = await FailoverRpc.open(
        config.chain.http_urls, block_time=config.chain.block_time_seconds,
        chain_id=config.chain.chain_id, timeout=config.chain.request_timeout_seconds,
        observer=monitor.rpc if monitor is not None else None,
    )
    journal: Journal | None = None
    fork: DryRunFork | None = None
    try:
        if chain.chain_id != config.chain.chain_id:
            raise ChainMismatch(
                f"RPC {redact_url(endpoint.url)} serves chain id {chain.chain_id}, "
                f"but chain.chain_id is {config.chain.chain_id}"
            )
        await check_addresses(chain, config, chain.chain_id)  # one line naming a wrong key
        quote = execution.quote_token.lower()
        decimals = await quote_decimals(chain, quote)
        head = int(await chain.call("eth_blockNumber", []), 16)
        dex = await PairBook.load(chain, config.dex.uniswap_v2_factory.lower(), head)
        exits = await exit_venues(chain, config, dex, quote, head)
        liquidator = account.address if account is not None else NO_LIQUIDATOR
        strategies = create_strategies(config, StrategyContext(chain.chain_id, liquidator))
        priority_fee = int(execution.priority_fee_gwei * GWEI)
        executor: Executor | None = None
        replica = open_replica(config, chain.chain_id, account, dry_run)  # [ha]: keeper/ha/
        live = LivePositions()
        flash_executor = execution.flash_executor.lower() if execution.flash_executor else None
        if account is not None:

            def appraise(c: str, d: str, got: int, paid: int, gas: int) -> int:
                return realized_value(exits, quote, collateral=c, debt=d,
                                      collateral_received=got, debt_paid=paid, gas_paid=gas)

            fees = FeePolicy(int(execution.max_fee_per_gas_gwei * GWEI), priority_fee)
            if dry_run:
                fork = await DryRunFork.start(endpoint.url, chain.chain_id, head)
                journal = Journal(dry_run_journal(execution.journal))
                on_fork = ForkExecutor(fork.rpc, account, journal, fees, appraise,
                                       follow=fork.follow, flash_executor=flash_executor,
                                       quote_token=quote, still_there=live,
                                       simulate=execution.simulate)
                fork.attach(on_fork)
                await fork.resync()  # not start(): the journal's nonces are fork nonces
                executor = on_fork
            else:
                journal = Journal(execution.journal) if replica is None else replica.journal
                executor = make_executor(config, chain, account, journal, fees, appraise,
                                         flash_executor=flash_executor, quote_token=quote,
                                         still_there=live, simulate=execution.simulate)
                await executor.start()
        flash: FlashRoute | None = None
        if executor is not None and flash_executor is not None:
            flash = await flash_route(executor, flash_executor, dex, quote, exits)
        ws = WsSubscriptions(config.chain.ws_url) if config.chain.ws_url is not None else None
        block_time = config.chain.block_time_seconds
        keeper = assemble(
            chain, strategies, dex, quote_token=quote,
            min_profit=int(execution.min_profit_quote * 10**decimals),
            priority_fee=priority_fee, executor=executor, live=live, flash=flash,
            batch_max=execution.batch_max, monitor=monitor, ws=ws, block_time=block_time,
            keep_outcomes=keep_outcomes, bids=bid_policy(config), exits=exits, replica=replica,
            feed_rules={f.address: FeedRule(f.deviation_bps, f.heartbeat_seconds)
                        for f in execution.feeds}, prepared_levels=execution.prepared_levels,
            send_deadline=float(execution.send_deadline_blocks) * block_time or None)
        return keeper, fork
    except BaseException:
        if journal is not None:
            journal.close()
        if fork is not None:
            await fork.aclose()
        await chain.aclose()
        raise


async def exit_venues(
    chain: HttpRpc, config: KeeperConfig, pairs: PairBook, quote: str, head: int
) -> Venue:
    """Where exits are priced and sold: the V2 pairs alone, or with `[[dex.venues]]` all of
    them as one `Venues` routing through the quote token. A venue's pools are those among
    the V2 pairs' tokens and the quote token."""
    if not config.dex.venues:
        return pairs
    tokens = {quote} | {t for p in pairs.pairs.values() for t in (p.token0, p.token1)}
    books: list[Venue] = [pairs]
    for venue in config.dex.venues:
        books.append(await V3Book.from_factory(chain, venue.factory.lower(), tokens, head,
                                               venue.fee_tiers))
    log.info("exit venues", venues=[b.venue for b in books],
             pools=[len(b.subscriptions().addresses) for b in books])
    return Venues(books, via=quote)


def bid_policy(config: KeeperConfig) -> BidPolicy:
    """`execution.bid_share` (and its per-strategy overrides) within the fee limits."""
    execution = config.execution
    return BidPolicy(
        share=Fraction(execution.bid_share),
        by_strategy={k: Fraction(v) for k, v in execution.bid_share_by_strategy.items()},
        min_tip=int(execution.priority_fee_gwei * GWEI),
        max_fee_per_gas=int(execution.max_fee_per_gas_gwei * GWEI))


OWNER = "0x8da5cb5b"  # owner()


async def flash_route(
    executor: Executor, address: str, dex: PairBook, quote: str, exits: Venue | None = None,
) -> FlashRoute:
    """The flash executor's route, after checking it is a contract the account owns; the
    V3 pools of `exits` may lend too."""
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
    return await FlashRoute.discover(chain, address, dex, quote, exits)


# ---------------------------------------------------------------------------- run


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
    cut_short: list[int] = []  # in flight when the second signal came (cancelling clears it)

    def on_signal() -> None:
        if not stop.is_set():
            stop.set()
            log.info("stopping: finishing in-flight liquidations; signal again to abandon them")
        elif running:
            cut_short.append(monitor.inflight())
            running[0].cancel()

    locks = hold_locks(config)  # before anything is read or sent: one keeper per journal
    for signum in handled:
        loop.add_signal_handler(signum, on_signal)
    monitor = build_monitor(config)
    try:
        keeper, fork = await keeper_from_config(config, send=True, monitor=monitor)
    except BaseException:
        for signum in handled:
            loop.remove_signal_handler(signum)
        locks.close()
        raise
    assert keeper.executor is not None
    journal = keeper.executor.journal
    server: MonitoringServer | None = None
    alerts: Alerts | None = None  # [alerts] webhooks, when configured
    try:
        await show_token_names(keeper, monitor, locks)  # console symbols; in-flight count
        alerts = Alerts.start_for(config, keeper.executor.address, monitor)
        # SIGUSR1 resumes sending after a breaker tripped (the operator fixed the cause).
        loop.add_signal_handler(signal.SIGUSR1, lambda: _reset_breakers(monitor))
        handled = (*handled, signal.SIGUSR1)
        if config.monitoring.enabled:
            server = await start_monitoring(config, monitor)
        log.info("keeper running", mode=config.execution.mode, chain_id=config.chain.chain_id,
                 account=keeper.executor.address, journal=str(journal.path),
                 intake="websocket" if config.chain.ws_url is not None else "http polling",
                 fork=fork.anvil.rpc_url if fork is not None else None,
                 monitoring=server.url if server is not None else None)
        running.append(asyncio.ensure_future(run_with_intake(keeper, config, stop)))
        abandoned = 0
        try:
            await running[0]
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are cancelled ourselves, not by the second signal
            abandoned = max(cut_short, default=keeper.inflight)
            log.warning("stopping now: in-flight liquidations abandoned (journaled as sent)",
                        count=abandoned)
        flush_repeats(everything=True)
        return DaemonResult(journal.summary(),
                            await quote_decimals(keeper.chain, keeper.engine.quote_token),
                            abandoned, tally=monitor.tally,
                            seconds=time.monotonic() - monitor.tally.started,
                            journal=journal.path)
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        try:
            if alerts is not None:
                await alerts.aclose()
            if server is not None:
                await server.aclose()
            await keeper.aclose()
            journal.close()
        finally:
            try:
                if fork is not None:
                    await fork.aclose()
            finally:
                locks.close()


def build_monitor(config: KeeperConfig) -> Monitor:
    """Metrics, health and breakers from `[monitoring]` and `[breakers]`."""
    breakers = Breakers(config.breakers.limits())
    health = Health(stall_seconds=config.monitoring.stall_seconds,
                    max_head_lag=config.monitoring.max_head_lag_seconds, breakers=breakers)
    metrics = Metrics(strategies=[name for name, section in config.strategies.sections().items()
                                  if getattr(section, "enabled", True) is not False])
    return Monitor(metrics, health, breakers, status_every=config.monitoring.status_every_blocks)


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
    log.warning("breakers reset by SIGUSR1; sending resumes", breakers=monitor.breakers.reset())


@click.command("run")
@click.option("--dry-run", is_flag=True,
              help="Send to a local anvil fork of the chain, never to the chain itself "
                   "(overrides execution.mode).")
@pass_config
def run(config: KeeperConfig, dry_run: bool) -> None:
    """The daemon: follow the chain and send profitable liquidations (or, dry-run, to a fork)."""
    if config.chains:  # [chains.<name>]: one engine per chain, each supervised on its own
        from keeper.multichain import run_all  # noqa: PLC0415 (it builds on this module)
        return run_all(config, dry_run=dry_run)
    config = with_mode(config, "dry-run") if dry_run else config
    config.require_engine_keys("run")
    result = asyncio.run(run_daemon(config))
    for line in run_summary(result, dry_run=config.execution.mode == "dry-run"):
        click.echo(line)

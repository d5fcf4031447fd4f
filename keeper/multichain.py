"""`keeper run` with `[chains.<name>]` tables: one engine per chain in one daemon.

Each chain (keeper/chains.py) gets the whole single-chain keeper of keeper/run.py: its own
RPC clients, strategies, executor with its own nonces, journal, breakers and health, and
its own `Monitor`. Each runs in a supervisor task of its own: when its engine fails (an
exception out of its loop, or a start that cannot reach its node) the supervisor closes
it and starts it again after a back-off (1 s doubling to 30 s), and nothing happens to
the other chains. An RPC outage on one chain therefore stalls only that chain's engine:
every chain has its own connections and tasks. A configuration error found at the first
start (a wrong chain id, an address without code) ends the daemon with one line, as with
one chain.

Every log line of a chain's engine carries `chain=<name>`. One `/metrics` server serves
every chain's metrics with a `chain` label (`ChainMetrics`); `/health` is failing only when
every chain is, and degraded when any chain is failing or degraded, with each reason
prefixed by its chain (`ChainHealth`): a supervisor that restarts the daemon on 503 must
not restart the healthy chains because one node is down. SIGINT/SIGTERM stop every chain
after its in-flight liquidations, a second signal abandons them (as with one chain);
SIGUSR1 resets every chain's breakers.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import click
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from keeper.alerts import Alerts
from keeper.breakers import Breakers
from keeper.config import KeeperConfig
from keeper.errors import ConfigError, FatalError
from keeper.health import Health, HealthReport
from keeper.log import flush_repeats
from keeper.metrics import Metrics, MonitoringServer, serve
from keeper.monitor import Monitor
from keeper.run import keeper_from_config, quote_decimals, with_mode
from keeper.run_support import DaemonResult, hold_locks, run_summary, show_token_names

log = structlog.get_logger(__name__)

RESTART_FIRST = 1.0  # seconds before a failed chain's engine starts again; doubles to:
RESTART_MAX = 30.0


class ChainMetrics:
    """Every chain's metrics in one exposition, each sample labelled `chain=<name>`, plus
    the process's own (memory, CPU, GC) once."""

    def __init__(self, metrics: Mapping[str, Metrics]) -> None:
        self.metrics = dict(metrics)
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(self)

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for chain, metrics in self.metrics.items():
            for family in metrics.registry.collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit)
                merged.samples += [s._replace(labels={**s.labels, "chain": chain})
                                   for s in family.samples]
        yield from families.values()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class ChainHealth:
    """One verdict for several chains: failing only when every chain is."""

    def __init__(self, health: Mapping[str, Health]) -> None:
        self.health = dict(health)

    def check(self) -> HealthReport:
        reports = {name: h.check() for name, h in self.health.items()}
        reasons = [f"chain {name}: {reason}" for name, report in reports.items()
                   for reason in report.reasons]
        if all(r.status == "failing" for r in reports.values()):
            return HealthReport("failing", reasons)
        if any(r.status != "healthy" for r in reports.values()):
            return HealthReport("degraded", reasons)
        return HealthReport("healthy")


def chain_monitor(config: KeeperConfig) -> Monitor:
    """A chain's metrics (without the process's: `ChainMetrics` adds them once), health
    and breakers."""
    breakers = Breakers(config.breakers.limits())
    health = Health(stall_seconds=config.monitoring.stall_seconds,
                    max_head_lag=config.monitoring.max_head_lag_seconds, breakers=breakers)
    metrics = Metrics(process=False, strategies=[
        name for name, section in config.strategies.sections().items()
        if getattr(section, "enabled", True) is not False])
    return Monitor(metrics, health, breakers, status_every=config.monitoring.status_every_blocks)


@dataclass
class Chain:
    """One chain's engine under its supervisor."""

    name: str
    config: KeeperConfig
    monitor: Monitor
    running: asyncio.Future[None] | None = None
    restarts: int = 0
    synced: bool = False  # its engine reached a cold start once: later faults restart it
    last_error: str | None = None
    result: DaemonResult | None = None
    cut_short: list[int] = field(default_factory=list)


async def supervise(chain: Chain, stop: asyncio.Event) -> None:
    """Run the chain's engine until `stop`, starting it again whenever it fails."""
    structlog.contextvars.bind_contextvars(chain=chain.name)
    delay = RESTART_FIRST
    while not stop.is_set():
        try:
            await _run_once(chain, stop)
            return
        except FatalError as exc:
            if not chain.synced:
                raise  # bad configuration: one line, the daemon does not start
            reason = str(exc)
        except Exception as exc:  # any failure restarts this chain alone
            reason = f"{type(exc).__name__}: {exc}"
        chain.restarts += 1
        chain.last_error = reason
        chain.monitor.health.flag("engine", "failing", f"engine failed, restarting: {reason}")
        log.error("chain engine failed; restarting it", reason=reason, retry_in=delay,
                  restarts=chain.restarts)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, RESTART_MAX)


async def _run_once(chain: Chain, stop: asyncio.Event) -> None:
    """One life of the chain's engine, until `stop` or its failure."""
    keeper, fork = await keeper_from_config(chain.config, send=True, monitor=chain.monitor)
    assert keeper.executor is not None
    journal = keeper.executor.journal
    alerts: Alerts | None = None
    try:
        decimals = await quote_decimals(keeper.chain, keeper.engine.quote_token)  # now: its
        # node may be down when the daemon stops
        with contextlib.ExitStack() as stack:
            await show_token_names(keeper, chain.monitor, stack)
            alerts = Alerts.start_for(chain.config, keeper.executor.address, chain.monitor)
            chain.monitor.health.clear("engine")
            log.info("chain running", chain_id=chain.config.chain.chain_id,
                     mode=chain.config.execution.mode, account=keeper.executor.address,
                     journal=str(journal.path), restarts=chain.restarts)
            chain.running = asyncio.ensure_future(keeper.run(stop))
            abandoned = 0
            try:
                await chain.running
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                abandoned = max(chain.cut_short, default=keeper.inflight)
                log.warning("stopping now: in-flight liquidations abandoned", count=abandoned)
            chain.result = DaemonResult(
                journal.summary(), decimals, abandoned, tally=chain.monitor.tally,
                seconds=time.monotonic() - chain.monitor.tally.started, journal=journal.path)
    finally:
        chain.running = None
        chain.synced = chain.synced or keeper.engine.last is not None
        try:
            if alerts is not None:
                await alerts.aclose()
            await keeper.aclose()
        finally:
            journal.close()
            if fork is not None:
                await fork.aclose()


async def run_chains(
    configs: Mapping[str, KeeperConfig], stop: asyncio.Event | None = None
) -> list[Chain]:
    """Every chain under its own supervisor until SIGINT/SIGTERM (or `stop`); the chains,
    each with its result (None if its engine never got going). `[monitoring]` is shared:
    the first chain's."""
    stop = stop or asyncio.Event()
    chains = [Chain(name, c, chain_monitor(c)) for name, c in configs.items()]
    config = chains[0].config
    loop = asyncio.get_running_loop()
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)

    def on_signal() -> None:
        if not stop.is_set():
            stop.set()
            log.info("stopping: finishing in-flight liquidations; signal again to abandon them")
            return
        for chain in chains:
            if chain.running is not None:
                chain.cut_short.append(chain.monitor.inflight())
                chain.running.cancel()

    def reset_breakers() -> None:
        for chain in chains:
            log.warning("breakers reset by SIGUSR1; sending resumes", chain=chain.name,
                        breakers=chain.monitor.breakers.reset())

    with contextlib.ExitStack() as locks:
        for chain in chains:  # every chain's journal and account, before anything is sent
            locks.enter_context(hold_locks(chain.config))
        for signum in handled[:2]:
            loop.add_signal_handler(signum, on_signal)
        loop.add_signal_handler(signal.SIGUSR1, reset_breakers)
        server: MonitoringServer | None = None
        try:
            if config.monitoring.enabled:
                server = await _serve(config, chains)
            log.info("keeper running", chains={c.name: c.config.chain.chain_id for c in chains},
                     monitoring=server.url if server is not None else None)
            async with asyncio.TaskGroup() as tasks:
                for chain in chains:
                    tasks.create_task(supervise(chain, stop))
            flush_repeats(everything=True)
            return chains
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)
            if server is not None:
                await server.aclose()


async def _serve(config: KeeperConfig, chains: list[Chain]) -> MonitoringServer:
    host, port = config.monitoring.host, config.monitoring.port
    try:
        return await serve(
            host, port, metrics=ChainMetrics({c.name: c.monitor.metrics for c in chains}),
            health=ChainHealth({c.name: c.monitor.health for c in chains}))
    except OSError as exc:
        raise ConfigError(f"monitoring: cannot listen on {host}:{port} ({exc.strerror}); "
                          "set monitoring.port (0 picks a free one) or "
                          "monitoring.enabled = false") from None


def run_all(config: KeeperConfig, *, dry_run: bool) -> None:
    """`keeper run` for a file with `[chains]`: every chain, then each one's summary."""
    configs = {name: with_mode(c, "dry-run") if dry_run else c
               for name, c in config.chains.items()}
    for each in configs.values():
        each.require_engine_keys("run")
    try:
        done = asyncio.run(run_chains(configs))
    except BaseExceptionGroup as group:  # a chain's first start found a configuration error
        fatal = group.subgroup(FatalError)
        if fatal is None:
            raise
        first: BaseException = fatal
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    for chain in done:
        if chain.result is None:
            click.echo(f"chain {chain.name}: never ran"
                       + (f" (last error: {chain.last_error})" if chain.last_error else ""))
            continue
        lines = run_summary(chain.result, dry_run=chain.config.execution.mode == "dry-run")
        click.echo(f"chain {chain.name}: {lines[0]}"
                   + (f" (engine restarted {chain.restarts} times)" if chain.restarts else ""))
        for line in lines[1:]:
            click.echo(line)

"""Prometheus metrics of the keeper, and the HTTP server of `/metrics` and `/health`.

`Metrics` owns one `CollectorRegistry` per instance (never the global one, so tests
and several engines in one process do not collide) and offers small typed methods
for the engine and the executor to call; `serve(host, port, metrics=, health=)`
exposes it with aiohttp. Every name starts with `keeper_`; amounts are wei of the
quote token (realized profit) or of the native token (gas), as floats.

Outcome statuses (`keeper.types.Outcome.status`) map to counters:

| status                                     | simulated | sent | confirmed/reverted/lost |
|--------------------------------------------|-----------|------|-------------------------|
| confirmed, reverted, lost                  | yes       | yes  | its own counter         |
| simulation-failed, fee-cap, send-failed    | yes       | no   | -                       |
| duplicate, no-capital, error, anything else| no        | no   | -                       |

Every status is also counted in `keeper_outcomes_total{strategy,status}`. Realized
profit can be negative (a revert costs its gas); counters only rise, so gains go
to `keeper_realized_profit_wei_total` and losses to `keeper_realized_loss_wei_total`
(net = profit - loss, as in the journal's summary).

RPC endpoints are labelled by host (and explicit port) only: hosted RPC URLs carry
API keys in the path or query, which must never reach a metrics scraper.
"""

from __future__ import annotations

import math
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from keeper.breakers import Breakers
from keeper.health import HealthReport
from keeper.secrets import MASK, redact

SIMULATED = frozenset({"confirmed", "reverted", "lost", "simulation-failed", "fee-cap",
                       "send-failed"})
SENT = frozenset({"confirmed", "reverted", "lost"})
RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_KEYLIKE = re.compile(r"^[A-Za-z0-9_\-]{16,}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9.*\-_:\[\]]")
_LABEL_CACHE_MAX = 256


def endpoint_label(endpoint: str) -> str:
    """A metrics label for an RPC endpoint: its host (and explicit port), nothing else.

    "https://eth-mainnet.g.alchemy.com/v2/KEY" -> "eth-mainnet.g.alchemy.com". A
    key-like host part (long, with digits) is masked too, as are registered secrets.
    A string that is not a URL is taken as a name, cut at the first "/" or "?".
    """
    parts = urllib.parse.urlsplit(endpoint.strip())
    if parts.netloc:
        host = parts.hostname or ""
        try:
            port = parts.port
        except ValueError:
            port = None
        if ":" in host:
            host = f"[{host}]"  # IPv6
        label = f"{host}:{port}" if port is not None else host
    else:
        label = re.split(r"[/?#@]", endpoint.strip(), maxsplit=1)[0]
    label = ".".join(
        MASK if _KEYLIKE.match(p) and any(c.isdigit() for c in p) else p
        for p in label.split(".")
    )
    label = _UNSAFE.sub("_", redact(label))
    return label or "unknown"


class _BreakerCollector:
    """Reads the breakers at scrape time, so the gauge never lags a trip or reset."""

    def __init__(self, breakers: Breakers) -> None:
        self.breakers = breakers

    def collect(self) -> Iterable[Metric]:
        tripped = GaugeMetricFamily(
            "keeper_breaker_tripped", "Circuit breaker state: 0 closed, 1 tripped (no sends).",
            labels=["breaker"],
        )
        enabled = GaugeMetricFamily(
            "keeper_breaker_enabled", "1 if the circuit breaker has a limit configured.",
            labels=["breaker"],
        )
        for state in self.breakers.states():
            tripped.add_metric([state.name], 1.0 if state.tripped else 0.0)
            enabled.add_metric([state.name], 1.0 if state.enabled else 0.0)
        yield tripped
        yield enabled


class Metrics:
    """The keeper's metrics in a registry of their own; call the methods, scrape `/metrics`."""

    def __init__(
        self,
        *,
        strategies: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
        process: bool = True,
    ) -> None:
        self.registry = CollectorRegistry()
        self._clock = clock
        self._head_timestamp: int | None = None
        self._labels: dict[str, str] = {}
        self._breakers: _BreakerCollector | None = None
        r = self.registry
        if process:  # memory, CPU, file descriptors, GC: a leak shows here first
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        self.head_block = Gauge("keeper_head_block", "Newest head processed.", registry=r)
        self.head_lag = Gauge(
            "keeper_head_lag_seconds",
            "Seconds between now and the newest processed head's timestamp (NaN before one).",
            registry=r,
        )
        self.head_lag.set_function(self._lag)
        self.blocks = Counter("keeper_blocks_processed", "Blocks applied.", registry=r)
        self.event_count = Counter("keeper_events", "Logs applied, by kind.", ["kind"],
                                   registry=r)
        self.tracked = Gauge("keeper_positions_tracked", "Positions in the local book.",
                             ["strategy"], registry=r)
        self.unhealthy = Gauge("keeper_positions_unhealthy",
                               "Tracked positions that are liquidatable (health factor < 1).",
                               ["strategy"], registry=r)
        stage = "Liquidation opportunities {}."

        def opportunity_counter(name: str, what: str) -> Counter:
            return Counter(f"keeper_opportunities_{name}", stage.format(what), ["strategy"],
                           registry=r)

        self.found = opportunity_counter("found", "ranked profitable")
        self.simulated = opportunity_counter("simulated", "simulated")
        self.sent = opportunity_counter("sent", "sent to the chain")
        self.confirmed = opportunity_counter("confirmed", "confirmed (ours)")
        self.lost = opportunity_counter("lost", "lost to another liquidator")
        self.reverted = opportunity_counter("reverted", "reverted on chain")
        self.held = opportunity_counter("held", "not sent because a breaker was tripped")
        self.races_lost = Counter(
            "keeper_races_lost", "Liquidations that reverted because another transaction took "
            "the position first (not counted by the revert breaker).", ["strategy"], registry=r)
        self.outcomes = Counter("keeper_outcomes", "Executor outcomes by status.",
                                ["strategy", "status"], registry=r)
        self.profit = Counter("keeper_realized_profit_wei",
                              "Realized gains, quote-token wei (net of gas).", ["strategy"],
                              registry=r)
        self.loss = Counter("keeper_realized_loss_wei",
                            "Realized losses (reverts' gas, unprofitable fills), quote-token wei.",
                            ["strategy"], registry=r)
        self.gas_spent = Counter("keeper_gas_spent_wei", "Gas paid, native-token wei.",
                                 registry=r)
        self.rpc_requests = Counter("keeper_rpc_requests", "RPC requests (a batch is one).",
                                    ["endpoint"], registry=r)
        self.rpc_errors = Counter("keeper_rpc_errors", "RPC requests that failed.",
                                  ["endpoint"], registry=r)
        self.rpc_latency = Histogram("keeper_rpc_latency_seconds", "RPC request latency.",
                                     ["endpoint"], buckets=RPC_BUCKETS, registry=r)
        for strategy in strategies:  # zeros from the start, so dashboards have series
            for counter in (self.found, self.simulated, self.sent, self.confirmed, self.lost,
                            self.reverted, self.held, self.profit, self.loss, self.races_lost):
                counter.labels(strategy)

    def _lag(self) -> float:
        if self._head_timestamp is None:
            return math.nan
        return self._clock() - self._head_timestamp

    # -- chain intake -----------------------------------------------------------------------

    def block_processed(self, number: int, timestamp: int, blocks: int = 1) -> None:
        """The engine processed head `number` (`timestamp` from its header), `blocks` in all."""
        self.head_block.set(number)
        self._head_timestamp = timestamp
        if blocks > 0:
            self.blocks.inc(blocks)

    def events(self, kind: str, count: int = 1) -> None:
        """`count` logs of a kind (a bounded set, e.g. the event name or the strategy)."""
        if count > 0:
            self.event_count.labels(kind).inc(count)

    def positions(self, strategy: str, tracked: int, unhealthy: int) -> None:
        """The strategy's book now: positions tracked and how many are liquidatable."""
        self.tracked.labels(strategy).set(tracked)
        self.unhealthy.labels(strategy).set(unhealthy)

    # -- opportunities and outcomes -----------------------------------------------------------

    def opportunities(self, strategy: str, found: int) -> None:
        """Profitable opportunities ranked for `strategy` in one evaluation."""
        if found > 0:
            self.found.labels(strategy).inc(found)

    def held_back(self, strategy: str, count: int = 1) -> None:
        """Opportunities not handed to execution because a breaker was tripped."""
        if count > 0:
            self.held.labels(strategy).inc(count)

    def outcome(
        self, strategy: str, status: str, profit_wei: int = 0, gas_wei: int = 0, *,
        race_lost: bool = False,
    ) -> None:
        """One executor outcome: its status, realized profit (quote wei, may be negative)
        and the gas it paid (native wei); `race_lost`: a revert explained by a competitor."""
        self.outcomes.labels(strategy, status).inc()
        if race_lost:
            self.races_lost.labels(strategy).inc()
        if status in SIMULATED:
            self.simulated.labels(strategy).inc()
        if status in SENT:
            self.sent.labels(strategy).inc()
        if status == "confirmed":
            self.confirmed.labels(strategy).inc()
        elif status == "reverted":
            self.reverted.labels(strategy).inc()
        elif status == "lost":
            self.lost.labels(strategy).inc()
        if profit_wei > 0:
            self.profit.labels(strategy).inc(profit_wei)
        elif profit_wei < 0:
            self.loss.labels(strategy).inc(-profit_wei)
        self.gas(gas_wei)

    def lost_to_others(self, strategy: str, count: int = 1) -> None:
        """Opportunities someone else liquidated first, found outside an outcome."""
        if count > 0:
            self.lost.labels(strategy).inc(count)

    def gas(self, gas_wei: int) -> None:
        """Gas paid outside a liquidation outcome (approvals, replacements, cancels)."""
        if gas_wei > 0:
            self.gas_spent.inc(gas_wei)

    # -- RPC and breakers ---------------------------------------------------------------------

    def rpc(self, endpoint: str, seconds: float, ok: bool) -> None:
        """One RPC request (a batch counts once) to `endpoint` (a URL or a name)."""
        label = self.endpoint(endpoint)
        self.rpc_requests.labels(label).inc()
        if not ok:
            self.rpc_errors.labels(label).inc()
        self.rpc_latency.labels(label).observe(seconds)

    def endpoint(self, endpoint: str) -> str:
        """The label of `endpoint` (cached: this runs once per request)."""
        label = self._labels.get(endpoint)
        if label is None:
            label = endpoint_label(endpoint)
            if len(self._labels) < _LABEL_CACHE_MAX:
                self._labels[endpoint] = label
        return label

    def track_breakers(self, breakers: Breakers) -> None:
        """Expose `keeper_breaker_tripped{breaker}`, read from `breakers` at each scrape.

        A second call replaces the breakers tracked (never two series for one breaker).
        """
        if self._breakers is None:
            self._breakers = _BreakerCollector(breakers)
            self.registry.register(self._breakers)
        else:
            self._breakers.breakers = breakers

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


# ---------------------------------------------------------------------------- server


@dataclass
class MonitoringServer:
    """A running `/metrics` + `/health` server; `aclose()` stops it."""

    host: str
    port: int
    _runner: web.AppRunner

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def aclose(self) -> None:
        await self._runner.cleanup()


class Exposition(Protocol):
    """What `/metrics` serves: `Metrics`, or several chains' metrics labelled by chain."""

    def exposition(self) -> bytes: ...


class HealthCheck(Protocol):
    """What `/health` serves: `keeper.health.Health`, or several chains' verdicts."""

    def check(self) -> HealthReport: ...


async def serve(
    host: str, port: int, *, metrics: Exposition, health: HealthCheck
) -> MonitoringServer:
    """Serve `/metrics` (Prometheus text) and `/health` (JSON; 503 when failing).

    `port` 0 picks a free port; the returned server's `port` is the one bound (the
    first one, if `host` is a name that resolves to several addresses).
    """

    async def get_metrics(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def get_health(_request: web.Request) -> web.Response:
        report = health.check()
        return web.json_response(report.as_json(), status=report.http_status)

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/health", get_health)
    runner = web.AppRunner(app, access_log=None)  # a scrape every few seconds is not news
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
    except BaseException:
        await runner.cleanup()
        raise
    return MonitoringServer(host, int(bound), runner)

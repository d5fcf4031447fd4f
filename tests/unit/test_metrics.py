"""Metrics: updates appear in the text exposition; endpoint labels never carry URL keys;
the health verdict's mapping."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from keeper.breakers import BreakerLimits, Breakers
from keeper.health import Health
from keeper.metrics import Metrics, endpoint_label
from keeper.secrets import clear_secrets, register_secret

ALCHEMY = "https://eth-mainnet.g.alchemy.com/v2/SECRETKEY"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, tuple(sorted(labels.items())))]


def test_head_blocks_events_positions() -> None:
    clock = Clock()
    m = Metrics(clock=clock, process=False)
    assert math.isnan(value(m, "keeper_head_lag_seconds"))
    m.block_processed(100, int(clock.now) - 12)
    m.block_processed(103, int(clock.now) - 2, blocks=3)
    clock.now += 5
    assert value(m, "keeper_head_block") == 103
    assert value(m, "keeper_head_lag_seconds") == 7  # computed at scrape time
    assert value(m, "keeper_blocks_processed_total") == 4
    m.events("AnswerUpdated", 2)
    m.events("Sync")
    m.events("Sync", 0)
    assert value(m, "keeper_events_total", kind="AnswerUpdated") == 2
    assert value(m, "keeper_events_total", kind="Sync") == 1
    m.positions("aave_v3", 210, 4)
    m.positions("aave_v3", 211, 3)
    assert value(m, "keeper_positions_tracked", strategy="aave_v3") == 211
    assert value(m, "keeper_positions_unhealthy", strategy="aave_v3") == 3


def test_outcomes_map_to_stages_profit_and_gas() -> None:
    m = Metrics(process=False)
    m.opportunities("aave_v3", 5)
    m.outcome("aave_v3", "confirmed", profit_wei=10**18, gas_wei=10**15)
    m.outcome("aave_v3", "reverted", profit_wei=-(10**15), gas_wei=10**15)
    m.outcome("aave_v3", "lost", profit_wei=-(10**14), gas_wei=10**14)
    m.outcome("aave_v3", "simulation-failed")
    m.outcome("aave_v3", "duplicate")
    m.outcome("morpho_blue", "send-failed")
    m.held_back("aave_v3", 2)
    m.lost_to_others("morpho_blue")
    m.gas(5)  # an approval

    def stage(name: str, strategy: str = "aave_v3") -> float:
        return value(m, f"keeper_opportunities_{name}_total", strategy=strategy)

    assert stage("found") == 5
    assert stage("simulated") == 4
    assert stage("sent") == 3
    assert (stage("confirmed"), stage("reverted"), stage("lost")) == (1, 1, 1)
    assert stage("held") == 2
    assert stage("simulated", "morpho_blue") == 1 and stage("lost", "morpho_blue") == 1
    assert value(m, "keeper_outcomes_total", strategy="aave_v3", status="duplicate") == 1
    assert value(m, "keeper_realized_profit_wei_total", strategy="aave_v3") == 10**18
    assert value(m, "keeper_realized_loss_wei_total", strategy="aave_v3") == 11 * 10**14
    assert value(m, "keeper_gas_spent_wei_total") == 10**15 + 10**15 + 10**14 + 5


def test_strategies_start_at_zero() -> None:
    m = Metrics(strategies=["aave_v3"], process=False)
    assert value(m, "keeper_opportunities_confirmed_total", strategy="aave_v3") == 0


def test_rpc_requests_errors_latency() -> None:
    m = Metrics(process=False)
    m.rpc("http://127.0.0.1:8545", 0.004, ok=True)
    m.rpc("http://127.0.0.1:8545", 0.3, ok=False)
    label = {"endpoint": "127.0.0.1:8545"}
    assert value(m, "keeper_rpc_requests_total", **label) == 2
    assert value(m, "keeper_rpc_errors_total", **label) == 1
    assert value(m, "keeper_rpc_latency_seconds_count", **label) == 2
    assert value(m, "keeper_rpc_latency_seconds_bucket", le="0.005", **label) == 1


def test_an_endpoint_label_never_carries_a_key() -> None:
    m = Metrics(process=False)
    m.rpc(ALCHEMY, 0.1, ok=True)
    m.rpc(ALCHEMY, 0.1, ok=False)
    text = m.exposition().decode()
    assert "SECRETKEY" not in text and "/v2" not in text
    assert value(m, "keeper_rpc_requests_total", endpoint="eth-mainnet.g.alchemy.com") == 2


def test_endpoint_labels() -> None:
    assert endpoint_label(ALCHEMY) == "eth-mainnet.g.alchemy.com"
    assert endpoint_label("https://user:pass@rpc.example:8443/x?key=abc") == "rpc.example:8443"
    assert endpoint_label("wss://mainnet.infura.io/ws/v3/0123456789abcdef") == "mainnet.infura.io"
    assert endpoint_label("http://[::1]:8545/") == "[::1]:8545"
    # a key-like host part (some providers put the endpoint's token in the subdomain)
    assert endpoint_label("https://abc123def456ghi789jk.quiknode.pro/KEY/") == (
        "**********.quiknode.pro"
    )
    assert endpoint_label("primary") == "primary"
    assert endpoint_label("primary/with/path?k=v") == "primary"
    assert endpoint_label("") == "unknown"


def test_registered_secrets_are_masked_in_labels() -> None:
    register_secret("myhostsecret")
    try:
        assert "myhostsecret" not in endpoint_label("https://myhostsecret.example/")
    finally:
        clear_secrets()


def test_breaker_state_is_read_at_scrape() -> None:
    m = Metrics(process=False)
    breakers = Breakers(BreakerLimits(max_consecutive_reverts=1))
    m.track_breakers(breakers)
    assert value(m, "keeper_breaker_tripped", breaker="consecutive_reverts") == 0
    assert value(m, "keeper_breaker_enabled", breaker="min_balance") == 0
    breakers.record_outcome("reverted")
    assert value(m, "keeper_breaker_tripped", breaker="consecutive_reverts") == 1
    breakers.reset()
    assert value(m, "keeper_breaker_tripped", breaker="consecutive_reverts") == 0
    m.track_breakers(Breakers(BreakerLimits(min_balance_wei=1)))  # replaces, never duplicates
    assert value(m, "keeper_breaker_enabled", breaker="min_balance") == 1
    assert m.exposition().decode().count('keeper_breaker_tripped{breaker="min_balance"}') == 1


def test_instances_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()
    a.block_processed(1, 0)
    assert value(a, "keeper_blocks_processed_total") == 1
    assert value(b, "keeper_blocks_processed_total") == 0
    assert any(name.startswith("process_") for name, _ in samples(a))


# -- health ------------------------------------------------------------------------------


def test_health_starts_degraded_then_fails_without_heads() -> None:
    clock = Clock(0.0)
    health = Health(stall_seconds=30, clock=clock)
    assert health.check().status == "degraded"
    clock.now = 31
    report = health.check()
    assert report.status == "failing" and report.http_status == 503
    assert report.reasons == ["no head received in 31 s since start"]


def test_health_fails_on_a_stalled_head_and_recovers() -> None:
    clock, wall = Clock(0.0), Clock()
    health = Health(stall_seconds=30, clock=clock, wall=wall)
    health.head(7, int(wall.now))
    report = health.check()
    assert (report.status, report.reasons, report.http_status) == ("healthy", [], 200)
    clock.now = 45
    assert health.check().as_json() == {
        "status": "failing", "reasons": ["head stalled: no new head for 45 s (last 7)"]
    }
    health.head(7, int(wall.now))  # the same head again is not progress
    assert health.check().status == "failing"
    health.head(8, int(wall.now))
    assert health.check().status == "healthy"


def test_health_head_lag() -> None:
    clock, wall = Clock(0.0), Clock()
    health = Health(stall_seconds=30, max_head_lag=120, clock=clock, wall=wall)
    health.head(7, int(wall.now) - 300)
    assert health.check().reasons == ["head 7 is 300 s behind the clock"]


def test_a_tripped_breaker_degrades_and_flags_add_conditions() -> None:
    clock = Clock(0.0)
    breakers = Breakers(BreakerLimits(max_consecutive_reverts=1))
    health = Health(stall_seconds=30, breakers=breakers, clock=clock, wall=clock)
    health.head(1, 0)
    breakers.record_outcome("reverted")
    report = health.check()
    assert report.status == "degraded" and report.http_status == 200
    assert report.reasons[0].startswith("breaker consecutive_reverts tripped: 1 liquidations")
    health.flag("ws", "degraded", "websocket down; polling heads over HTTP")
    health.flag("db", "failing", "journal not writable")
    report = health.check()
    assert report.status == "failing"
    assert report.reasons[0] == "journal not writable"  # failing reasons first
    assert len(report.reasons) == 3
    health.clear("db")
    health.clear("ws")
    health.clear("never-set")
    breakers.reset()
    assert health.check().status == "healthy"

"""The monitoring server on a real socket: /metrics in Prometheus text, /health as JSON, 503
when failing. No chain needed (it sits in integration/ because it binds a port)."""

from __future__ import annotations

import aiohttp

from keeper.breakers import BreakerLimits, Breakers
from keeper.health import Health
from keeper.metrics import Metrics, serve


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_metrics_and_health_over_http() -> None:
    clock = Clock()
    breakers = Breakers(BreakerLimits(max_consecutive_reverts=1))
    metrics = Metrics()
    metrics.track_breakers(breakers)
    health = Health(stall_seconds=30, breakers=breakers, clock=clock, wall=lambda: 1000.0)
    server = await serve("127.0.0.1", 0, metrics=metrics, health=health)
    try:
        assert server.port > 0
        async with aiohttp.ClientSession() as session:

            async def get(path: str) -> tuple[int, str, str]:
                async with session.get(server.url + path) as response:
                    return response.status, response.headers["Content-Type"], await response.text()

            metrics.block_processed(42, 990)
            metrics.rpc("https://eth-mainnet.g.alchemy.com/v2/SECRETKEY", 0.01, ok=True)
            health.head(42, 990)
            status, content_type, text = await get("/metrics")
            assert status == 200 and content_type.startswith("text/plain")
            assert "keeper_head_block 42.0" in text
            assert 'keeper_rpc_requests_total{endpoint="eth-mainnet.g.alchemy.com"} 1.0' in text
            assert 'keeper_breaker_tripped{breaker="consecutive_reverts"} 0.0' in text
            assert "SECRETKEY" not in text

            async with session.get(server.url + "/health") as response:
                assert response.status == 200
                assert await response.json() == {"status": "healthy", "reasons": []}

            breakers.record_outcome("reverted")  # degraded: still 200
            async with session.get(server.url + "/health") as response:
                body = await response.json()
                assert response.status == 200 and body["status"] == "degraded"
                assert "consecutive_reverts" in body["reasons"][0]
            _, _, text = await get("/metrics")
            assert 'keeper_breaker_tripped{breaker="consecutive_reverts"} 1.0' in text

            clock.now = 31  # the head stalls: failing, 503
            async with session.get(server.url + "/health") as response:
                body = await response.json()
                assert response.status == 503 and body["status"] == "failing"
                assert body["reasons"][0] == "head stalled: no new head for 31 s (last 42)"

            status, _, _ = await get("/nope")
            assert status == 404
    finally:
        await server.aclose()
    # closed: the port no longer answers
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(server.url + "/health") as response:
                raise AssertionError(f"still serving: {response.status}")
        except aiohttp.ClientConnectionError:
            pass


async def test_two_servers_on_free_ports() -> None:
    health = Health()
    first = await serve("127.0.0.1", 0, metrics=Metrics(), health=health)
    second = await serve("127.0.0.1", 0, metrics=Metrics(), health=health)
    try:
        assert first.port != second.port
        async with aiohttp.ClientSession() as session, session.get(
            second.url + "/health"
        ) as response:
            assert response.status == 200  # starting: degraded, not failing
            assert (await response.json())["status"] == "degraded"
    finally:
        await first.aclose()
        await second.aclose()

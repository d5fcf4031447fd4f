"""Alert webhooks (keeper/alerts.py): a local HTTP server receives one JSON POST per alert
(breaker tripped, low balance, stalled head, liquidation confirmed); the URLs are secrets,
never in a log line or in `check-config`'s output."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from keeper import alerts, cli, secrets, units
from keeper.alerts import Alerts
from keeper.breakers import BreakerLimits, Breakers
from keeper.health import Health
from keeper.log import configure_logging, reset_logging
from keeper.metrics import Metrics
from keeper.monitor import Monitor
from keeper.types import Outcome

TOKEN = "T0KEN-abcdef0123456789"


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    status = 200

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append({"path": self.path, **body})
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[tuple[str, type[_Hook]]]:
    handler = type("Hook", (_Hook,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/{TOKEN}", handler
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    units.register("0x" + "11" * 20, "WETH", 18, quote=True)
    yield
    units.clear()
    reset_logging()
    secrets.clear_secrets()


def monitor(limits: BreakerLimits) -> Monitor:
    breakers = Breakers(limits)
    return Monitor(Metrics(strategies=["aave_v3"]), Health(breakers=breakers), breakers)


def test_each_alert_is_posted(hook: tuple[str, type[_Hook]]) -> None:
    url, handler = hook

    async def scenario() -> Alerts:
        sender = Alerts([url], chain_id=31337, account="0xabc")
        watched = monitor(BreakerLimits.from_eth(2, None, Decimal(1)))
        watched.alerts = sender.notify
        sender.start()
        watched.outcome(Outcome("k1", "confirmed", tx_hash="0x01", block=7,
                                realized_profit=25 * 10**16, gas_paid=10**15), "aave_v3")
        watched.outcome(Outcome("k2", "reverted"), "aave_v3")
        watched.outcome(Outcome("k3", "reverted"), "aave_v3")  # 2 in a row: tripped
        watched.outcome(Outcome("k4", "reverted"), "aave_v3")  # still tripped: no new alert
        watched.balance(10**17)  # below the 1 ETH floor
        await sender.aclose()
        return sender

    sender = asyncio.run(scenario())
    kinds = [body["kind"] for body in handler.received]
    assert kinds == ["liquidation_confirmed", "breaker_tripped", "low_balance"]
    confirmed, tripped, low = handler.received
    assert confirmed["details"]["realized_profit"] == 25 * 10**16  # exact
    assert "realized 0.25 WETH" in confirmed["text"] and confirmed["chain_id"] == 31337
    assert tripped["details"]["breaker"] == "consecutive_reverts"
    assert "0.1 ETH" in low["text"]
    assert sender.sent == 3 and sender.failed == 0


def test_stalled_head_alert(hook: tuple[str, type[_Hook]], monkeypatch: pytest.MonkeyPatch
                            ) -> None:
    url, handler = hook
    monkeypatch.setattr(alerts, "CHECK_SECONDS", 0.05)

    async def scenario() -> None:
        sender = Alerts([url], kinds=["stalled_head"])
        health = Health(stall_seconds=0.1)
        health.head(5, 0)
        sender.start(health)
        await asyncio.sleep(0.5)  # stalled once: one alert, not one per check
        await sender.aclose()

    asyncio.run(scenario())
    assert [body["kind"] for body in handler.received] == ["stalled_head"]
    assert "no new head" in handler.received[0]["text"]


def test_a_failing_webhook_is_logged_without_its_url(hook: tuple[str, type[_Hook]]) -> None:
    url, handler = hook
    handler.status = 500
    stream = io.StringIO()
    secrets.register_secret(url)
    configure_logging("json", "info", stream)

    async def scenario() -> Alerts:
        sender = Alerts([url])
        sender.start()
        sender.notify("breaker_tripped", {"breaker": "gas_per_hour", "reason": "over"})
        await sender.aclose()
        return sender

    sender = asyncio.run(scenario())
    assert sender.failed == 1
    text = stream.getvalue()
    assert "alert webhook failed" in text and '"webhook": 1' in text and "HTTP 500" in text
    assert TOKEN not in text and "127.0.0.1" not in text


def test_webhook_urls_are_masked_in_check_config(tmp_path: Path) -> None:
    path = tmp_path / "keeper.toml"
    path.write_text('[chain]\nchain_id = 1\nhttp_urls = ["http://127.0.0.1:9"]\n\n'
                    f'[alerts]\nwebhook_urls = ["https://hooks.example/{TOKEN}"]\n'
                    'events = ["breaker_tripped", "low_balance"]\n')
    result = CliRunner().invoke(cli.main, ["check-config", "--offline", str(path)])
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output and "[alerts]" in result.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace("https://", "ftp://"))
    result = CliRunner().invoke(cli.main, ["check-config", "--offline", str(bad)])
    assert result.exit_code == 2 and "alerts.webhook_urls" in result.stderr
    assert TOKEN not in result.stderr

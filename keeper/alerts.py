"""Optional alert webhooks: a breaker tripped, the head stalled, the balance is low, a
liquidation confirmed.

`[alerts] webhook_urls = [...]` (keeper/config_sections.py) lists endpoints that get one
JSON POST per alert:

    {"kind": "breaker_tripped", "text": "keeper: breaker consecutive_reverts tripped: ...",
     "chain_id": 1, "account": "0x...", "details": {...}}

`text` is what chat webhooks (Slack, Mattermost, Discord's `/slack` endpoint) display;
`details` carries exact integers. The URLs are secrets (they usually embed a token): they
are registered with keeper.secrets, masked by `check-config`, and a failing webhook is
logged as "webhook 2", never by its URL. Sending never blocks the engine: alerts queue
(at most `QUEUE` of them; more are dropped and counted) and one task posts them, each
with `timeout_seconds`. The stalled-head alert comes from a watchdog task that reads
`/health`'s verdict every `CHECK_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import structlog

from keeper import units
from keeper.config import KeeperConfig
from keeper.config_sections import ALERT_KINDS
from keeper.health import Health
from keeper.monitor import Monitor
from keeper.secrets import redact

log = structlog.get_logger(__name__)

KINDS = ALERT_KINDS
QUEUE = 100
CHECK_SECONDS = 5.0


def alert_text(kind: str, details: Mapping[str, Any]) -> str:
    """One human line for an alert (amounts in token units)."""
    if kind == "liquidation_confirmed":
        profit = details.get("realized_profit")
        shown = units.amount(profit, None) if isinstance(profit, int) else "?"
        return (f"keeper: liquidation confirmed ({details.get('strategy')}) in block "
                f"{details.get('block')}: realized {shown}, tx {details.get('tx')}")
    if kind == "low_balance":
        balance = details.get("balance")
        shown = units.native(balance) if isinstance(balance, int) else "low"
        return f"keeper: account balance {shown}; sending halted ({details.get('reason')})"
    if kind == "stalled_head":
        return f"keeper: head stalled: {details.get('reason')}"
    return (f"keeper: breaker {details.get('breaker')} tripped: {details.get('reason')}; "
            "sending halted (SIGUSR1 or a restart resumes)")


class Alerts:
    """Posts alerts to the configured webhooks from one background task."""

    def __init__(
        self, urls: Sequence[str], *, kinds: Sequence[str] = KINDS, chain_id: int = 0,
        account: str = "", timeout: float = 5.0,
    ) -> None:
        self.urls = list(urls)
        self.kinds = frozenset(kinds)
        self.chain_id = chain_id
        self.account = account
        self.timeout = timeout
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self._stalled = False

    @classmethod
    def start_for(cls, config: KeeperConfig, account: str, monitor: Monitor) -> Alerts | None:
        """The `[alerts]` of `config`, started and wired to `monitor`; None without URLs."""
        section = config.alerts
        if not section.webhook_urls:
            return None
        alerts = cls([u.get_secret_value() for u in section.webhook_urls], kinds=section.events,
                     chain_id=config.chain.chain_id, account=account,
                     timeout=section.timeout_seconds)
        monitor.alerts = alerts.notify
        alerts.start(monitor.health)
        return alerts

    def notify(self, kind: str, details: Mapping[str, Any]) -> None:
        """Queue one alert (never blocks; a full queue drops it)."""
        if kind not in self.kinds or not self.urls:
            return
        body = {"kind": kind, "text": alert_text(kind, details), "chain_id": self.chain_id,
                "account": self.account, "time": int(time.time()),
                "details": {k: _plain(v) for k, v in details.items()}}
        try:
            self._queue.put_nowait(body)
        except asyncio.QueueFull:
            self.dropped += 1

    def start(self, health: Health | None = None) -> None:
        """Start the sender (and, with `health`, the stalled-head watchdog)."""
        self._tasks.append(asyncio.ensure_future(self._send_loop()))
        if health is not None and "stalled_head" in self.kinds:
            self._tasks.append(asyncio.ensure_future(self._watch(health)))

    async def aclose(self, drain_seconds: float = 2.0) -> None:
        """Send what is queued (for at most `drain_seconds`), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_seconds)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _send_loop(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                body = await self._queue.get()
                try:
                    for index, url in enumerate(self.urls, start=1):
                        await self._post(session, index, url, body)
                finally:
                    self._queue.task_done()

    async def _post(
        self, session: aiohttp.ClientSession, index: int, url: str, body: dict[str, Any]
    ) -> None:
        try:
            async with session.post(url, json=body) as response:
                if response.status >= 300:
                    raise aiohttp.ClientResponseError(
                        response.request_info, (), status=response.status)
            self.sent += 1
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.failed += 1
            # Never the URL (it is a secret): its position in alerts.webhook_urls.
            log.warning("alert webhook failed", webhook=index, kind=body["kind"],
                        reason=redact(type(exc).__name__ + _status(exc)))

    async def _watch(self, health: Health) -> None:
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            report = health.check()
            stalled = [r for r in report.reasons if r.startswith(("head stalled", "no head"))]
            if stalled and not self._stalled:
                self.notify("stalled_head", {"reason": stalled[0]})
            self._stalled = bool(stalled)


def _status(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    return f" (HTTP {status})" if isinstance(status, int) else ""


def _plain(value: Any) -> Any:
    """A JSON-ready value; integers stay exact (JSON numbers of any size)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return json.dumps(str(value))[1:-1]

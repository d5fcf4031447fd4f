"""Where pending answers come from: the public pool (pushed or polled) and a builder's
hint stream. Each source runs until `stop` and calls `on_answer` once per oracle
transaction it recognizes (the same transaction seen again is skipped here).

- `PendingSubscription`: `eth_subscribe ["newPendingTransactions", true]`, which geth
  (1.11+), reth and others answer with full transactions;
- `PoolPoller`: `txpool_content` every `interval` seconds, for a node without that
  subscription (the devnet builder's pool is one: anvil never sees it);
- `HintStream`: MEV-Share's server-sent events (`GET <url>`, `data: <json>` lines), the
  way an SVR feed's private update is announced.

A source that fails (refused, dropped) logs once and retries with a capped backoff: the
keeper still hears the mined `AnswerUpdated` log, so a dead intake costs speed, never
correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

import aiohttp
import structlog

from keeper.chain.ws import Subscription, WsSubscriptions
from keeper.intake.answers import PendingAnswer, from_hint, from_transaction
from keeper.secrets import redact_url

log = structlog.get_logger(__name__)

OnAnswer = Callable[[PendingAnswer], object]
SEEN_KEPT = 4096  # transaction hashes remembered, so a pool poll does not repeat one
BACKOFF = (0.1, 5.0)


class AnswerSource(Protocol):
    """Reads pending answers until `stop` is set."""

    async def run(self, stop: asyncio.Event) -> None: ...


class _Seen:
    """The last SEEN_KEPT transaction hashes."""

    def __init__(self) -> None:
        self._hashes: OrderedDict[str, None] = OrderedDict()

    def first(self, tx_hash: str) -> bool:
        if tx_hash in self._hashes:
            return False
        self._hashes[tx_hash] = None
        if len(self._hashes) > SEEN_KEPT:
            self._hashes.popitem(last=False)
        return True


def _deliver(answer: PendingAnswer | None, seen: _Seen, on_answer: OnAnswer) -> None:
    if answer is not None and seen.first(answer.tx_hash):
        on_answer(answer)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class PendingSubscription:
    """Full pending transactions pushed over a WebSocket."""

    def __init__(self, ws_url: str, feeds: Collection[str], on_answer: OnAnswer) -> None:
        self.socket = WsSubscriptions(ws_url, backoff=BACKOFF)
        self.feeds, self.on_answer = frozenset(f.lower() for f in feeds), on_answer
        self._seen = _Seen()

    def _notify(self, tx: Mapping[str, Any]) -> None:
        if isinstance(tx, Mapping):  # a node without full transactions sends bare hashes
            _deliver(from_transaction(self.feeds, tx), self._seen, self.on_answer)

    async def run(self, stop: asyncio.Event) -> None:
        subscription = Subscription(("newPendingTransactions", True), self._notify)
        await self.socket.run([subscription], stop)


class PoolPoller:
    """`txpool_content` at `url` every `interval` seconds (geth's shape: pending, by
    sender, by nonce)."""

    def __init__(self, url: str, feeds: Collection[str], on_answer: OnAnswer,
                 *, interval: float = 0.005) -> None:
        self.url, self.interval = url, interval
        self.feeds, self.on_answer = frozenset(f.lower() for f in feeds), on_answer
        self.polls = 0
        self._seen = _Seen()

    async def run(self, stop: asyncio.Event) -> None:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "txpool_content",
                           "params": []})
        headers = {"Content-Type": "application/json"}
        delay = BACKOFF[0]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while not stop.is_set():
                try:
                    async with session.post(self.url, data=body, headers=headers) as reply:
                        content = (await reply.json(content_type=None)).get("result") or {}
                    seen_at = time.time()
                    self.polls += 1
                    delay = BACKOFF[0]
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    log.warning("cannot poll the pending pool", url=redact_url(self.url),
                                reason=str(exc) or type(exc).__name__, retry_in=delay)
                    await _pause(stop, delay)
                    delay = min(delay * 2, BACKOFF[1])
                    continue
                for by_nonce in (content.get("pending") or {}).values():
                    for tx in (by_nonce or {}).values():
                        _deliver(from_transaction(self.feeds, tx, seen_at), self._seen,
                                 self.on_answer)
                await _pause(stop, self.interval)


class HintStream:
    """MEV-Share hint events (server-sent events) from `url`."""

    def __init__(self, url: str, feeds: Collection[str], on_answer: OnAnswer) -> None:
        self.url = url
        self.feeds, self.on_answer = frozenset(f.lower() for f in feeds), on_answer
        self.connected = False
        self.events = 0
        self._seen = _Seen()

    async def run(self, stop: asyncio.Event) -> None:
        delay = BACKOFF[0]
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop.is_set():
                reading = asyncio.ensure_future(self._read(session))
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not reading.done():
                    reading.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reading
                    break
                self.connected = False
                error = reading.exception()
                if stop.is_set():
                    break
                log.warning("hint stream closed; reconnecting", url=redact_url(self.url),
                            reason=str(error) if error else "closed by the server",
                            retry_in=delay)
                await _pause(stop, delay)
                delay = min(delay * 2, BACKOFF[1])

    async def _read(self, session: aiohttp.ClientSession) -> None:
        async with session.get(self.url, headers={"Accept": "text/event-stream"}) as reply:
            reply.raise_for_status()
            self.connected = True
            async for line in reply.content:
                if not line.startswith(b"data:"):
                    continue  # comments (":ping"), event names, blank separators
                seen_at = time.time()
                try:
                    event = json.loads(line[5:])
                except ValueError:
                    continue
                self.events += 1
                if isinstance(event, Mapping):
                    _deliver(from_hint(self.feeds, event, seen_at), self._seen, self.on_answer)

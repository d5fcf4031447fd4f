"""`WsSubscriptions`: `eth_subscribe` over one WebSocket, kept alive across drops.

Raw JSON-RPC on a persistent socket (no web3 provider in the way): each
subscription is a `params` list for `eth_subscribe` (`["newHeads"]`,
`["logs", {...}]`) and a callback that gets every notification's `result`.
When the socket drops or a subscription is refused, the client reconnects with
a capped exponential backoff and subscribes again; `connected` says whether
notifications are flowing, so the engine can poll heads over HTTP meanwhile.
Nothing is replayed here: what was missed while disconnected is backfilled by
the engine, which always fetches logs by block number from its last processed
block.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from keeper.chain.http import answer_error
from keeper.errors import RetryableError, RpcUnavailable
from keeper.secrets import redact_url
from keeper.types import LogFilter

log = structlog.get_logger(__name__)

Notify = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Subscription:
    """One `eth_subscribe` and who hears its notifications."""

    params: tuple[Any, ...]
    notify: Notify


def heads(notify: Notify) -> Subscription:
    """New block headers (`eth_subscribe newHeads`)."""
    return Subscription(("newHeads",), notify)


def logs(log_filter: LogFilter, notify: Notify) -> Subscription:
    """Logs matching `log_filter` as their block is imported (`eth_subscribe logs`)."""
    query: dict[str, Any] = {"address": list(log_filter.addresses)}
    if log_filter.topics0:
        query["topics"] = [list(log_filter.topics0)]
    return Subscription(("logs", query), notify)


class WsSubscriptions:
    """Subscriptions on one WebSocket endpoint; `run` keeps them alive until stopped."""

    def __init__(
        self,
        url: str,
        *,
        open_timeout: float = 5.0,
        backoff: tuple[float, float] = (0.1, 5.0),
        max_message: int = 64 * 2**20,
    ) -> None:
        self.url = url
        self.connected = False
        self.connects = 0
        self._open_timeout = open_timeout
        self._backoff = backoff
        self._max_message = max_message
        self._ids = itertools.count(1)
        self._socket: ClientConnection | None = None  # while subscribed
        self._answers: dict[int, asyncio.Future[Any]] = {}  # `request`s awaiting their answer

    async def run(
        self,
        subscriptions: Sequence[Subscription],
        stop: asyncio.Event,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        """Subscribe, dispatch notifications, reconnect on any drop; return once `stop` is set."""
        delay = self._backoff[0]
        where = redact_url(self.url)
        while not stop.is_set():
            try:
                async with connect(self.url, open_timeout=self._open_timeout,
                                   max_size=self._max_message) as socket:
                    routes = await self._subscribe(socket, subscriptions)
                    self._socket = socket
                    self.connected = True
                    self.connects += 1
                    delay = self._backoff[0]
                    log.info("websocket subscribed", url=where, subscriptions=len(routes))
                    if on_connect is not None:
                        on_connect()
                    await self._dispatch(socket, routes, stop)
            except (OSError, TimeoutError, ValueError, WebSocketException,
                    SubscriptionRefused) as exc:
                if stop.is_set():
                    break
                log.warning("websocket down; reconnecting", url=where,
                            reason=f"{type(exc).__name__}: {exc}", retry_in=delay)
            finally:
                self.connected = False
                self._socket = None
                for answer in self._answers.values():
                    if not answer.done():
                        answer.set_exception(RpcUnavailable(f"websocket {where} dropped"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, self._backoff[1])

    async def request(self, method: str, params: Sequence[Any], *,
                      timeout: float = 5.0) -> Any:
        """One JSON-RPC call over the subscribed socket (its answer is routed by id
        between the notifications). The racing send path broadcasts a fired level's first
        transaction this way: one frame on a socket already open, where an HTTP request
        costs a request build and a connection checkout. `RpcUnavailable` when the socket
        is not up (the caller falls back to HTTP); the node's error as `answer_error`."""
        socket = self._socket
        if socket is None or not self.connected:
            raise RpcUnavailable(f"websocket {redact_url(self.url)} is not connected")
        request_id = next(self._ids)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._answers[request_id] = answer
        try:
            await socket.send(json.dumps({"jsonrpc": "2.0", "id": request_id,
                                          "method": method, "params": list(params)}))
            # Not `wait_for`: on 3.11 it can drop a cancellation that comes as the answer
            # does (the socket's end fails every answer waited for), and a send being
            # cancelled at shutdown went on over HTTP instead.
            async with asyncio.timeout(timeout):
                message = await answer
        except (OSError, WebSocketException, TimeoutError) as exc:
            raise RpcUnavailable(f"websocket {redact_url(self.url)}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._answers.pop(request_id, None)
        if message.get("error") is not None:
            raise answer_error(method, message["error"])
        return message.get("result")

    async def _subscribe(
        self, socket: ClientConnection, subscriptions: Sequence[Subscription]
    ) -> dict[str, Notify]:
        routes: dict[str, Notify] = {}
        for subscription in subscriptions:
            request_id = next(self._ids)
            await socket.send(json.dumps({"jsonrpc": "2.0", "id": request_id,
                                          "method": "eth_subscribe",
                                          "params": list(subscription.params)}))
            # Notifications of earlier subscriptions may arrive before this answer.
            while True:
                message = json.loads(await asyncio.wait_for(socket.recv(), self._open_timeout))
                if message.get("id") == request_id:
                    break
                self._route(message, routes)
            if message.get("error") is not None or not isinstance(message.get("result"), str):
                raise SubscriptionRefused(f"eth_subscribe {subscription.params[0]}: "
                                          f"{message.get('error')}")
            routes[message["result"]] = subscription.notify
        return routes

    async def _dispatch(
        self, socket: ClientConnection, routes: dict[str, Notify], stop: asyncio.Event
    ) -> None:
        """Route each message as soon as it is read, until `stop` is set. The read is awaited
        right here: read in a task of its own raced against `stop` (`asyncio.wait`), a
        message reached `_route` three event-loop turns after its bytes, 0.2-0.45 ms on the
        devnet's 2 cores, ahead of a fired level's send. `stop` cancels the read instead
        (websockets: cancelling `recv` loses no message)."""
        me = asyncio.current_task()
        assert me is not None
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(lambda done: done.cancelled() or me.cancel())
        try:
            while True:
                self._route(json.loads(await socket.recv()), routes)
        except asyncio.CancelledError:
            if not stop.is_set() or me.cancelling() > 1:
                raise  # cancelled from outside (the daemon abandoning its work)
            me.uncancel()  # our own, on `stop`
        finally:
            stopping.cancel()

    def _route(self, message: Any, routes: dict[str, Notify]) -> None:
        if not isinstance(message, dict):
            return
        answer = self._answers.get(message["id"]) if "id" in message else None
        if answer is not None and not answer.done():
            answer.set_result(message)  # a `request`'s answer
            return
        if message.get("method") != "eth_subscription":
            return
        params = message.get("params") or {}
        notify = routes.get(str(params.get("subscription")))
        if notify is not None and isinstance(params.get("result"), dict):
            notify(params["result"])


class SubscriptionRefused(RetryableError):
    """The node answered `eth_subscribe` with an error (retried like a dropped socket)."""

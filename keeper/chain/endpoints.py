"""The book-keeping behind `FailoverRpc` (keeper/chain/failover.py): its endpoints, their
health, benching with backoff, probes, and which answers count as failures.

`EndpointPool` holds the endpoints in failover order, each an `HttpRpc` with its own session
and rate limit. The *active* endpoint is the first healthy one. `bench` takes an endpoint out
of use for an exponential backoff (`backoff[0]` doubling per benching, capped at
`backoff[1]`); once that has passed, `schedule_probes` starts a background probe (one batch
of `eth_chainId` and `eth_blockNumber`) that brings it back when it answers on the right
chain with a head no more than one block behind the best healthy head, and benches it again
(for twice as long) otherwise. One found on another chain is disabled for good.

What makes a request move on to the next endpoint (`failure_in`, `FailoverRpc._post`): a
`RetryableError` raised by the endpoint (transport: `RpcUnavailable`; `MalformedAnswer`), or an
answer carrying a `NodeError` (`keeper.chain.http.answer_error`), except the node errors that
every endpoint gives alike for the same request: an eth_getLogs range the node finds too
large (the caller halves it) and a refused eth_sendRawTransaction (the transaction's own
fault: nonce, fee, funds). A `Reverted` is an answer, never a failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import structlog
from asyncio_throttle.throttler import Throttler

from keeper.chain.http import HttpRpc, NodeError, answer_error, refuses_range
from keeper.errors import KeeperError, RetryableError
from keeper.secrets import redact_url

log = structlog.get_logger(__name__)

Observer = Callable[[str, float, bool], None]  # (url, seconds, ok) after every HTTP request
SEND = "eth_sendRawTransaction"


class EndpointLike(Protocol):
    """What an endpoint needs: `keeper.config.HttpEndpoint` fits (and so does `Endpoint`)."""

    @property
    def url(self) -> str: ...

    @property
    def requests_per_second(self) -> float | None: ...


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One endpoint given by hand: its URL and its own rate limit (None: unlimited)."""

    url: str
    requests_per_second: float | None = None


@dataclasses.dataclass(frozen=True)
class EndpointStats:
    """A snapshot of one endpoint, for metrics and health. Times are `time.monotonic()`."""

    url: str  # redacted
    position: int  # its place in the failover order (0: primary)
    active: bool
    requests: int  # HTTP requests sent to it (probes included)
    errors: int  # requests that failed: transport (RpcUnavailable) or a MalformedAnswer
    rpc_errors: int  # answers carrying a JSON-RPC error object (reverts included)
    latency_sum: float  # seconds, over the requests that got an answer
    latency_count: int
    last_latency: float | None
    head: int | None  # the highest block it reported
    benched_until: float | None  # next probe; None when healthy (math.inf: disabled)
    bench_reason: str | None
    failures: int  # consecutive benchings (sets the backoff)


class EndpointState:
    """The pool's book-keeping about one endpoint."""

    def __init__(self, rpc: HttpRpc, position: int) -> None:
        self.rpc = rpc
        self.position = position
        self.where = redact_url(rpc.url)
        self.requests = 0
        self.errors = 0
        self.rpc_errors = 0
        self.latency_sum = 0.0
        self.latency_count = 0
        self.last_latency: float | None = None
        self.head: int | None = None
        self.head_at = time.monotonic()  # when `head` last moved (or the pool opened)
        self.benched_until: float | None = None
        self.bench_reason: str | None = None
        self.stalled_at: int | None = None  # benched as stalled at this head
        self.failures = 0
        self.healthy_since = time.monotonic()
        self.chain_id: int | None = None
        self.probing = False

    @property
    def healthy(self) -> bool:
        return self.benched_until is None

    @property
    def disabled(self) -> bool:
        return self.benched_until == math.inf

    def saw_head(self, number: int) -> None:
        if self.head is None or number > self.head:
            self.head = number
            self.head_at = time.monotonic()


def throttler(requests_per_second: float | None) -> Throttler | None:
    """A throttler allowing `requests_per_second` on average (fractions too: 0.5 = 1 per 2 s)."""
    if requests_per_second is None:
        return None
    if requests_per_second <= 0:
        raise ValueError("requests_per_second must be positive")
    slots = max(1, math.floor(requests_per_second))
    return Throttler(rate_limit=slots, period=slots / requests_per_second)


def hex_int(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


def pairs(payload: Any, answer: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(request, answer) pairs of one HTTP exchange, single or batch."""
    if isinstance(payload, dict) and isinstance(answer, dict):
        return [(payload, answer)]
    if isinstance(payload, list) and isinstance(answer, list):
        by_id = {item.get("id"): item for item in answer if isinstance(item, dict)}
        return [(r, by_id[r.get("id")]) for r in payload
                if isinstance(r, dict) and r.get("id") in by_id]
    return []


def head_in(payload: Any, answer: Any) -> int | None:
    """The highest block number an exchange proves the endpoint has, if any."""
    best: int | None = None
    for request, item in pairs(payload, answer):
        result = item.get("result")
        number: int | None = None
        if request.get("method") == "eth_blockNumber":
            number = hex_int(result)
        elif request.get("method") == "eth_getBlockByNumber" and isinstance(result, dict):
            number = hex_int(result.get("number"))
        if number is not None and (best is None or number > best):
            best = number
    return best


def has_error(answer: Any) -> bool:
    if isinstance(answer, dict):
        return answer.get("error") is not None
    if isinstance(answer, list):
        return any(isinstance(i, dict) and i.get("error") is not None for i in answer)
    return False


def failure_in(payload: Any, answer: Any) -> NodeError | None:
    """The node error in an answer that makes the request move on to the next endpoint, if
    any (see the module docstring). `answer` was checked by `keeper.chain.http.check_answer`."""
    if isinstance(payload, list) and isinstance(answer, dict):  # a batch refused as a whole
        error = answer_error("batch", answer.get("error"))
        return error if isinstance(error, NodeError) else None
    for request, item in pairs(payload, answer):
        if item.get("error") is None:
            continue
        method = str(request.get("method"))
        error = answer_error(method, item["error"])
        if not isinstance(error, NodeError) or method == SEND:
            continue
        if method == "eth_getLogs" and refuses_range(error):
            continue
        return error
    return None


class EndpointPool:
    """The endpoints of one `FailoverRpc`, in failover order, and their health."""

    def __init__(self, endpoints: Sequence[EndpointState], backoff: tuple[float, float]) -> None:
        self.endpoints = list(endpoints)
        self.backoff = backoff
        self.chain_id: int | None = None  # what probes must find (set once the pool is open)
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def active(self) -> EndpointState | None:
        return next((e for e in self.endpoints if e.healthy), None)

    def next_to_try(self, tried: Sequence[EndpointState]) -> EndpointState | None:
        """The first healthy endpoint not tried yet; else a benched one, soonest probe first."""
        for endpoint in self.endpoints:
            if endpoint.healthy and endpoint not in tried:
                return endpoint
        benched = [e for e in self.endpoints
                   if not e.healthy and not e.disabled and e not in tried]
        return min(benched, key=lambda e: e.benched_until or 0.0, default=None)

    def request(self, method: str, params: Sequence[Any] = ()) -> dict[str, Any]:
        """A request of the pool's own (opens, probes, head reads, look-ups)."""
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                "params": list(params)}

    async def send_to(
        self, endpoint: EndpointState, payload: Any, observer: Observer | None
    ) -> Any:
        """One HTTP request to one endpoint (its throttle included), with its stats."""
        endpoint.requests += 1
        started = time.perf_counter()
        try:
            answer = await endpoint.rpc._post(payload)
        except RetryableError:
            endpoint.errors += 1
            if observer is not None:
                observer(endpoint.rpc.url, time.perf_counter() - started, False)
            raise
        latency = time.perf_counter() - started
        if observer is not None:
            observer(endpoint.rpc.url, latency, True)
        endpoint.last_latency = latency
        endpoint.latency_sum += latency
        endpoint.latency_count += 1
        if has_error(answer):
            endpoint.rpc_errors += 1
        head = head_in(payload, answer)
        if head is not None:
            endpoint.saw_head(head)
        return answer

    def served(self, endpoint: EndpointState) -> None:
        """A request succeeded on `endpoint`."""
        now = time.monotonic()
        if not endpoint.healthy and endpoint.stalled_at is None and not endpoint.disabled:
            self.recover(endpoint, "answered a request")  # used as the last resort: it is back
        elif endpoint.healthy and now - endpoint.healthy_since >= self.backoff[1]:
            endpoint.failures = 0  # stable for a while: the next benching starts short again

    def bench(self, endpoint: EndpointState, reason: str, *, stalled: bool = False) -> None:
        now = time.monotonic()
        if endpoint.disabled or (endpoint.benched_until is not None
                                 and endpoint.benched_until > now):
            return  # already benched (concurrent failures count once)
        was_active = endpoint is self.active()
        endpoint.failures += 1
        delay = min(self.backoff[0] * 2 ** (endpoint.failures - 1), self.backoff[1])
        endpoint.benched_until = now + delay
        endpoint.bench_reason = reason
        if stalled:
            endpoint.stalled_at = endpoint.head if endpoint.head is not None else -1
        successor = self.active()
        if was_active:
            log.warning("rpc endpoint failing; failing over", url=endpoint.where,
                        to=successor.where if successor is not None else None,
                        reason=reason, retry_in=round(delay, 3))
        else:
            log.info("rpc endpoint benched", url=endpoint.where, reason=reason,
                     retry_in=round(delay, 3))

    def recover(self, endpoint: EndpointState, why: str) -> None:
        previous = self.active()
        endpoint.benched_until = None
        endpoint.bench_reason = None
        endpoint.stalled_at = None
        endpoint.healthy_since = time.monotonic()
        log.info("rpc endpoint healthy again", url=endpoint.where, why=why,
                 active=previous is None or endpoint.position < previous.position)

    def schedule_probes(self, observer: Observer | None) -> None:
        """Start a probe of every benched endpoint whose backoff has passed."""
        now = time.monotonic()
        for endpoint in self.endpoints:
            due = endpoint.benched_until
            if due is not None and due <= now and not endpoint.probing:
                endpoint.probing = True
                task = asyncio.ensure_future(self._probe(endpoint, observer))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _probe(self, endpoint: EndpointState, observer: Observer | None) -> None:
        """Ask a benched endpoint for its chain id and head; bring it back if they are right."""
        try:
            requests = [self.request("eth_chainId"), self.request("eth_blockNumber")]
            try:
                answer = await self.send_to(endpoint, requests, observer)
                chain_id, head = (HttpRpc._result(r["method"], a)
                                  for r, a in pairs(requests, answer))
            except (KeeperError, ValueError) as exc:
                self.bench(endpoint, f"probe failed: {exc}")
                return
            if hex_int(chain_id) != self.chain_id:
                endpoint.benched_until = math.inf
                endpoint.bench_reason = f"serves chain id {hex_int(chain_id)}"
                log.error("rpc endpoint serves another chain; not used again",
                          url=endpoint.where, chain_id=hex_int(chain_id),
                          expected=self.chain_id)
                return
            endpoint.chain_id = self.chain_id
            number = hex_int(head)
            best = max((e.head for e in self.endpoints
                        if e.healthy and e.head is not None), default=None)
            if number is None or (best is not None and number < best - 1):
                self.bench(endpoint, f"behind: at block {number}, others at {best}")
            elif endpoint.stalled_at is not None and number <= endpoint.stalled_at:
                self.bench(endpoint, f"head still stalled at block {number}", stalled=True)
            else:
                self.recover(endpoint, f"probe answered at block {number}")
        finally:
            endpoint.probing = False

    def stats(self) -> list[EndpointStats]:
        """One snapshot per endpoint, in failover order."""
        active = self.active()
        return [
            EndpointStats(
                url=e.where, position=e.position, active=e is active, requests=e.requests,
                errors=e.errors, rpc_errors=e.rpc_errors, latency_sum=e.latency_sum,
                latency_count=e.latency_count, last_latency=e.last_latency, head=e.head,
                benched_until=e.benched_until, bench_reason=e.bench_reason,
                failures=e.failures,
            )
            for e in self.endpoints
        ]

    async def aclose(self) -> None:
        """Stop the probes and close every endpoint's session."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for endpoint in self.endpoints:
            await endpoint.rpc.aclose()

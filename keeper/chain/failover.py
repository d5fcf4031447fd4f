"""`FailoverRpc`: several HTTP JSON-RPC endpoints of one chain behind the `HttpRpc` interface.

The endpoints are kept in failover order, each an `HttpRpc` with its own session and its
own rate limit (an asyncio-throttle `Throttler` per endpoint). The *active* endpoint is the
first healthy one in that order; every HTTP request (one call, or one batch chunk) goes to
it. `FailoverRpc` subclasses `HttpRpc` and overrides only `_post`, so `call`, `batch`,
`eth_call`, `get_logs` and `header_and_logs` keep their chunking and error handling, and a
`FailoverRpc` goes wherever an `HttpRpc` (or a `ChainReader`) is expected.

Failing over:

* A request that fails with `RpcUnavailable` (transport error, HTTP 5xx or 429, timeout,
  an answer that is not JSON) is sent again at once to the next healthy endpoint; the
  failed one is *benched* with an exponential backoff. JSON-RPC errors (`RpcError`, e.g.
  "execution reverted") are answers, not failures: they are returned, never retried.
* A benched endpoint is probed in the background once its backoff has passed (one batch
  of `eth_chainId` and `eth_blockNumber`); it is healthy again, and preferred again by
  its place in the order, once it answers on the right chain with a head no more than one
  block behind the best head the healthy endpoints reported. A probe that fails benches it
  for twice as long (capped). An endpoint found on another chain is disabled for good.
* If every endpoint is benched, a request still tries them all (soonest probe first)
  before raising `RpcUnavailable`.

Stalled heads: the head of every endpoint is read from the answers it gives anyway
(`eth_blockNumber`, `eth_getBlockByNumber`). `check_head()` is meant to be awaited by the
engine once per head poll (`Engine._poll_heads`, every iteration, WebSocket or not). It
costs nothing while the active endpoint's head advanced within `stall_after` seconds
(default max(3 * `block_time`, 1 s)). Otherwise it asks every healthy endpoint for
`eth_blockNumber` (each answer awaited at most `probe_timeout`); if the active one has
still not advanced and another one reports a higher head, the active one (and any endpoint
before that one in the order) is benched as stalled and requests go to that endpoint from
the next one on: the switch happens within `probe_timeout` (0.5 s) of the detection. A
stalled endpoint comes back only once its head has moved past the block it stalled at.

At open every endpoint is asked for its chain id. One that answers another chain id than
the others (or than `chain_id`, when given) is a `ChainMismatch` naming its redacted URL;
one that does not answer is only a warning (it is benched and probed later); if none
answers, `RpcUnavailable`.

`endpoints_stats()` gives one `EndpointStats` per endpoint for metrics: requests, transport
errors, JSON-RPC error answers, latency (last, sum and count; the endpoint's throttle wait
included), its head, whether it is active and until when it is benched. URLs appear only
redacted (`keeper.secrets.redact_url`) in stats, logs and errors.

`requests_sent` counts the HTTP requests sent for callers (each attempt of a request that
failed over counts) plus the open-time requests; background probes and stall checks are
counted only in the per-endpoint stats.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol

import structlog
from asyncio_throttle.throttler import Throttler

from keeper.chain.http import HttpRpc
from keeper.errors import ChainMismatch, KeeperError, RpcUnavailable
from keeper.secrets import redact_url

log = structlog.get_logger(__name__)

DEFAULT_BLOCK_TIME = 12.0  # seconds: Ethereum mainnet
MIN_STALL = 1.0  # seconds: a stall window never shorter than this


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
    errors: int  # transport failures (RpcUnavailable)
    rpc_errors: int  # answers carrying a JSON-RPC error object (not failures)
    latency_sum: float  # seconds, over the requests that got an answer
    latency_count: int
    last_latency: float | None
    head: int | None  # the highest block it reported
    benched_until: float | None  # next probe; None when healthy (math.inf: disabled)
    bench_reason: str | None
    failures: int  # consecutive benchings (sets the backoff)


class _Endpoint:
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


def _throttler(requests_per_second: float | None) -> Throttler | None:
    """A throttler allowing `requests_per_second` on average (fractions too: 0.5 = 1 per 2 s)."""
    if requests_per_second is None:
        return None
    if requests_per_second <= 0:
        raise ValueError("requests_per_second must be positive")
    slots = max(1, math.floor(requests_per_second))
    return Throttler(rate_limit=slots, period=slots / requests_per_second)


def _hex_int(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


def _pairs(payload: Any, answer: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(request, answer) pairs of one HTTP exchange, single or batch."""
    if isinstance(payload, dict) and isinstance(answer, dict):
        return [(payload, answer)]
    if isinstance(payload, list) and isinstance(answer, list):
        by_id = {item.get("id"): item for item in answer if isinstance(item, dict)}
        return [(r, by_id[r.get("id")]) for r in payload
                if isinstance(r, dict) and r.get("id") in by_id]
    return []


def _head_in(payload: Any, answer: Any) -> int | None:
    """The highest block number an exchange proves the endpoint has, if any."""
    best: int | None = None
    for request, item in _pairs(payload, answer):
        result = item.get("result")
        number: int | None = None
        if request.get("method") == "eth_blockNumber":
            number = _hex_int(result)
        elif request.get("method") == "eth_getBlockByNumber" and isinstance(result, dict):
            number = _hex_int(result.get("number"))
        if number is not None and (best is None or number > best):
            best = number
    return best


def _has_error(answer: Any) -> bool:
    if isinstance(answer, dict):
        return answer.get("error") is not None
    if isinstance(answer, list):
        return any(isinstance(i, dict) and i.get("error") is not None for i in answer)
    return False


class FailoverRpc(HttpRpc):
    """An `HttpRpc` over several endpoints of one chain, failing over between them."""

    def __init__(
        self,
        endpoints: str | Sequence[str | EndpointLike],
        *,
        max_batch: int = 1000,
        max_log_range: int = 10_000,
        requests_per_second: float | None = None,
        timeout: float = 10,
        block_time: float = DEFAULT_BLOCK_TIME,
        stall_after: float | None = None,
        chain_id: int | None = None,
        backoff: tuple[float, float] = (0.5, 30.0),
        probe_timeout: float = 0.5,
        stall_recheck: float = 0.5,
    ) -> None:
        """`endpoints` in failover order: URLs (rate limit `requests_per_second`) or objects
        with `url` and `requests_per_second` (e.g. `config.chain.http_urls`).

        `block_time` sets the stall window, max(3 * block_time, 1 s), unless `stall_after`
        is given. `chain_id`, when given, is what every endpoint must serve.
        """
        items = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not items:
            raise ValueError("FailoverRpc needs at least one endpoint")
        specs = [Endpoint(i, requests_per_second) if isinstance(i, str) else i for i in items]
        self._endpoints = [
            _Endpoint(HttpRpc(s.url, max_batch=max_batch, max_log_range=max_log_range,
                              timeout=timeout), position)
            for position, s in enumerate(specs)
        ]
        for endpoint, spec in zip(self._endpoints, specs, strict=True):
            endpoint.rpc.throttler = _throttler(spec.requests_per_second)
        super().__init__(specs[0].url, max_batch=max_batch, max_log_range=max_log_range,
                         timeout=timeout)
        self.block_time = block_time
        self.stall_after = (stall_after if stall_after is not None
                            else max(3 * block_time, MIN_STALL))
        self.expected_chain_id = chain_id
        self._backoff = backoff
        self._probe_timeout = probe_timeout
        self._stall_recheck = stall_recheck
        self._next_stall_check = 0.0
        self._checking = False
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the HttpRpc surface ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The active endpoint's URL (unredacted, as `HttpRpc.url`: redact before printing)."""
        active = self._active() or self._endpoints[0]
        return active.rpc.url

    @url.setter
    def url(self, value: str) -> None:
        # HttpRpc.__init__ assigns it; the active URL is otherwise chosen by health only.
        if value not in {e.rpc.url for e in self._endpoints}:
            raise AttributeError("FailoverRpc.url is the active endpoint's; it cannot be set")

    @classmethod
    async def open(
        cls,
        url: str | Sequence[str | EndpointLike],
        *,
        max_batch: int = 1000,
        max_log_range: int = 10_000,
        requests_per_second: float | None = None,
        timeout: float = 10,
        block_time: float = DEFAULT_BLOCK_TIME,
        stall_after: float | None = None,
        chain_id: int | None = None,
        backoff: tuple[float, float] = (0.5, 30.0),
        probe_timeout: float = 0.5,
    ) -> FailoverRpc:
        """A connected pool over `url` (one URL or several endpoints, in failover order):
        chain ids checked, unreachable endpoints benched (see the module docstring)."""
        rpc = cls(url, max_batch=max_batch, max_log_range=max_log_range,
                  requests_per_second=requests_per_second, timeout=timeout,
                  block_time=block_time, stall_after=stall_after, chain_id=chain_id,
                  backoff=backoff, probe_timeout=probe_timeout)
        try:
            await rpc.connect()
        except BaseException:
            await rpc.aclose()
            raise
        return rpc

    async def connect(self) -> None:
        """Ask every endpoint for its chain id (and head) at once; see the module docstring."""
        results = await asyncio.gather(*(self._open_endpoint(e) for e in self._endpoints),
                                       return_exceptions=True)
        reasons: list[str] = []
        for endpoint, result in zip(self._endpoints, results, strict=True):
            if isinstance(result, RpcUnavailable):
                reasons.append(str(result))
                log.warning("rpc endpoint unreachable at start; will retry it",
                            url=endpoint.where, reason=str(result))
                self._bench(endpoint, str(result))
            elif isinstance(result, BaseException):
                raise result
        answered = [e for e in self._endpoints if e.chain_id is not None]
        if not answered:
            raise RpcUnavailable("no RPC endpoint answered: " + "; ".join(reasons))
        reference = answered[0]
        assert reference.chain_id is not None
        expected = self.expected_chain_id
        for endpoint in answered:
            if expected is not None and endpoint.chain_id != expected:
                raise ChainMismatch(f"RPC {endpoint.where} serves chain id {endpoint.chain_id}, "
                                    f"but chain.chain_id is {expected}")
            if endpoint.chain_id != reference.chain_id:
                raise ChainMismatch(f"RPC {endpoint.where} serves chain id {endpoint.chain_id}, "
                                    f"but RPC {reference.where} serves chain id "
                                    f"{reference.chain_id}: every endpoint must serve one chain")
        self.chain_id = reference.chain_id

    async def aclose(self) -> None:
        """Stop the probes and close every endpoint's session."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for endpoint in self._endpoints:
            await endpoint.rpc.aclose()
        await super().aclose()

    async def __aenter__(self) -> FailoverRpc:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _post(self, payload: Any) -> Any:
        """Send to the active endpoint; on RpcUnavailable, at once to the next one."""
        self._schedule_probes()
        tried: list[_Endpoint] = []
        reasons: list[str] = []
        while (endpoint := self._next(tried)) is not None:
            tried.append(endpoint)
            self.requests_sent += 1
            try:
                answer = await self._send_to(endpoint, payload)
            except RpcUnavailable as exc:
                reasons.append(str(exc))
                self._bench(endpoint, str(exc))
                continue
            self._served(endpoint)
            return answer
        if not reasons:
            raise RpcUnavailable("no usable RPC endpoint (every one is disabled)")
        raise RpcUnavailable(f"every RPC endpoint failed: {'; '.join(reasons)}")

    # -- stalled heads ----------------------------------------------------------------------

    async def check_head(self, stall_after: float | None = None) -> bool:
        """Fail over if the active endpoint's head is stalled while another one is ahead.

        Call once per head poll: free unless the active head has not moved for
        `stall_after` seconds (default: the pool's window). True when it failed over.
        """
        self._schedule_probes()
        window = self.stall_after if stall_after is None else stall_after
        active = self._active()
        now = time.monotonic()
        if active is None or self._checking or now < self._next_stall_check:
            return False
        if now - active.head_at < window:
            return False
        others = [e for e in self._endpoints if e.healthy and e is not active]
        if not others:
            return False
        self._checking = True
        try:
            await asyncio.gather(*(self._read_head(e) for e in [active, *others]))
        finally:
            self._checking = False
        if self._active() is not active:
            return True  # it failed to answer: benched, already failed over
        if time.monotonic() - active.head_at < window:
            return False  # it moved after all
        base = active.head
        target = next((e for e in others if e.healthy and e.head is not None
                       and (base is None or e.head > base)), None)
        if target is None:
            self._next_stall_check = time.monotonic() + self._stall_recheck
            return False
        stalled_for = time.monotonic() - active.head_at
        for endpoint in self._endpoints[: target.position]:
            if endpoint.healthy:
                reason = (f"head stalled at block {endpoint.head} for {stalled_for:.1f}s "
                          f"while RPC {target.where} is at block {target.head}")
                self._bench(endpoint, reason, stalled=True)
        target.head_at = time.monotonic()  # the new active one gets a full window
        return True

    async def _read_head(self, endpoint: _Endpoint) -> None:
        request = self._request("eth_blockNumber", [])
        try:
            await asyncio.wait_for(self._send_to(endpoint, request), self._probe_timeout)
        except RpcUnavailable as exc:
            self._bench(endpoint, str(exc))
        except (TimeoutError, KeeperError):
            pass  # no answer in time: it is not the one to fail over to

    # -- stats ------------------------------------------------------------------------------

    def endpoints_stats(self) -> list[EndpointStats]:
        """One snapshot per endpoint, in failover order."""
        active = self._active()
        return [
            EndpointStats(
                url=e.where, position=e.position, active=e is active, requests=e.requests,
                errors=e.errors, rpc_errors=e.rpc_errors, latency_sum=e.latency_sum,
                latency_count=e.latency_count, last_latency=e.last_latency, head=e.head,
                benched_until=e.benched_until, bench_reason=e.bench_reason,
                failures=e.failures,
            )
            for e in self._endpoints
        ]

    # -- internals --------------------------------------------------------------------------

    def _active(self) -> _Endpoint | None:
        return next((e for e in self._endpoints if e.healthy), None)

    def _next(self, tried: list[_Endpoint]) -> _Endpoint | None:
        """The first healthy endpoint not tried yet; else a benched one, soonest probe first."""
        for endpoint in self._endpoints:
            if endpoint.healthy and endpoint not in tried:
                return endpoint
        benched = [e for e in self._endpoints
                   if not e.healthy and not e.disabled and e not in tried]
        return min(benched, key=lambda e: e.benched_until or 0.0, default=None)

    async def _send_to(self, endpoint: _Endpoint, payload: Any) -> Any:
        """One HTTP request to one endpoint (its throttle included), with its stats."""
        endpoint.requests += 1
        started = time.perf_counter()
        try:
            answer = await endpoint.rpc._post(payload)
        except RpcUnavailable:
            endpoint.errors += 1
            if self.observer is not None:
                self.observer(endpoint.rpc.url, time.perf_counter() - started, False)
            raise
        latency = time.perf_counter() - started
        if self.observer is not None:
            self.observer(endpoint.rpc.url, latency, True)
        endpoint.last_latency = latency
        endpoint.latency_sum += latency
        endpoint.latency_count += 1
        if _has_error(answer):
            endpoint.rpc_errors += 1
        head = _head_in(payload, answer)
        if head is not None:
            endpoint.saw_head(head)
        return answer

    def _served(self, endpoint: _Endpoint) -> None:
        """A request succeeded on `endpoint`."""
        now = time.monotonic()
        if not endpoint.healthy and endpoint.stalled_at is None and not endpoint.disabled:
            self._recover(endpoint, "answered a request")  # used as the last resort: it is back
        elif endpoint.healthy and now - endpoint.healthy_since >= self._backoff[1]:
            endpoint.failures = 0  # stable for a while: the next benching starts short again

    def _bench(self, endpoint: _Endpoint, reason: str, *, stalled: bool = False) -> None:
        now = time.monotonic()
        if endpoint.disabled or (endpoint.benched_until is not None
                                 and endpoint.benched_until > now):
            return  # already benched (concurrent failures count once)
        was_active = endpoint is self._active()
        endpoint.failures += 1
        delay = min(self._backoff[0] * 2 ** (endpoint.failures - 1), self._backoff[1])
        endpoint.benched_until = now + delay
        endpoint.bench_reason = reason
        if stalled:
            endpoint.stalled_at = endpoint.head if endpoint.head is not None else -1
        successor = self._active()
        if was_active:
            log.warning("rpc endpoint failing; failing over", url=endpoint.where,
                        to=successor.where if successor is not None else None,
                        reason=reason, retry_in=round(delay, 3))
        else:
            log.info("rpc endpoint benched", url=endpoint.where, reason=reason,
                     retry_in=round(delay, 3))

    def _recover(self, endpoint: _Endpoint, why: str) -> None:
        previous = self._active()
        endpoint.benched_until = None
        endpoint.bench_reason = None
        endpoint.stalled_at = None
        endpoint.healthy_since = time.monotonic()
        log.info("rpc endpoint healthy again", url=endpoint.where, why=why,
                 active=previous is None or endpoint.position < previous.position)

    def _schedule_probes(self) -> None:
        now = time.monotonic()
        for endpoint in self._endpoints:
            due = endpoint.benched_until
            if due is not None and due <= now and not endpoint.probing:
                endpoint.probing = True
                task = asyncio.ensure_future(self._probe(endpoint))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _probe(self, endpoint: _Endpoint) -> None:
        """Ask a benched endpoint for its chain id and head; bring it back if they are right."""
        try:
            requests = [self._request("eth_chainId", []), self._request("eth_blockNumber", [])]
            try:
                answer = await self._send_to(endpoint, requests)
                chain_id, head = (self._result(r["method"], a) for r, a in
                                  _pairs(requests, answer))
            except (KeeperError, ValueError) as exc:
                self._bench(endpoint, f"probe failed: {exc}")
                return
            if _hex_int(chain_id) != self.chain_id:
                endpoint.benched_until = math.inf
                endpoint.bench_reason = f"serves chain id {_hex_int(chain_id)}"
                log.error("rpc endpoint serves another chain; not used again",
                          url=endpoint.where, chain_id=_hex_int(chain_id),
                          expected=self.chain_id)
                return
            endpoint.chain_id = self.chain_id
            number = _hex_int(head)
            best = max((e.head for e in self._endpoints
                        if e.healthy and e.head is not None), default=None)
            if number is None or (best is not None and number < best - 1):
                self._bench(endpoint, f"behind: at block {number}, others at {best}")
            elif endpoint.stalled_at is not None and number <= endpoint.stalled_at:
                self._bench(endpoint, f"head still stalled at block {number}", stalled=True)
            else:
                self._recover(endpoint, f"probe answered at block {number}")
        finally:
            endpoint.probing = False

    async def _open_endpoint(self, endpoint: _Endpoint) -> None:
        requests = [self._request("eth_chainId", []), self._request("eth_blockNumber", [])]
        self.requests_sent += 1
        answer = await self._send_to(endpoint, requests)
        pairs = _pairs(requests, answer)
        if len(pairs) != len(requests):
            raise KeeperError(f"RPC {endpoint.where}: malformed answer to eth_chainId")
        chain_id = _hex_int(self._result("eth_chainId", pairs[0][1]))
        if chain_id is None:
            raise KeeperError(f"RPC {endpoint.where}: eth_chainId answered no number")
        endpoint.chain_id = chain_id

"""`FailoverRpc`: several HTTP JSON-RPC endpoints of one chain behind the `HttpRpc` interface.

The endpoints are kept in failover order, each an `HttpRpc` with its own session and its
own rate limit (an asyncio-throttle `Throttler` per endpoint). The *active* endpoint is the
first healthy one in that order; every HTTP request (one call, or one batch chunk) goes to
it. `FailoverRpc` subclasses `HttpRpc` and overrides only `_post`, so `call`, `batch`,
`eth_call`, `get_logs` and `header_and_logs` keep their chunking and error handling, and a
`FailoverRpc` goes wherever an `HttpRpc` (or a `ChainReader`) is expected. The endpoints'
book-keeping (health, benching, probes, stats) is `EndpointPool` in keeper/chain/endpoints.py.

Failing over:

* A request that fails with a `RetryableError` is sent again at once to the next healthy
  endpoint, and the failed one is *benched* with an exponential backoff. That is a transport
  failure (`RpcUnavailable`: no connection, HTTP 5xx or 429, timeout), a `MalformedAnswer`
  (a body that is not JSON or is empty, a batch item missing, a wrong id, an item with
  neither result nor error), or an answer carrying a `NodeError` (a lagging or rate-limited
  node), except the node errors every endpoint gives alike (an eth_getLogs range too large,
  a refused eth_sendRawTransaction). A `Reverted` (e.g. "execution reverted") is an answer,
  the same everywhere: it is returned, never retried.
* When every endpoint failed, a node's error answer, if one gave any, is raised as with one
  endpoint (a `NodeError` naming the method); else `MalformedAnswer` if every failure was
  one, else `RpcUnavailable`, naming every (redacted) endpoint and what it did.
* A send (eth_sendRawTransaction) that failed on one endpoint and is then refused by the next
  one ("already known", "nonce too low") may have got through the first time: if the node
  knows the transaction by its hash, the send succeeded and its hash is the answer.
* A benched endpoint is probed in the background once its backoff has passed (one batch
  of `eth_chainId` and `eth_blockNumber`); it is healthy again, and preferred again by
  its place in the order, once it answers on the right chain with a head no more than one
  block behind the best head the healthy endpoints reported. A probe that fails benches it
  for twice as long (capped). An endpoint found on another chain is disabled for good.
* If every endpoint is benched, a request still tries them all (soonest probe first)
  before raising.

Stalled heads: the head of every endpoint is read from the answers it gives anyway
(`eth_blockNumber`, `eth_getBlockByNumber`). `check_head()` is meant to be awaited once per
head poll by the chain follower (every iteration, WebSocket or not). It costs nothing while
the active endpoint's head advanced within `stall_after` seconds (default
max(3 * `block_time`, 1 s)). Otherwise it asks every healthy endpoint for `eth_blockNumber`
(each answer awaited at most `probe_timeout`); if the active one has still not advanced and
another one reports a higher head, the active one (and any endpoint before that one in the
order) is benched as stalled and requests go to that endpoint from the next one on: the
switch happens within `probe_timeout` (0.5 s) of the detection. A stalled endpoint comes
back only once its head has moved past the block it stalled at.

At open every endpoint is asked for its chain id. One that answers another chain id than
the others (or than `chain_id`, when given) is a `ChainMismatch` naming its redacted URL;
one that does not answer, or answers badly (any `RetryableError`), is only a warning (it is
benched and probed later); if none answers, `RpcUnavailable`.

`endpoints_stats()` gives one `EndpointStats` per endpoint for metrics: requests, failed
requests, JSON-RPC error answers, latency (last, sum and count; the endpoint's throttle wait
included), its head, whether it is active and until when it is benched. URLs appear only
redacted (`keeper.secrets.redact_url`) in stats, logs and errors.

`requests_sent` counts the HTTP requests sent for callers (each attempt of a request that
failed over counts) plus the open-time requests; background probes, stall checks and the
look-up of a retried send are counted only in the per-endpoint stats.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import structlog
from eth_utils.crypto import keccak

from keeper.chain.endpoints import (
    SEND,
    Endpoint,
    EndpointLike,
    EndpointPool,
    EndpointState,
    EndpointStats,
    Observer,
    failure_in,
    has_error,
    hex_int,
    pairs,
    throttler,
)
from keeper.chain.http import HttpRpc, answer_error
from keeper.errors import ChainMismatch, MalformedAnswer, RetryableError, RpcUnavailable

__all__ = [
    "DEFAULT_BLOCK_TIME", "MIN_STALL", "Endpoint", "EndpointLike", "EndpointStats", "FailoverRpc",
]

log = structlog.get_logger(__name__)

DEFAULT_BLOCK_TIME = 12.0  # seconds: Ethereum mainnet
MIN_STALL = 1.0  # seconds: a stall window never shorter than this


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
        observer: Observer | None = None,
    ) -> None:
        """`endpoints` in failover order: URLs (rate limit `requests_per_second`) or objects
        with `url` and `requests_per_second` (e.g. `config.chain.http_urls`).

        `block_time` sets the stall window, max(3 * block_time, 1 s), unless `stall_after`
        is given. `chain_id`, when given, is what every endpoint must serve. `observer` is
        called after every HTTP request to an endpoint with (url, seconds, ok).
        """
        items = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not items:
            raise ValueError("FailoverRpc needs at least one endpoint")
        specs = [Endpoint(i, requests_per_second) if isinstance(i, str) else i for i in items]
        states = [
            EndpointState(HttpRpc(s.url, max_batch=max_batch, max_log_range=max_log_range,
                                  timeout=timeout), position)
            for position, s in enumerate(specs)
        ]
        for endpoint, spec in zip(states, specs, strict=True):
            endpoint.rpc.throttler = throttler(spec.requests_per_second)
        self._pool = EndpointPool(states, backoff)
        super().__init__(specs[0].url, max_batch=max_batch, max_log_range=max_log_range,
                         timeout=timeout, observer=observer)
        self.block_time = block_time
        self.stall_after = (stall_after if stall_after is not None
                            else max(3 * block_time, MIN_STALL))
        self.expected_chain_id = chain_id
        self._probe_timeout = probe_timeout
        self._stall_recheck = stall_recheck
        self._next_stall_check = 0.0
        self._checking = False

    # -- the HttpRpc surface ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The active endpoint's URL (unredacted, as `HttpRpc.url`: redact before printing)."""
        active = self._pool.active() or self._pool.endpoints[0]
        return active.rpc.url

    @url.setter
    def url(self, value: str) -> None:
        # HttpRpc.__init__ assigns it; the active URL is otherwise chosen by health only.
        if value not in {e.rpc.url for e in self._pool.endpoints}:
            raise AttributeError("FailoverRpc.url is the active endpoint's; it cannot be set")

    @property
    def _endpoints(self) -> list[EndpointState]:
        return self._pool.endpoints

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
        observer: Observer | None = None,
    ) -> FailoverRpc:
        """A connected pool over `url` (one URL or several endpoints, in failover order):
        chain ids checked, unreachable endpoints benched (see the module docstring)."""
        rpc = cls(url, max_batch=max_batch, max_log_range=max_log_range,
                  requests_per_second=requests_per_second, timeout=timeout,
                  block_time=block_time, stall_after=stall_after, chain_id=chain_id,
                  backoff=backoff, probe_timeout=probe_timeout, observer=observer)
        try:
            await rpc.connect()
        except BaseException:
            await rpc.aclose()
            raise
        return rpc

    async def connect(self) -> None:
        """Ask every endpoint for its chain id (and head) at once; see the module docstring."""
        endpoints = self._pool.endpoints
        results = await asyncio.gather(*(self._open_endpoint(e) for e in endpoints),
                                       return_exceptions=True)
        reasons: list[str] = []
        for endpoint, result in zip(endpoints, results, strict=True):
            if isinstance(result, RetryableError):
                reasons.append(str(result))
                how = "unreachable" if isinstance(result, RpcUnavailable) else "answered badly"
                log.warning(f"rpc endpoint {how} at start; will retry it",
                            url=endpoint.where, reason=str(result))
                self._pool.bench(endpoint, str(result))
            elif isinstance(result, BaseException):
                raise result
        answered = [e for e in endpoints if e.chain_id is not None]
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
        self.chain_id = self._pool.chain_id = reference.chain_id

    async def _open_endpoint(self, endpoint: EndpointState) -> None:
        requests = [self._pool.request("eth_chainId"), self._pool.request("eth_blockNumber")]
        self.requests_sent += 1
        answer = await self._pool.send_to(endpoint, requests, self.observer)
        if isinstance(answer, dict):  # the batch refused as a whole (a checked answer)
            raise answer_error("batch", answer.get("error"))
        (_, chain_id_answer), _ = pairs(requests, answer)
        chain_id = hex_int(self._result("eth_chainId", chain_id_answer))
        if chain_id is None:
            raise MalformedAnswer(f"eth_chainId: RPC {endpoint.where} answered no number")
        endpoint.chain_id = chain_id

    async def aclose(self) -> None:
        """Stop the probes and close every endpoint's session."""
        await self._pool.aclose()
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
        """Send to the active endpoint; on a failure, at once to the next one (see the module
        docstring for what counts as one)."""
        pool = self._pool
        pool.schedule_probes(self.observer)
        tried: list[EndpointState] = []
        failures: list[RetryableError] = []
        refused: Any = None  # the last answer that carried a node error
        while (endpoint := pool.next_to_try(tried)) is not None:
            tried.append(endpoint)
            self.requests_sent += 1
            try:
                answer = await pool.send_to(endpoint, payload, self.observer)
            except RetryableError as exc:
                failures.append(exc)
                pool.bench(endpoint, str(exc))
                continue
            if failures and _is_send(payload) and has_error(answer):
                answer = await self._landed(endpoint, payload, answer)
            error = failure_in(payload, answer)
            if error is None:
                pool.served(endpoint)
                return answer
            failures.append(error)
            refused = answer
            pool.bench(endpoint, f"answered {error}")
        if refused is not None:
            return refused  # the caller raises the node's error, as with one endpoint
        if not failures:
            raise RpcUnavailable("no usable RPC endpoint (every one is disabled)")
        reasons = "; ".join(str(f) for f in failures)
        if all(isinstance(f, MalformedAnswer) for f in failures):
            raise MalformedAnswer(f"every RPC endpoint failed: {reasons}")
        raise RpcUnavailable(f"every RPC endpoint failed: {reasons}")

    async def _landed(self, endpoint: EndpointState, payload: dict[str, Any], answer: Any) -> Any:
        """The answer to a send refused by `endpoint` after it failed on another one: its
        hash if `endpoint` knows the transaction (the earlier attempt got through), else the
        refusal as it was."""
        try:
            tx_hash = "0x" + keccak(hexstr=str(payload["params"][0])).hex()
        except ValueError:
            return answer
        lookup = self._pool.request("eth_getTransactionByHash", [tx_hash])
        try:
            found = await self._pool.send_to(endpoint, lookup, self.observer)
        except RetryableError:
            return answer
        if not isinstance(found, dict) or found.get("result") is None:
            return answer
        log.info("a send refused after a failed attempt had got through", url=endpoint.where,
                 tx=tx_hash)
        return {"jsonrpc": "2.0", "id": payload.get("id"), "result": tx_hash}

    # -- stalled heads ----------------------------------------------------------------------

    async def check_head(self, stall_after: float | None = None) -> bool:
        """Fail over if the active endpoint's head is stalled while another one is ahead.

        Call once per head poll: free unless the active head has not moved for
        `stall_after` seconds (default: the pool's window). True when it failed over.
        """
        pool = self._pool
        pool.schedule_probes(self.observer)
        window = self.stall_after if stall_after is None else stall_after
        active = pool.active()
        now = time.monotonic()
        if active is None or self._checking or now < self._next_stall_check:
            return False
        if now - active.head_at < window:
            return False
        others = [e for e in pool.endpoints if e.healthy and e is not active]
        if not others:
            return False
        self._checking = True
        try:
            await asyncio.gather(*(self._read_head(e) for e in [active, *others]))
        finally:
            self._checking = False
        if pool.active() is not active:
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
        for endpoint in pool.endpoints[: target.position]:
            if endpoint.healthy:
                reason = (f"head stalled at block {endpoint.head} for {stalled_for:.1f}s "
                          f"while RPC {target.where} is at block {target.head}")
                pool.bench(endpoint, reason, stalled=True)
        target.head_at = time.monotonic()  # the new active one gets a full window
        return True

    async def _read_head(self, endpoint: EndpointState) -> None:
        request = self._pool.request("eth_blockNumber")
        try:
            answer = await asyncio.wait_for(
                self._pool.send_to(endpoint, request, self.observer), self._probe_timeout)
        except RetryableError as exc:
            self._pool.bench(endpoint, str(exc))
            return
        except TimeoutError:
            return  # no answer in time: it is not the one to fail over to
        error = failure_in(request, answer)
        if error is not None:
            self._pool.bench(endpoint, f"answered {error}")

    # -- stats ------------------------------------------------------------------------------

    def endpoints_stats(self) -> list[EndpointStats]:
        """One snapshot per endpoint, in failover order."""
        return self._pool.stats()


def _is_send(payload: Any) -> bool:
    return (isinstance(payload, dict) and payload.get("method") == SEND
            and bool(payload.get("params")))

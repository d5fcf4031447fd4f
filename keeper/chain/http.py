"""`HttpRpc`: an async JSON-RPC client over HTTP that implements `ChainReader`.

One persistent aiohttp session per endpoint. Batches are sent as JSON-RPC arrays of at most
`max_batch` items (one HTTP request each) and answered in request order, matched by id.
`get_logs` splits a block range into chunks of `max_log_range` blocks and halves a chunk
when the node says the answer is too large. With `requests_per_second`, every HTTP request
(a batch counts as one) first takes a slot of an `asyncio_throttle.Throttler`.

Errors (see keeper/errors.py for the tree):

* transport failures (no connection, timeout, HTTP 5xx or 429) raise `RpcUnavailable` naming
  the (redacted) URL;
* an answer that is not a JSON-RPC answer to the request raises `MalformedAnswer` naming the
  method and the URL: a body that is not JSON or is empty, a batch answer that is not a list,
  a batch item missing, an item with an id nobody asked for, an item with neither result nor
  error. Both are `RetryableError`s: `FailoverRpc` moves on to its next endpoint;
* a JSON-RPC error object raises what `answer_error` makes of it: `Reverted` when the call's
  execution failed (code 3, a message about a revert, or an EVM failure of eth_call or
  eth_estimateGas), else `NodeError` (retryable). Both are `RpcError`s, re-exported here so
  that `from keeper.chain.http import RpcError` keeps working.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import aiohttp
from asyncio_throttle.throttler import Throttler

from keeper.errors import MalformedAnswer, NodeError, Reverted, RpcError, RpcUnavailable
from keeper.secrets import redact_url
from keeper.types import Event, LogFilter

__all__ = [
    "HttpRpc", "MalformedAnswer", "NodeError", "Reverted", "RpcError", "RpcUnavailable",
    "answer_error", "check_answer", "refuses_range",
]

# Substrings of node errors that mean "ask for a smaller block range".
_TOO_MANY = (
    "too many", "limit exceeded", "response size", "query returned more than",
    "block range", "range is too large", "exceed",
)
# Methods that execute code; their EVM failures are answers like a revert.
_EXECUTING = frozenset({"eth_call", "eth_estimateGas", "eth_createAccessList"})
# How nodes phrase an EVM failure that is not a REVERT (anvil: "EVM error OutOfGas").
_EVM_FAILURE = ("evm error", "out of gas", "invalid opcode", "invalid jump", "stack underflow",
                "stack overflow")
# JSON-RPC 2.0's "execution error": geth, anvil and the execution-apis spec use it for reverts.
_EXECUTION_ERROR = 3


def answer_error(method: str, error: Any) -> RpcError:
    """The exception for the JSON-RPC error object `error` answered to `method`.

    `Reverted` when the call's execution failed: code 3, a message that speaks of a revert
    ("execution reverted: ...", as geth and anvil put it), or an EVM failure of a method
    that executes code ("EVM error OutOfGas", "invalid opcode"): every endpoint answers the
    same. Anything else is a `NodeError`: this node could not answer (lagging, rate-limited,
    header not found, refused the request), and another one, or later, may.
    """
    code = error.get("code") if isinstance(error, dict) else None
    message = str(error.get("message", "") if isinstance(error, dict) else error).lower()
    if code == _EXECUTION_ERROR or "revert" in message or (
        method in _EXECUTING and any(s in message for s in _EVM_FAILURE)
    ):
        return Reverted(method, error)
    return NodeError(method, error)


def refuses_range(error: RpcError) -> bool:
    """Whether the node refused an eth_getLogs for its block range (ask for smaller ones)."""
    return any(s in error.message.lower() for s in _TOO_MANY)


def _methods(payload: Any) -> str:
    """The method of a request, or the methods of a batch, for messages."""
    if isinstance(payload, dict):
        return str(payload.get("method"))
    names = list(dict.fromkeys(str(r.get("method")) for r in payload if isinstance(r, dict)))
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"batch of {len(payload)} ({shown})"


def _is_answer(item: Any) -> bool:
    """A JSON-RPC answer object: a result (null included) or an error object."""
    return isinstance(item, dict) and ("result" in item or item.get("error") is not None)


def check_answer(payload: Any, answer: Any, where: str) -> None:
    """Raise `MalformedAnswer` unless `answer` is a JSON-RPC answer to `payload` (a request,
    or a batch of them): one answer per request, matched by id, each with a result or an
    error. A batch refused as a whole (one error object) is an answer."""
    def bad(what: str, why: str) -> MalformedAnswer:
        return MalformedAnswer(f"{what}: RPC {where} sent a malformed answer ({why})")

    if isinstance(payload, dict):
        if not _is_answer(answer):
            raise bad(_methods(payload), "neither result nor error")
        if answer.get("id") != payload.get("id") and not (
            answer.get("id") is None and answer.get("error") is not None  # no id to echo
        ):
            raise bad(_methods(payload), f"id {answer.get('id')!r} for request {payload['id']}")
        return
    if isinstance(answer, dict) and answer.get("error") is not None:
        return  # the whole batch was refused
    if not isinstance(answer, list):
        raise bad(_methods(payload), f"a batch answered with {type(answer).__name__}")
    methods = {r.get("id"): str(r.get("method")) for r in payload}
    seen: set[Any] = set()
    for item in answer:
        ident = item.get("id") if isinstance(item, dict) else None
        if not isinstance(ident, int | str):
            ident = None  # no id, or one that cannot be ours (a list, an object)
        if not _is_answer(item):
            raise bad(methods.get(ident, _methods(payload)), "neither result nor error")
        if ident not in methods or ident in seen:
            raise bad(_methods(payload), f"an item with id {item.get('id')!r} nobody asked for")
        seen.add(ident)
    for ident, method in methods.items():
        if ident not in seen:
            raise bad(method, "its item is missing from the batch answer")


class HttpRpc:
    """A `ChainReader` over one HTTP JSON-RPC endpoint."""

    chain_id: int
    # Called before every eth_sendRawTransaction (and a batch holding one); it raises to
    # stop the broadcast. A replica set up with [ha] checks its leader lease there.
    send_gate: Callable[[], None] | None = None

    def __init__(
        self,
        url: str,
        *,
        max_batch: int = 1000,
        max_log_range: int = 10_000,
        requests_per_second: int | None = None,
        timeout: float = 10,
        observer: Callable[[str, float, bool], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_log_range < 1:
            raise ValueError("max_batch and max_log_range must be at least 1")
        self.url = url
        self.max_batch = max_batch
        self.max_log_range = max_log_range
        self.throttler: Throttler | None = (
            Throttler(rate_limit=requests_per_second, period=1) if requests_per_second else None
        )
        self.requests_sent = 0
        # Called after every HTTP request with (url, seconds, ok): metrics hook up here.
        self.observer = observer
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        max_batch: int = 1000,
        max_log_range: int = 10_000,
        requests_per_second: int | None = None,
        timeout: float = 10,
        observer: Callable[[str, float, bool], None] | None = None,
    ) -> HttpRpc:
        """A connected client (its `chain_id` read with eth_chainId)."""
        rpc = cls(
            url, max_batch=max_batch, max_log_range=max_log_range,
            requests_per_second=requests_per_second, timeout=timeout, observer=observer,
        )
        try:
            await rpc.connect()
        except BaseException:
            await rpc.aclose()
            raise
        return rpc

    async def connect(self) -> None:
        """Open the session and read the endpoint's chain id."""
        self.chain_id = int(await self.call("eth_chainId", []), 16)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> HttpRpc:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _post(self, payload: Any) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        if self.throttler is not None:
            async with self.throttler:
                return await self._send(self._session, payload)
        return await self._send(self._session, payload)

    async def _send(self, session: aiohttp.ClientSession, payload: Any) -> Any:
        self.requests_sent += 1
        if self.observer is None:
            return await self._exchange(session, payload)
        started = time.perf_counter()
        ok = False
        try:
            answer = await self._exchange(session, payload)
            ok = True
            return answer
        finally:
            self.observer(self.url, time.perf_counter() - started, ok)

    async def _exchange(self, session: aiohttp.ClientSession, payload: Any) -> Any:
        """One HTTP request; its answer checked to answer `payload` (`check_answer`)."""
        where = redact_url(self.url)
        try:
            async with session.post(self.url, json=payload) as response:
                if response.status >= 500 or response.status == 429:
                    raise RpcUnavailable(f"RPC {where} answered HTTP {response.status}")
                status, body = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = type(exc).__name__
            raise RpcUnavailable(f"RPC {where} unreachable ({reason})") from None
        if not body.strip():
            if status >= 400:
                raise RpcUnavailable(f"RPC {where} answered HTTP {status}")
            raise MalformedAnswer(f"{_methods(payload)}: RPC {where} sent an empty body")
        try:
            answer = json.loads(body)
        except ValueError as exc:  # not JSON (UnicodeDecodeError is a ValueError too)
            if status >= 400:  # an error page: the endpoint refused to serve us
                raise RpcUnavailable(f"RPC {where} answered HTTP {status}") from None
            raise MalformedAnswer(
                f"{_methods(payload)}: RPC {where} sent a body that is not JSON "
                f"({type(exc).__name__})") from None
        check_answer(payload, answer, where)
        return answer

    def _request(self, method: str, params: Sequence[Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}

    @staticmethod
    def _result(method: str, answer: Any) -> Any:
        if not _is_answer(answer):  # checked by `_exchange`; a subclass may post otherwise
            raise MalformedAnswer(f"{method}: malformed JSON-RPC answer")
        if answer.get("error") is not None:
            raise answer_error(method, answer["error"])
        return answer.get("result")

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        """One JSON-RPC call; raises RpcUnavailable (transport), MalformedAnswer, or the
        node's error object as Reverted or NodeError (`answer_error`)."""
        if self.send_gate is not None and method == "eth_sendRawTransaction":
            self.send_gate()
        return self._result(method, await self._post(self._request(method, params)))

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Every call, as JSON-RPC batches of at most `max_batch` items, results in order."""
        if self.send_gate is not None and any(m == "eth_sendRawTransaction" for m, _ in calls):
            self.send_gate()
        chunks = [calls[i : i + self.max_batch] for i in range(0, len(calls), self.max_batch)]
        tasks = [asyncio.ensure_future(self._batch_chunk(chunk)) for chunk in chunks]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:  # one chunk failed (or we were cancelled): stop the others
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [item for chunk in results for item in chunk]

    async def _batch_chunk(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        requests = [self._request(method, params) for method, params in calls]
        answer = await self._post(requests)
        if isinstance(answer, dict) and answer.get("error") is not None:  # refused as a whole
            raise answer_error("batch", answer["error"])
        if not isinstance(answer, list):  # checked by `_exchange`; kept for subclasses
            raise MalformedAnswer(f"{_methods(requests)}: malformed JSON-RPC answer")
        by_id = {item.get("id"): item for item in answer if isinstance(item, dict)}
        out = []
        for request in requests:
            item = by_id.get(request["id"])
            if item is None:
                raise MalformedAnswer(f"{request['method']}: no answer in the batch")
            out.append(self._result(request["method"], item))
        return out

    async def eth_call(self, to: str, data: str, block: int | str = "latest") -> str:
        """`eth_call` at `block` (a number or a tag), returning the 0x-hex result."""
        tag = hex(block) if isinstance(block, int) else block
        return str(await self.call("eth_call", [{"to": to, "data": data}, tag]))

    async def get_logs(
        self, log_filter: LogFilter, from_block: int, to_block: int
    ) -> list[Event]:
        """Every matching log in [from_block, to_block], sorted by (block, log index)."""
        events: list[Event] = []
        start = from_block
        while start <= to_block:
            end = min(start + self.max_log_range - 1, to_block)
            events.extend(await self._logs_chunk(log_filter, start, end))
            start = end + 1
        return sorted(events, key=lambda e: (e.block_number, e.log_index))

    async def header_and_logs(
        self, number: int, log_filter: LogFilter, from_block: int
    ) -> tuple[dict[str, Any] | None, list[Event]]:
        """Block `number`'s header and the logs of [from_block, number] (see
        `logs_and_headers`). The header is None if the node does not have the block yet."""
        (raw,), events = await self.logs_and_headers(log_filter, from_block, number, [number])
        return raw, events

    async def logs_and_headers(
        self, log_filter: LogFilter, from_block: int, to_block: int, numbers: Sequence[int]
    ) -> tuple[list[dict[str, Any] | None], list[Event]]:
        """The headers of `numbers` and the logs of [from_block, to_block]: one batch request
        when the range fits one `eth_getLogs`. A header is None if the node does not have
        that block yet (a load-balanced endpoint may lag its own notifications)."""
        headers = [("eth_getBlockByNumber", [hex(n), False]) for n in numbers]
        if to_block - from_block + 1 <= self.max_log_range:
            try:
                *raws, found = await self.batch(
                    [*headers, ("eth_getLogs", [_logs_query(log_filter, from_block, to_block)])]
                )
            except RpcError as exc:
                if not refuses_range(exc):
                    raise
            else:
                events = sorted((Event.from_rpc(item) for item in found),
                                key=lambda e: (e.block_number, e.log_index))
                return [dict(r) if r is not None else None for r in raws], events
        raws = await self.batch(headers) if headers else []
        return ([dict(r) if r is not None else None for r in raws],
                await self.get_logs(log_filter, from_block, to_block))

    async def _logs_chunk(self, log_filter: LogFilter, start: int, end: int) -> list[Event]:
        query = _logs_query(log_filter, start, end)
        try:
            logs = await self.call("eth_getLogs", [query])
        except RpcError as exc:
            if end > start and refuses_range(exc):
                middle = (start + end) // 2
                return [
                    *await self._logs_chunk(log_filter, start, middle),
                    *await self._logs_chunk(log_filter, middle + 1, end),
                ]
            raise
        return [Event.from_rpc(log) for log in logs]


def _logs_query(log_filter: LogFilter, start: int, end: int) -> dict[str, Any]:
    query: dict[str, Any] = {
        "fromBlock": hex(start), "toBlock": hex(end), "address": list(log_filter.addresses),
    }
    if log_filter.topics0:
        query["topics"] = [list(log_filter.topics0)]
    return query

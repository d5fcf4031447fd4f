"""`HttpRpc`: an async JSON-RPC client over HTTP that implements `ChainReader`.

One persistent aiohttp session per endpoint. Batches are sent as JSON-RPC arrays of at most
`max_batch` items (one HTTP request each) and answered in request order, matched by id.
`get_logs` splits a block range into chunks of `max_log_range` blocks and halves a chunk
when the node says the answer is too large. With `requests_per_second`, every HTTP request
(a batch counts as one) first takes a slot of an `asyncio_throttle.Throttler`.
Transport failures raise `RpcUnavailable` naming the (redacted) URL; JSON-RPC errors raise
`KeeperError` naming the method.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import aiohttp
from asyncio_throttle.throttler import Throttler

from keeper.errors import KeeperError, RpcUnavailable
from keeper.secrets import redact, redact_url
from keeper.types import Event, LogFilter

# Substrings of node errors that mean "ask for a smaller block range".
_TOO_MANY = (
    "too many", "limit exceeded", "response size", "query returned more than",
    "block range", "range is too large", "exceed",
)


class RpcError(KeeperError):
    """The node answered a call with a JSON-RPC error object."""

    def __init__(self, method: str, error: Any) -> None:
        self.method = method
        self.code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message", error) if isinstance(error, dict) else error
        self.message = redact(str(message))
        super().__init__(f"{method}: RPC error {self.code}: {self.message}")


class HttpRpc:
    """A `ChainReader` over one HTTP JSON-RPC endpoint."""

    chain_id: int

    def __init__(
        self,
        url: str,
        *,
        max_batch: int = 1000,
        max_log_range: int = 10_000,
        requests_per_second: int | None = None,
        timeout: float = 10,
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
        self.observer: Callable[[str, float, bool], None] | None = None
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
    ) -> HttpRpc:
        """A connected client (its `chain_id` read with eth_chainId)."""
        rpc = cls(
            url, max_batch=max_batch, max_log_range=max_log_range,
            requests_per_second=requests_per_second, timeout=timeout,
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
        where = redact_url(self.url)
        try:
            async with session.post(self.url, json=payload) as response:
                if response.status >= 500 or response.status == 429:
                    raise RpcUnavailable(f"RPC {where} answered HTTP {response.status}")
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = type(exc).__name__
            raise RpcUnavailable(f"RPC {where} unreachable ({reason})") from None
        except ValueError as exc:  # not JSON
            raise RpcUnavailable(f"RPC {where} sent an invalid answer ({exc})") from None

    def _request(self, method: str, params: Sequence[Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}

    @staticmethod
    def _result(method: str, answer: Any) -> Any:
        if not isinstance(answer, dict):
            raise KeeperError(f"{method}: malformed JSON-RPC answer")
        if answer.get("error") is not None:
            raise RpcError(method, answer["error"])
        return answer.get("result")

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        """One JSON-RPC call; raises RpcUnavailable (transport) or RpcError (node error)."""
        return self._result(method, await self._post(self._request(method, params)))

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Every call, as JSON-RPC batches of at most `max_batch` items, results in order."""
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
        if isinstance(answer, dict) and "error" in answer:  # the whole batch was refused
            raise RpcError("batch", answer["error"])
        if not isinstance(answer, list):
            raise KeeperError("batch: malformed JSON-RPC answer")
        by_id = {item.get("id"): item for item in answer if isinstance(item, dict)}
        out = []
        for request in requests:
            item = by_id.get(request["id"])
            if item is None:
                raise KeeperError(f"{request['method']}: no answer in the batch")
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
                if not any(s in exc.message.lower() for s in _TOO_MANY):
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
            if end > start and any(s in exc.message.lower() for s in _TOO_MANY):
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

"""`FailoverRpc` against fake JSON-RPC nodes (aiohttp servers on loopback).

Each `FakeNode` answers eth_chainId, eth_blockNumber, eth_getBlockByNumber, eth_call and
web3_clientVersion (its name, to tell who answered), and can be switched to fail: HTTP 503
or 429, a hang (timeout), a dropped connection, a revert for eth_call, or any JSON-RPC error
object for a method (`errors`); `results` sets what a method answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import structlog
from aiohttp import web

from keeper.chain.endpoints import throttler
from keeper.chain.failover import Endpoint, FailoverRpc
from keeper.chain.http import HttpRpc, NodeError, Reverted, RpcError
from keeper.config import HttpEndpoint
from keeper.errors import ChainMismatch, RetryableError, RpcUnavailable
from keeper.strategy import ChainReader
from keeper.types import LogFilter

SECRET = "Zq9SECRETkey1234567890abcd"
TIMEOUT = 10.0


class FakeNode:
    """A JSON-RPC node on a free loopback port whose behaviour a test switches."""

    def __init__(self, name: str, *, chain_id: int = 1, head: int = 100) -> None:
        self.name = name
        self.chain_id = chain_id
        self.head = head
        self.mode = "ok"  # ok | 503 | 429 | hang | drop
        self.revert = False  # eth_call answers a JSON-RPC error
        self.errors: dict[str, dict[str, Any]] = {}  # method -> the error object it answers
        self.results: dict[str, Any] = {}  # method -> the result it answers (else its own)
        self.methods: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    @property
    def hits(self) -> int:
        return len(self.methods)

    def url(self, secret: str = SECRET) -> str:
        return f"http://127.0.0.1:{self.port}/v2/{secret}?apikey={secret}"

    async def start(self) -> FakeNode:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._stopping.set()  # release hanging handlers
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        items = payload if isinstance(payload, list) else [payload]
        self.methods.extend(str(i.get("method")) for i in items)
        if self.mode == "503":
            return web.Response(status=503, text="busy")
        if self.mode == "429":
            return web.Response(status=429, text="slow down")
        if self.mode == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 30)
        if self.mode == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        answers = [self._answer(i) for i in items]
        body = answers if isinstance(payload, list) else answers[0]
        return web.Response(text=json.dumps(body), content_type="application/json")

    def _answer(self, item: dict[str, Any]) -> dict[str, Any]:
        method, params = item.get("method"), item.get("params", [])
        if method in self.errors:
            return {"jsonrpc": "2.0", "id": item.get("id"), "error": self.errors[str(method)]}
        if method in self.results:
            return {"jsonrpc": "2.0", "id": item.get("id"), "result": self.results[str(method)]}
        result: Any
        if method == "eth_chainId":
            result = hex(self.chain_id)
        elif method == "eth_blockNumber":
            result = hex(self.head)
        elif method == "eth_getBlockByNumber":
            number = self.head if params[0] == "latest" else int(params[0], 16)
            result = None if number > self.head else {"number": hex(number), "hash": "0x00"}
        elif method == "web3_clientVersion":
            result = self.name
        elif method == "eth_getLogs":
            result = []
        elif method == "eth_call" and self.revert:
            error = {"code": 3, "message": "execution reverted"}
            return {"jsonrpc": "2.0", "id": item.get("id"), "error": error}
        else:
            result = "0x"
        return {"jsonrpc": "2.0", "id": item.get("id"), "result": result}


@contextlib.asynccontextmanager
async def nodes(*specs: dict[str, Any]) -> AsyncIterator[list[FakeNode]]:
    started = [await FakeNode(f"node{i}", **spec).start() for i, spec in enumerate(specs)]
    try:
        yield started
    finally:
        for node in started:
            await node.stop()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v2/{SECRET}"


async def until(condition: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def who(rpc: FailoverRpc) -> str:
    return str(await rpc.call("web3_clientVersion", []))


FAST: dict[str, Any] = {"backoff": (0.05, 0.2), "timeout": 2.0}


async def test_calls_go_to_the_primary_and_it_is_a_drop_in_for_http_rpc() -> None:
    async with nodes({}, {}) as (a, b):
        rpc = await FailoverRpc.open([a.url(), b.url()], **FAST)
        try:
            reader: ChainReader = rpc
            typed: HttpRpc = rpc
            assert reader.chain_id == 1 and typed.url == a.url()
            assert await who(rpc) == "node0"
            assert await rpc.batch([("eth_chainId", [])] * 5) == ["0x1"] * 5
            header, events = await rpc.header_and_logs(100, _filter(), 100)
            assert header is not None and header["number"] == hex(100) and events == []
            assert b.methods == ["eth_chainId", "eth_blockNumber"]  # the open only
            stats = rpc.endpoints_stats()
            assert [s.active for s in stats] == [True, False]
            assert stats[0].requests == 4 and stats[0].latency_count == 4
            assert stats[0].head == 100 and stats[0].errors == 0
            assert rpc.requests_sent == 2 + 3  # the two opens, then three requests
        finally:
            await rpc.aclose()


def _filter() -> LogFilter:
    return LogFilter(("0x" + "11" * 20,), ())


@pytest.mark.parametrize("mode", ["drop", "503", "429", "hang"])
async def test_a_failing_primary_fails_over_within_the_same_call(mode: str) -> None:
    async with nodes({}, {}) as (a, b):
        rpc = await FailoverRpc.open([a.url(), b.url()], backoff=(60, 60), timeout=1.0)
        try:
            assert await who(rpc) == "node0"
            a.mode = mode
            assert await who(rpc) == "node1"  # the same call, answered by the secondary
            primary, secondary = rpc.endpoints_stats()
            assert not primary.active and secondary.active
            assert primary.errors == 1 and primary.benched_until is not None
            assert primary.bench_reason is not None and SECRET not in primary.bench_reason
            hits = a.hits
            assert await who(rpc) == "node1"
            assert a.hits == hits  # benched: not asked again before its backoff ends
            assert rpc.url == b.url()
        finally:
            await rpc.aclose()


async def test_a_json_rpc_error_is_an_answer_not_a_reason_to_fail_over() -> None:
    async with nodes({}, {}) as (a, b):
        rpc = await FailoverRpc.open([a.url(), b.url()], **FAST)
        try:
            a.revert = True
            with pytest.raises(Reverted, match="execution reverted") as caught:
                await rpc.eth_call("0x" + "22" * 20, "0x")
            assert isinstance(caught.value, RpcError)
            assert not isinstance(caught.value, RetryableError)
            with pytest.raises(Reverted, match="execution reverted"):
                await rpc.batch([("eth_chainId", []), ("eth_call", [{}, "latest"])])
            assert "eth_call" not in b.methods
            primary, _ = rpc.endpoints_stats()
            assert primary.active and primary.errors == 0 and primary.rpc_errors == 2
            assert rpc.url == a.url()
        finally:
            await rpc.aclose()


HEADER_NOT_FOUND = {"code": -32000, "message": "header not found"}


async def test_a_node_error_fails_over_and_benches_the_endpoint() -> None:
    async with nodes({}, {}) as (a, b):
        rpc = await FailoverRpc.open([a.url(), b.url()], backoff=(60, 60))
        try:
            a.errors["eth_getBlockByNumber"] = HEADER_NOT_FOUND  # a lagging node
            header, _ = await rpc.header_and_logs(100, _filter(), 100)
            assert header is not None and header["number"] == hex(100)  # b answered
            assert "eth_getBlockByNumber" in b.methods
            primary, secondary = rpc.endpoints_stats()
            assert not primary.active and secondary.active and primary.rpc_errors == 1
            assert primary.bench_reason is not None and "header not found" in primary.bench_reason
            assert await who(rpc) == "node1"
        finally:
            await rpc.aclose()


async def test_when_every_endpoint_answers_a_node_error_it_is_raised_naming_the_method() -> None:
    async with nodes({}, {}) as (a, b):
        rpc = await FailoverRpc.open([a.url(), b.url()], **FAST)
        try:
            a.errors["web3_clientVersion"] = b.errors["web3_clientVersion"] = HEADER_NOT_FOUND
            with pytest.raises(NodeError, match="web3_clientVersion: RPC error -32000") as caught:
                await who(rpc)
            assert isinstance(caught.value, RetryableError) and caught.value.code == -32000
            assert a.methods.count("web3_clientVersion") == 1
            assert b.methods.count("web3_clientVersion") == 1
        finally:
            await rpc.aclose()


@pytest.mark.parametrize(
    ("method", "error"),
    [
        ("eth_getLogs", {"code": -32005, "message": "query returned more than 10000 results"}),
        ("eth_sendRawTransaction", {"code": -32000, "message": "nonce too low"}),
    ],
)
async def test_node_errors_every_endpoint_gives_alike_do_not_fail_over(
    method: str, error: dict[str, Any]
) -> None:
    async with nodes({}, {}) as (a, b):
        rpc = await FailoverRpc.open([a.url(), b.url()], **FAST)
        try:
            a.errors[method] = error
            with pytest.raises(NodeError, match=error["message"]):
                await rpc.call(method, [{}])
            assert method not in b.methods
            assert rpc.endpoints_stats()[0].active
        finally:
            await rpc.aclose()


async def test_a_benched_endpoint_is_probed_with_backoff_and_comes_back() -> None:
    async with nodes({}, {}) as (a, b):
        rpc = await FailoverRpc.open([a.url(), b.url()], **FAST)
        try:
            a.mode = "503"
            assert await who(rpc) == "node1"
            first = rpc.endpoints_stats()[0]
            assert first.failures == 1

            async def probed_again() -> bool:
                await who(rpc)  # requests schedule the due probes
                return rpc.endpoints_stats()[0].failures >= 3

            await until(probed_again, "two failed probes")
            stats = rpc.endpoints_stats()[0]
            assert stats.benched_until is not None and not stats.active
            assert a.methods.count("eth_chainId") >= 3  # the open, then the probes
            # After the failed call, only probes: no real call is sent to a benched endpoint.
            assert "web3_clientVersion" not in a.methods[4:]

            a.mode = "ok"

            async def back() -> bool:
                return await who(rpc) == "node0"

            await until(back, "the primary to be used again")
            primary, secondary = rpc.endpoints_stats()
            assert primary.active and primary.benched_until is None and not secondary.active
        finally:
            await rpc.aclose()


async def test_backoff_doubles_up_to_its_cap() -> None:
    async with nodes({}, {}) as (a, b):
        with structlog.testing.capture_logs() as logs:
            rpc = await FailoverRpc.open([a.url(), b.url()], backoff=(0.02, 0.08))
            try:
                a.mode = "503"

                async def benched_five_times() -> bool:
                    await who(rpc)  # requests schedule the due probes
                    return rpc.endpoints_stats()[0].failures >= 5

                await until(benched_five_times, "five benchings")
            finally:
                await rpc.aclose()
        delays = [e["retry_in"] for e in logs if "retry_in" in e]
        assert delays[:5] == [0.02, 0.04, 0.08, 0.08, 0.08]


async def test_when_every_endpoint_fails_the_error_names_them_redacted() -> None:
    async with nodes({}, {}) as (a, b):
        rpc = await FailoverRpc.open([a.url(), b.url()], **FAST)
        try:
            a.mode = b.mode = "503"
            with pytest.raises(RpcUnavailable) as caught:
                await rpc.call("eth_blockNumber", [])
            message = str(caught.value)
            assert f"127.0.0.1:{a.port}" in message and f"127.0.0.1:{b.port}" in message
            assert SECRET not in message
            b.mode = "ok"
            # Both benched: a request still tries them (the last resort) and b is back.
            assert await who(rpc) == "node1"
            assert rpc.endpoints_stats()[1].active
        finally:
            await rpc.aclose()


async def test_an_endpoint_on_another_chain_is_an_error_at_open_naming_it_redacted() -> None:
    async with nodes({}, {"chain_id": 5}) as (a, b):
        with pytest.raises(ChainMismatch) as caught:
            await FailoverRpc.open([a.url(), b.url()])
        message = str(caught.value)
        assert f"127.0.0.1:{b.port}" in message and "chain id 5" in message
        assert SECRET not in message
        with pytest.raises(ChainMismatch, match=r"chain\.chain_id is 10"):
            await FailoverRpc.open([a.url()], chain_id=10)


async def test_an_unreachable_secondary_at_open_is_a_warning_and_is_retried() -> None:
    async with nodes({}) as (a,):
        dead = closed_port_url()
        with structlog.testing.capture_logs() as logs:
            rpc = await FailoverRpc.open([a.url(), dead], **FAST)
        try:
            assert rpc.chain_id == 1
            warnings = [e for e in logs if e["log_level"] == "warning"]
            assert warnings and "unreachable" in warnings[0]["event"]
            assert SECRET not in repr(logs)
            assert [s.active for s in rpc.endpoints_stats()] == [True, False]
        finally:
            await rpc.aclose()
        # The primary unreachable: the secondary serves.
        rpc = await FailoverRpc.open([dead, a.url()], **FAST)
        try:
            assert await who(rpc) == "node0" and rpc.url == a.url()
        finally:
            await rpc.aclose()
        with pytest.raises(RpcUnavailable, match="no RPC endpoint answered") as caught:
            await FailoverRpc.open([dead, dead], timeout=1)
        assert SECRET not in str(caught.value)


async def test_a_secondary_found_on_another_chain_by_its_probe_is_never_used() -> None:
    async with nodes({}, {"chain_id": 5}) as (a, b):
        b.mode = "503"
        rpc = await FailoverRpc.open([a.url(), b.url()], **FAST)
        try:
            b.mode = "ok"

            async def disabled() -> bool:
                await rpc.call("eth_blockNumber", [])
                return rpc.endpoints_stats()[1].benched_until == float("inf")

            await until(disabled, "the probe to find the wrong chain")
            a.mode = "503"
            with pytest.raises(RpcUnavailable):
                await rpc.call("web3_clientVersion", [])
            assert "web3_clientVersion" not in b.methods
        finally:
            await rpc.aclose()


async def test_a_stalled_head_fails_over_to_an_endpoint_that_is_ahead() -> None:
    async with nodes({}, {}) as (a, b):
        rpc = await FailoverRpc.open([a.url(), b.url()], stall_after=0.3, backoff=(0.05, 0.1))
        try:
            assert rpc.stall_after == 0.3
            stalled_since = time.monotonic()

            async def failed_over() -> bool:
                await rpc.call("eth_getBlockByNumber", ["latest", False])  # the engine's poll
                b.head += 1  # only the secondary's chain moves
                return await rpc.check_head()

            await until(failed_over, "the stall failover")
            elapsed = time.monotonic() - stalled_since
            assert 0.3 <= elapsed < 0.3 + 1.0
            assert await who(rpc) == "node1"
            primary, secondary = rpc.endpoints_stats()
            assert secondary.active and primary.bench_reason is not None
            assert "stalled at block 100" in primary.bench_reason
            assert SECRET not in primary.bench_reason

            # The primary answers its probes but its head has not moved: it stays benched.
            async def probed() -> bool:
                assert await who(rpc) == "node1"  # requests schedule the due probes
                return a.methods.count("eth_chainId") >= 3

            await until(probed, "probes of the primary")
            reason = rpc.endpoints_stats()[0].bench_reason
            assert reason is not None and reason.startswith("behind: at block 100, others at")
            a.head = b.head  # it caught up

            async def back() -> bool:
                return await who(rpc) == "node0"

            await until(back, "the primary to be used again")
        finally:
            await rpc.aclose()


async def test_check_head_is_free_while_the_head_moves_and_no_one_is_ahead() -> None:
    async with nodes({}, {}) as (a, b):
        rpc = await FailoverRpc.open([a.url(), b.url()], stall_after=0.2)
        try:
            for _ in range(20):  # the head moves: no request at all
                a.head += 1
                await rpc.call("eth_blockNumber", [])
                assert await rpc.check_head() is False
            assert b.hits == 2  # the open
            # Every head stalled and equal: nothing to fail over to, rechecked sparingly.
            deadline = time.monotonic() + 0.8
            checks = 0
            while time.monotonic() < deadline:
                assert await rpc.check_head() is False
                checks += 1
                await asyncio.sleep(0.01)
            assert checks > 5
            assert b.hits - 2 <= 3  # at most one stall query per 0.5 s (the recheck)
            assert rpc.url == a.url()
        finally:
            await rpc.aclose()


async def test_stall_window_from_block_time() -> None:
    assert FailoverRpc("http://x").stall_after == 36.0
    assert FailoverRpc("http://x", block_time=2).stall_after == 6.0
    assert FailoverRpc("http://x", block_time=0.1).stall_after == 1.0


async def test_each_endpoint_has_its_own_rate_limit() -> None:
    rpc = FailoverRpc(
        [HttpEndpoint(url="http://a", requests_per_second=5),
         Endpoint("http://b", 0.5), "http://c"],
        requests_per_second=100,
    )
    a, b, c = (e.rpc.throttler for e in rpc._endpoints)
    assert a is not None and (a.rate_limit, a.period) == (5, 1.0)
    assert b is not None and (b.rate_limit, b.period) == (1, 2.0)
    assert c is not None and (c.rate_limit, c.period) == (100, 1.0)
    assert rpc.throttler is None  # the pool itself adds no limit
    limited = throttler(2.5)
    assert limited is not None and (limited.rate_limit, limited.period) == (2, 0.8)
    assert throttler(None) is None
    with pytest.raises(AttributeError):
        rpc.url = "http://elsewhere"


async def test_no_url_in_logs_or_errors_is_unredacted() -> None:
    async with nodes({}, {}) as (a, b):
        with structlog.testing.capture_logs() as logs:
            rpc = await FailoverRpc.open([a.url(), b.url()], backoff=(0.02, 0.05), timeout=1.0)
            try:
                for mode in ("drop", "503", "hang"):
                    a.mode = mode
                    await who(rpc)
                    a.mode = "ok"

                    async def back() -> bool:
                        return await who(rpc) == "node0"

                    await until(back, "the primary back")
                a.mode = b.mode = "503"
                with pytest.raises(RpcUnavailable) as caught:
                    await who(rpc)
                assert SECRET not in str(caught.value)
            finally:
                await rpc.aclose()
        assert any("failing over" in e["event"] for e in logs)
        assert SECRET not in repr(logs)
        assert all(SECRET not in repr(s) for s in rpc.endpoints_stats())


async def test_a_stall_skips_every_endpoint_that_is_not_ahead() -> None:
    async with nodes({}, {}, {}) as (a, b, c):
        rpc = await FailoverRpc.open([a.url(), b.url(), c.url()], stall_after=0.2)
        try:
            async def failed_over() -> bool:
                await rpc.call("eth_blockNumber", [])
                c.head += 1  # only the third one moves; the second is as stuck as the first
                return await rpc.check_head()

            await until(failed_over, "the stall failover")
            assert await who(rpc) == "node2"
            assert [s.active for s in rpc.endpoints_stats()] == [False, False, True]
        finally:
            await rpc.aclose()

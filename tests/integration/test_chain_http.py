"""`HttpRpc` against the session devnet: batch splitting, chunked logs, errors, throttling."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import pytest
from asyncio_throttle.throttler import Throttler
from web3 import Web3

from keeper.chain.http import HttpRpc, RpcError
from keeper.errors import KeeperError, RpcUnavailable
from keeper.types import LogFilter
from tests.conftest import Devnet

# Pool events the seeded population emitted: Supply, Borrow, ReserveDataUpdated.
SUPPLY = Web3.keccak(text="Supply(address,address,address,uint256,uint16)").hex()
BORROW = Web3.keccak(text="Borrow(address,address,address,uint256,uint8,uint256,uint16)").hex()


def _topic(value: str) -> str:
    return value if value.startswith("0x") else "0x" + value


async def test_open_reads_the_chain_id(devnet: Devnet) -> None:
    async with HttpRpc(devnet.info.rpc_url) as rpc:
        assert rpc.chain_id == devnet.info.chain_id
        assert rpc.requests_sent == 1
    rpc2 = await HttpRpc.open(devnet.info.rpc_url)
    try:
        assert rpc2.chain_id == devnet.info.chain_id
    finally:
        await rpc2.aclose()


async def test_batch_is_split_at_max_batch_and_kept_in_order(devnet: Devnet) -> None:
    async with HttpRpc(devnet.info.rpc_url, max_batch=1000) as rpc:
        before = rpc.requests_sent
        results = await rpc.batch([("eth_chainId", [])] * 2500)
        assert rpc.requests_sent - before == 3
        assert results == [hex(devnet.info.chain_id)] * 2500
        numbers = list(range(1, 40))
        blocks = await rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        assert [int(b["number"], 16) for b in blocks] == numbers
        assert await rpc.batch([]) == []


async def test_a_failed_batch_item_names_its_method(devnet: Devnet) -> None:
    async with HttpRpc(devnet.info.rpc_url) as rpc:
        with pytest.raises(KeeperError, match="no_such_method"):
            await rpc.batch([("eth_chainId", []), ("no_such_method", [])])
        with pytest.raises(RpcError, match="eth_getBalance"):
            await rpc.call("eth_getBalance", ["not an address", "latest"])


async def test_get_logs_in_chunks_equals_one_query(devnet: Devnet) -> None:
    head = devnet.w3.eth.block_number
    pool = devnet.info.aave_v3.pool.lower()
    log_filter = LogFilter((pool,), (_topic(SUPPLY), _topic(BORROW)))
    async with HttpRpc(devnet.info.rpc_url, max_log_range=head + 1) as whole:
        expected = await whole.get_logs(log_filter, 0, head)
        assert whole.requests_sent == 2  # eth_chainId + one eth_getLogs
    assert len(expected) > 50
    assert {e.topic0 for e in expected} == {_topic(SUPPLY), _topic(BORROW)}
    assert all(e.address == pool for e in expected)
    async with HttpRpc(devnet.info.rpc_url, max_log_range=97) as chunked:
        got = await chunked.get_logs(log_filter, 0, head)
        assert chunked.requests_sent - 1 == -(-(head + 1) // 97)
    assert got == expected
    assert got == sorted(got, key=lambda e: (e.block_number, e.log_index))


async def test_get_logs_halves_a_chunk_the_node_refuses(devnet: Devnet) -> None:
    head = devnet.w3.eth.block_number
    log_filter = LogFilter((devnet.info.aave_v3.pool.lower(),), (_topic(SUPPLY),))
    async with HttpRpc(devnet.info.rpc_url) as rpc:
        expected = await rpc.get_logs(log_filter, 0, head)
        real_call = rpc.call
        spans: list[int] = []

        async def picky(method: str, params: Sequence[Any]) -> Any:
            if method == "eth_getLogs":
                span = int(params[0]["toBlock"], 16) - int(params[0]["fromBlock"], 16) + 1
                spans.append(span)
                if span > 200:
                    raise RpcError(method, {"code": -32005, "message": "query returned more "
                                            "than 10000 results"})
            return await real_call(method, params)

        rpc.call = picky  # type: ignore[method-assign]
        assert await rpc.get_logs(log_filter, 0, head) == expected
        assert spans[0] == head + 1 and max(s for s in spans[1:]) <= head + 1
        with pytest.raises(RpcError, match="oops"):
            async def broken(method: str, params: Sequence[Any]) -> Any:
                raise RpcError(method, {"code": -32000, "message": "oops"})

            rpc.call = broken  # type: ignore[method-assign]
            await rpc.get_logs(log_filter, 0, head)


async def test_unreachable_url_raises_rpc_unavailable_naming_it() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/rpc?apikey=SECRETVALUE"
    with pytest.raises(RpcUnavailable) as caught:
        await HttpRpc.open(url, timeout=2)
    message = str(caught.value)
    assert f"127.0.0.1:{port}/rpc" in message
    assert "SECRETVALUE" not in message


class CountingThrottler(Throttler):
    """A Throttler that counts the slots taken."""

    acquired = 0

    async def acquire(self) -> None:
        self.acquired += 1
        await super().acquire()  # type: ignore[no-untyped-call]


async def test_every_http_request_takes_a_throttle_slot(devnet: Devnet) -> None:
    rpc = HttpRpc(devnet.info.rpc_url, requests_per_second=5, max_batch=10)
    assert isinstance(rpc.throttler, Throttler)
    assert rpc.throttler.rate_limit == 5 and rpc.throttler.period == 1
    throttler = CountingThrottler(rate_limit=1000, period=1)
    rpc.throttler = throttler
    async with rpc:
        for _ in range(3):
            await rpc.call("eth_blockNumber", [])
        await rpc.batch([("eth_chainId", [])] * 25)  # three HTTP requests
    assert rpc.requests_sent == 1 + 3 + 3
    assert throttler.acquired == rpc.requests_sent
    assert HttpRpc("http://x").throttler is None

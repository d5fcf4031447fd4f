"""Spoiled JSON-RPC answers against `HttpRpc` and `FailoverRpc`, on loopback (no anvil).

A `SpoilingProxy` (tests/spoiling.py) sits in front of a `FakeNode` (tests/unit/
test_failover.py) and spoils chosen answers: a batch with an item missing, an item with
neither result nor error, a wrong id, a body that is not JSON, an empty body, a batch
answered with an object. `HttpRpc` raises `MalformedAnswer` (retryable) naming the method;
`FailoverRpc` moves on to the next endpoint, also at open, and also for a send whose answer
was spoiled after the node took it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from eth_utils.crypto import keccak

from keeper.chain.failover import FailoverRpc
from keeper.chain.http import HttpRpc, MalformedAnswer
from keeper.errors import NodeError, RetryableError
from tests.spoiling import BATCH_ONLY, KINDS, SpoilingProxy
from tests.unit.test_failover import SECRET, FakeNode, nodes, until, who

SINGLE_KINDS = [k for k in KINDS if k not in BATCH_ONLY]
# What the message says for each kind (the method is named as well).
SAYS = {
    "missing": "missing from the batch answer",
    "neither": "neither result nor error",
    "wrong-id": "id 10000",
    "not-json": "not JSON",
    "empty": "empty body",
    "not-list": "a batch answered with dict",
}
BATCH = [("eth_chainId", []), ("eth_blockNumber", []), ("eth_getBlockByNumber", ["0x64", False])]


@contextlib.asynccontextmanager
async def proxied(node: FakeNode) -> AsyncIterator[SpoilingProxy]:
    proxy = SpoilingProxy(node.url())
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.aclose()


@pytest.mark.parametrize("kind", SINGLE_KINDS)
async def test_a_spoiled_single_answer_is_a_malformed_answer_naming_the_method(kind: str) -> None:
    async with nodes({}) as (node,), proxied(node) as proxy:
        rpc = await HttpRpc.open(proxy.url + f"/v2/{SECRET}")
        try:
            proxy.spoil(kind)
            with pytest.raises(MalformedAnswer) as caught:
                await rpc.call("eth_blockNumber", [])
            message = str(caught.value)
            assert isinstance(caught.value, RetryableError)
            assert message.startswith("eth_blockNumber: ") and SAYS[kind] in message, message
            assert SECRET not in message
            assert await rpc.call("eth_blockNumber", []) == hex(100)  # the next one is fine
        finally:
            await rpc.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_spoiled_batch_is_a_malformed_answer_naming_the_method(kind: str) -> None:
    async with nodes({}) as (node,), proxied(node) as proxy:
        rpc = await HttpRpc.open(proxy.url)
        try:
            proxy.spoil(kind)
            with pytest.raises(MalformedAnswer) as caught:
                await rpc.batch(BATCH)
            message = str(caught.value)
            assert SAYS[kind] in message, message
            # The method at fault when one item is (the last one is spoiled), else the batch's.
            named = "eth_getBlockByNumber" if kind in ("missing", "neither") else "batch of 3"
            assert message.startswith(named), message
            assert await rpc.batch(BATCH) == ["0x1", hex(100), {"number": hex(100),
                                                                "hash": "0x00"}]
        finally:
            await rpc.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_failover_moves_on_past_a_spoiled_answer(kind: str) -> None:
    async with nodes({}, {}) as (a, b), proxied(a) as proxy:
        rpc = await FailoverRpc.open([proxy.url, b.url()], backoff=(60, 60))
        try:
            proxy.spoil(kind)
            if kind in BATCH_ONLY:
                assert await rpc.batch(BATCH) == ["0x1", hex(100), {"number": hex(100),
                                                                    "hash": "0x00"}]
                assert "eth_getBlockByNumber" in b.methods
            else:
                assert await who(rpc) == "node1"
            assert proxy.spoiled[kind] == 1
            primary, secondary = rpc.endpoints_stats()
            assert secondary.active and not primary.active and primary.errors == 1
            assert primary.bench_reason is not None and SAYS[kind] in primary.bench_reason
        finally:
            await rpc.aclose()


async def test_spoiled_answers_at_open_bench_the_endpoint_until_it_answers_well() -> None:
    async with nodes({}, {}) as (a, b), proxied(a) as proxy:
        proxy.spoil("missing")  # the open's batch of eth_chainId and eth_blockNumber
        with structlog.testing.capture_logs() as logs:
            rpc = await FailoverRpc.open([proxy.url, b.url()], backoff=(0.05, 0.2))
        try:
            assert rpc.chain_id == 1
            assert any(e["event"] == "rpc endpoint answered badly at start; will retry it"
                       for e in logs)
            assert [s.active for s in rpc.endpoints_stats()] == [False, True]
            assert await who(rpc) == "node1"
            proxy.spoil("not-json", "wrong-id")  # the first probes fail too

            async def back() -> bool:
                return await who(rpc) == "node0"

            await until(back, "the spoiled endpoint to be used again")
            assert proxy.spoiled == {"missing": 1, "not-json": 1, "wrong-id": 1}
        finally:
            await rpc.aclose()


async def test_every_endpoint_spoiled_is_a_malformed_answer() -> None:
    async with nodes({}, {}) as (a, b), proxied(a) as first, proxied(b) as second:
        rpc = await FailoverRpc.open([first.url, second.url], backoff=(60, 60))
        try:
            first.spoil("empty")
            second.spoil("neither")
            with pytest.raises(MalformedAnswer, match="every RPC endpoint failed") as caught:
                await rpc.call("eth_blockNumber", [])
            assert "empty body" in str(caught.value) and "neither" in str(caught.value)
        finally:
            await rpc.aclose()


RAW = "0x02f86c0180843b9aca00"  # the bytes are never decoded: only their hash matters
RAW_HASH = "0x" + keccak(hexstr=RAW).hex()


@pytest.mark.parametrize("known", [True, False])
async def test_a_send_whose_answer_was_spoiled_is_looked_up_on_the_next_endpoint(
    known: bool,
) -> None:
    """The spoiled endpoint took the transaction; the next one refuses it as already seen.
    If that one knows the transaction by its hash, the send succeeded; if not, its refusal
    is the answer."""
    async with nodes({}, {}) as (a, b), proxied(a) as proxy:
        rpc = await FailoverRpc.open([proxy.url, b.url()], backoff=(60, 60))
        try:
            b.errors["eth_sendRawTransaction"] = {"code": -32000, "message": "nonce too low"}
            b.results["eth_getTransactionByHash"] = {"hash": RAW_HASH} if known else None
            proxy.spoil("wrong-id")
            if known:
                assert await rpc.call("eth_sendRawTransaction", [RAW]) == RAW_HASH
            else:
                with pytest.raises(NodeError, match="nonce too low"):
                    await rpc.call("eth_sendRawTransaction", [RAW])
            assert "eth_sendRawTransaction" in a.methods  # the spoiled one got it
            assert b.methods[-2:] == ["eth_sendRawTransaction", "eth_getTransactionByHash"]
        finally:
            await rpc.aclose()


def test_the_proxy_spoils_what_it_is_told() -> None:
    proxy = SpoilingProxy("http://upstream")
    proxy.spoil("missing", "empty")
    assert proxy._choose(batch=False) is None  # "missing" waits for a batch, "empty" behind it
    assert proxy._choose(batch=True) == "missing"
    assert proxy._choose(batch=False) == "empty"
    assert proxy._choose(batch=True) is None
    proxy.spoil("neither", only={"eth_sendRawTransaction"})
    assert proxy._choose(batch=False, methods={"eth_call"}) is None
    assert proxy._choose(batch=True, methods={"eth_call", "eth_sendRawTransaction"}) == "neither"
    proxy.every = 2
    kinds: list[Any] = [proxy._choose(batch=True) for _ in range(12)]
    assert kinds[0::2] == [None] * 6 and set(kinds[1::2]) == set(KINDS)

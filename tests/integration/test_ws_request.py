"""JSON-RPC calls over the subscribed WebSocket (`WsSubscriptions.request`), on the devnet.

The racing send path broadcasts a volley's first transaction over the chain follower's
socket (`Sender.fast`): the answers must be routed by id between the notifications, a
node's refusal must come back as the node's error (so the sender classifies it as over
HTTP), and a socket that is not up must say so (so the sender falls back to HTTP).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from eth_account import Account

from keeper.chain.http import RpcError
from keeper.chain.ws import WsSubscriptions, heads
from keeper.errors import RetryableError, RpcUnavailable
from tests.conftest import Devnet

TIMEOUT = 20.0
DEV_KEY_5 = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _with_socket(devnet: Devnet,
                       body: Callable[[WsSubscriptions, list[dict[str, Any]]], Awaitable[None]],
                       ) -> None:
    socket = WsSubscriptions(devnet.info.ws_url)
    seen: list[dict[str, Any]] = []
    stop = asyncio.Event()
    running = asyncio.create_task(socket.run([heads(seen.append)], stop))
    try:
        await _until(lambda: socket.connected, "the socket to subscribe")
        await body(socket, seen)
    finally:
        stop.set()
        await asyncio.wait_for(running, TIMEOUT)


async def test_a_request_is_answered_between_notifications_and_sends_a_transaction(
        devnet: Devnet) -> None:
    async def body(socket: WsSubscriptions, seen: list[dict[str, Any]]) -> None:
        assert int(await socket.request("eth_chainId", []), 16) == devnet.info.chain_id
        sender = Account.from_key(DEV_KEY_5)
        nonce = int(await socket.request("eth_getTransactionCount",
                                         [sender.address, "pending"]), 16)
        signed = sender.sign_transaction({
            "type": 2, "chainId": devnet.info.chain_id, "nonce": nonce, "to": sender.address,
            "value": 1, "gas": 21_000, "maxFeePerGas": 3_000 * 10**9,
            "maxPriorityFeePerGas": 10**9})
        raw = "0x" + bytes(signed.raw_transaction).hex()
        tx_hash = await socket.request("eth_sendRawTransaction", [raw])
        assert tx_hash == "0x" + bytes(signed.hash).hex()
        # Mined: its block's header arrives as a notification on the same socket.
        async def receipt() -> dict[str, Any]:
            while (found := await socket.request("eth_getTransactionReceipt", [tx_hash])) is None:
                await asyncio.sleep(0.01)
            return dict(found)

        mined = int((await asyncio.wait_for(receipt(), TIMEOUT))["blockNumber"], 16)
        await _until(lambda: any(int(h["number"], 16) >= mined for h in seen),
                     "the mined block's header")
        # The same bytes again: the node's own refusal, as an RpcError, not "unavailable".
        with pytest.raises(RpcError) as refused:
            await socket.request("eth_sendRawTransaction", [raw])
        assert not isinstance(refused.value, RetryableError) or "nonce" in str(refused.value)

    await _with_socket(devnet, body)


async def test_a_request_without_a_socket_is_unavailable(devnet: Devnet) -> None:
    socket = WsSubscriptions(devnet.info.ws_url)
    with pytest.raises(RpcUnavailable):
        await socket.request("eth_chainId", [])

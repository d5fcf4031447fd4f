"""The keeper's builder client (keeper/execution/builders.py) against the devnet builder:
signed requests accepted at both endpoints, fan-out where one dead builder does not hold
up the others, eth_callBundle, a bundle landing atomically in its target block, and a
mev_sendBundle backrun right behind a private transaction. The builder's timer is off: a
test decides when a block is built."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.crypto import keccak

from keeper.devnet.builder import DEFAULT_COINBASE, running_builder, verify_signature
from keeper.execution.builders import (
    BuilderClient,
    BuilderEndpoint,
    BuilderReply,
    backrun_body,
    signature_header,
)
from tests.integration.builder_client import PAYER, PAYER_CODE, SEARCHER_KEY, Client

IDENTITY = Account.from_key(SEARCHER_KEY)


def _dead_url() -> str:
    """A URL nothing listens on (a port bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def builder() -> Iterator[tuple[Client, list[BuilderEndpoint]]]:
    with running_builder(interval=0) as (anvil, thread):
        anvil.rpc("anvil_setCode", PAYER, PAYER_CODE)
        endpoints = [BuilderEndpoint("devnet-0", thread.urls[0]),
                     BuilderEndpoint("devnet-1", thread.urls[1])]
        yield Client(thread.urls[0]), endpoints


def test_header_is_eth_accounts_personal_sign() -> None:
    """Signed with coincurve directly: the very bytes `sign_message` gives."""
    for body in (b"", b"{}", b'{"jsonrpc":"2.0","id":1,"method":"eth_sendBundle"}' * 50):
        digest = "0x" + keccak(body).hex()
        signed = IDENTITY.sign_message(encode_defunct(text=digest))
        assert signature_header(body, IDENTITY) == \
            f"{IDENTITY.address}:0x{bytes(signed.signature).hex()}"


def test_header_is_what_the_builder_checks() -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"eth_sendBundle","params":[]}'
    assert verify_signature(signature_header(body, IDENTITY), body) == IDENTITY.address


def test_fan_out_survives_a_dead_builder_and_lands_atomically(
    builder: tuple[Client, list[BuilderEndpoint]],
) -> None:
    c, endpoints = builder
    dead = BuilderEndpoint("down", _dead_url())
    pay, pay_hash = c.tx(1, PAYER, value=10**15, tip_gwei=0)
    move, move_hash = c.tx(2, c.accounts[0].address, value=1)
    block = c.next_block()

    async def run() -> tuple[list[BuilderReply], list[BuilderReply]]:
        async with BuilderClient([endpoints[0], dead, endpoints[1]], IDENTITY,
                                 timeout=5) as client:
            called = await client.call_bundle([pay, move], block)
            sent = await client.send_bundle([pay, move], block)
            return list(called), list(sent)

    called, sent = asyncio.run(run())
    assert [r.builder for r in sent] == ["devnet-0", "down", "devnet-1"]
    ok = [r for r in sent if r.ok]
    assert len(ok) == 2 and not sent[1].ok and sent[1].error
    assert ok[0].result["bundleHash"] == ok[1].result["bundleHash"]
    simulated = called[0].result
    assert called[0].ok and int(simulated["ethSentToCoinbase"]) == 10**15
    assert [r["txHash"] for r in simulated["results"]] == [pay_hash, move_hash]
    report = c.build()
    assert report["transactions"][:2] == [pay_hash, move_hash]
    [fate] = [b for b in report["bundles"] if b["bundleHash"] == ok[0].result["bundleHash"]]
    assert fate["status"] == "included" and fate["endpoints"] == [0, 1]
    assert c.receipt(pay_hash) is not None and c.receipt(move_hash) is not None
    balance = int(c("eth_getBalance", DEFAULT_COINBASE, "latest"), 16)
    assert balance >= 10**15


def test_backrun_lands_right_behind_a_private_transaction(
    builder: tuple[Client, list[BuilderEndpoint]],
) -> None:
    c, endpoints = builder
    target, target_hash = c.tx(3, c.accounts[0].address, value=1, tip_gwei=1)
    c("eth_sendPrivateTransaction", {"tx": target})
    ours, ours_hash = c.tx(4, PAYER, value=10**14, tip_gwei=0)
    other, other_hash = c.tx(1, c.accounts[0].address, value=1, tip_gwei=50)
    c("eth_sendRawTransaction", other)
    block = c.next_block()

    async def run() -> list[BuilderReply]:
        async with BuilderClient(endpoints, IDENTITY) as client:
            return list(await client.mev_send_bundle(
                backrun_body(target_hash, [ours]), block, block + 2))

    replies = asyncio.run(run())
    assert all(r.ok for r in replies), replies
    report = c.build()
    txs = report["transactions"]
    assert txs.index(ours_hash) == txs.index(target_hash) + 1
    assert other_hash in txs
    assert int(c("eth_getBalance", DEFAULT_COINBASE, "latest"), 16) > 0

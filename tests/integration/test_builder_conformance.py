"""Conformance of the devnet block builder (keeper/devnet/builder), as plain JSON-RPC calls:
atomic bundles, reverts dropped unless allowed, backruns right behind their target,
ordering by what a bundle pays the builder, the signature header, hints on the SSE stream,
and two endpoints merged and de-duplicated. The builder runs with its block timer off
(blocks on `builder_buildBlock`, so a test decides what one block holds); the last test
runs the timer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from keeper.devnet.builder import DEFAULT_COINBASE, running_builder, sign_body
from tests.integration.builder_client import (
    BURNER,
    BURNER_CODE,
    EMITTER,
    EMITTER_CODE,
    GWEI,
    PAYER,
    PAYER_CODE,
    REVERTER,
    REVERTER_CODE,
    SEARCHER_KEY,
    Client,
    EventStream,
    call,
    post,
)

ETH = 10**18


@pytest.fixture(scope="module")
def builder() -> Iterator[tuple[Client, Client]]:
    """A fresh anvil with the builder in front; a client per endpoint."""
    with running_builder(interval=0) as (anvil, thread):
        for address, code in ((PAYER, PAYER_CODE), (REVERTER, REVERTER_CODE),
                              (EMITTER, EMITTER_CODE), (BURNER, BURNER_CODE)):
            anvil.rpc("anvil_setCode", address, code)
        yield Client(thread.urls[0]), Client(thread.urls[1])


def test_public_pool_by_tip_and_reads_forwarded(builder: tuple[Client, Client]) -> None:
    c, _ = builder
    start = int(c("eth_blockNumber"), 16)
    low, low_hash = c.tx(1, c.accounts[0].address, value=1, tip_gwei=1)
    high, high_hash = c.tx(2, c.accounts[0].address, value=1, tip_gwei=3)
    assert c("eth_sendRawTransaction", low) == low_hash
    assert c("eth_sendRawTransaction", high) == high_hash
    # Anvil never sees the pool, yet a pending nonce counts it; nothing is mined unasked.
    pending = int(c("eth_getTransactionCount", c.accounts[1].address, "pending"), 16)
    assert pending == c.nonce(1) + 1
    pool = c("txpool_content")["pending"]
    assert pool[c.accounts[2].address][str(c.nonce(2))]["hash"] == high_hash
    found = c("eth_getTransactionByHash", low_hash)
    assert (found["from"], found["value"], found["blockNumber"]) == (
        c.accounts[1].address, "0x1", None)
    assert int(c("eth_blockNumber"), 16) == start
    report = c.build()
    assert report["transactions"] == [high_hash, low_hash]  # higher tip first
    assert int(c("eth_blockNumber"), 16) == start + 1
    block = c("eth_getBlockByNumber", "latest", False)
    assert block["transactions"] == [high_hash, low_hash]
    assert block["miner"].lower() == DEFAULT_COINBASE.lower()
    # An unlocked dev account's eth_sendTransaction joins the pool too (signed by anvil).
    sent = c("eth_sendTransaction", {"from": c.accounts[0].address,
                                     "to": c.accounts[1].address, "value": "0x1"})
    assert c.build()["transactions"] == [sent]  # build() asserts no mismatch with the plan


def test_bundle_is_all_or_nothing(builder: tuple[Client, Client]) -> None:
    c, _ = builder
    ok, ok_hash = c.tx(1, c.accounts[0].address, value=1)
    bad, bad_hash = c.tx(2, REVERTER)
    nonce = c.nonce(3)
    first, first_hash = c.tx(3, c.accounts[0].address, nonce=nonce)
    gap, _gap_hash = c.tx(3, c.accounts[0].address, nonce=nonce + 2)  # nonce + 1 missing
    block = c.next_block()
    reverting = c("eth_sendBundle", {"txs": [ok, bad], "blockNumber": hex(block)})["bundleHash"]
    gapped = c("eth_sendBundle", {"txs": [first, gap], "blockNumber": hex(block)})["bundleHash"]
    before = [c.nonce(i) for i in (1, 2, 3)]
    report = c.build()
    assert report["transactions"] == []
    assert c.bundle_fate(report, reverting)["status"] == "dropped"
    assert "reverted" in c.bundle_fate(report, reverting)["reason"]
    assert c.bundle_fate(report, gapped)["status"] == "dropped"
    assert [c.nonce(i) for i in (1, 2, 3)] == before
    assert c.receipt(ok_hash) is None and c.receipt(bad_hash) is None
    assert c.receipt(first_hash) is None


def test_reverting_tx_hashes_and_can_revert(builder: tuple[Client, Client]) -> None:
    c, _ = builder
    ok, ok_hash = c.tx(1, c.accounts[0].address, value=1)
    bad, bad_hash = c.tx(2, REVERTER)
    block = c.next_block()
    allowed = c("eth_sendBundle", {"txs": [ok, bad], "blockNumber": hex(block),
                                   "revertingTxHashes": [bad_hash]})["bundleHash"]
    report = c.build()
    assert c.bundle_fate(report, allowed)["status"] == "included"
    assert report["transactions"] == [ok_hash, bad_hash]
    assert c.receipt(bad_hash)["status"] == "0x0"  # type: ignore[index]

    bad, bad_hash = c.tx(2, REVERTER)
    other, other_hash = c.tx(3, REVERTER)
    block = c.next_block()
    may = c("mev_sendBundle", {"version": "v0.1", "inclusion": {"block": hex(block)},
                               "body": [{"tx": bad, "canRevert": True}]})["bundleHash"]
    may_not = c("mev_sendBundle", {"version": "v0.1", "inclusion": {"block": hex(block)},
                                   "body": [{"tx": other, "canRevert": False}]})["bundleHash"]
    report = c.build()
    assert c.bundle_fate(report, may)["status"] == "included"
    assert c.bundle_fate(report, may_not)["status"] == "dropped"
    assert report["transactions"] == [bad_hash]
    assert c.receipt(other_hash) is None


def test_bundle_with_a_used_nonce_is_dropped(builder: tuple[Client, Client]) -> None:
    c, _ = builder
    nonce = c.nonce(1)
    public, public_hash = c.tx(1, c.accounts[0].address, value=1, nonce=nonce)
    c("eth_sendRawTransaction", public)
    assert c.build()["transactions"] == [public_hash]
    stale, _ = c.tx(1, c.accounts[0].address, value=2, nonce=nonce)
    bundle = c("eth_sendBundle", {"txs": [stale], "blockNumber": hex(c.next_block())})
    fate = c.bundle_fate(c.build(), bundle["bundleHash"])
    assert fate["status"] == "dropped" and "nonce" in fate["reason"]


def test_bundle_beats_a_public_tx_with_its_nonce(builder: tuple[Client, Client]) -> None:
    c, _ = builder
    nonce = c.nonce(1)
    public, public_hash = c.tx(1, c.accounts[0].address, value=1, tip_gwei=80, nonce=nonce)
    c("eth_sendRawTransaction", public)
    bundled, bundled_hash = c.tx(1, c.accounts[0].address, value=2, tip_gwei=1, nonce=nonce)
    c("eth_sendBundle", {"txs": [bundled], "blockNumber": hex(c.next_block())})
    assert c.build()["transactions"] == [bundled_hash]  # bundles first; same nonce: out
    assert c.build()["transactions"] == []  # and gone from the pool
    assert c.receipt(public_hash) is None


def test_bundles_fill_the_block_gas_limit(builder: tuple[Client, Client]) -> None:
    c, _ = builder
    limit = int(c("eth_getBlockByNumber", "latest", False)["gasLimit"], 16)
    block = hex(c.next_block())
    each = limit * 4 // 10  # two fit, a third does not
    hashes = [c("eth_sendBundle", {"txs": [c.tx(who, BURNER, gas=each, tip_gwei=tip)[0]],
                                   "blockNumber": block})["bundleHash"]
              for who, tip in ((1, 3), (2, 1), (3, 2))]
    report = c.build()
    fates = [c.bundle_fate(report, h) for h in hashes]
    assert [f["status"] for f in fates] == ["included", "dropped", "included"]
    assert fates[1]["reason"] == "block full"
    assert int(c("eth_getBlockByNumber", "latest", False)["gasUsed"], 16) <= limit


def test_bundle_time_window(builder: tuple[Client, Client]) -> None:
    c, _ = builder
    latest = int(c("eth_getBlockByNumber", "latest", False)["timestamp"], 16)
    block = hex(c.next_block())
    late, early, fits = (c.tx(1, c.accounts[0].address, value=v)[0] for v in (1, 2, 3))
    c("eth_sendBundle", {"txs": [late], "blockNumber": block, "maxTimestamp": latest})
    c("eth_sendBundle", {"txs": [early], "blockNumber": block, "minTimestamp": latest + 3600})
    inside = c("eth_sendBundle", {"txs": [fits], "blockNumber": block,
                                  "minTimestamp": latest, "maxTimestamp": latest + 3600})
    report = c.build()
    assert [b["bundleHash"] for b in report["bundles"]] == [inside["bundleHash"]]
    assert len(report["transactions"]) == 1


def test_one_bundle_sent_for_several_blocks(builder: tuple[Client, Client]) -> None:
    """The same eth_sendBundle for blocks N, N+1 and N+2 (three requests, as searchers send
    it) is valid at N: a relay keeps each (bundle, block)."""
    c, _ = builder
    first = c.next_block()
    raw, tx_hash = c.tx(1, c.accounts[0].address, value=7)
    for block in range(first, first + 3):
        c("eth_sendBundle", {"txs": [raw], "blockNumber": hex(block)})
    report = c.build()
    assert int(report["number"], 16) == first
    assert report["transactions"] == [tx_hash]


def test_backrun_lands_right_behind_its_hinted_target(builder: tuple[Client, Client]) -> None:
    c, _ = builder
    events = EventStream(c.url + "/events")
    try:
        target, target_hash = c.tx(3, EMITTER, data="0xdeadbeef01", tip_gwei=1)
        hints = ["calldata", "contract_address", "function_selector", "logs", "hash"]
        assert c("eth_sendPrivateTransaction", {
            "tx": target, "preferences": {"privacy": {"hints": hints}}}) == target_hash
        event = events.next()
    finally:
        events.close()
    assert event["hash"] == target_hash
    assert event["txs"] == [{"to": EMITTER.lower(), "functionSelector": "0xdeadbeef",
                             "callData": "0xdeadbeef01"}]
    assert [log["address"].lower() for log in event["logs"]] == [EMITTER.lower()]
    assert int(event["logs"][0]["data"], 16) == 42
    assert int(event["gasUsed"], 16) > 21_000 and "mevGasPrice" in event
    # Public transactions with far higher tips do not come between target and backrun.
    loud, loud_hash = c.tx(4, c.accounts[0].address, value=1, tip_gwei=90)
    c("eth_sendRawTransaction", loud)
    backrun, backrun_hash = c.tx(1, c.accounts[0].address, value=1, tip_gwei=2)
    bundle = c("mev_sendBundle", {
        "version": "v0.1", "inclusion": {"block": hex(c.next_block())},
        "body": [{"hash": target_hash}, {"tx": backrun, "canRevert": False}],
    })["bundleHash"]
    report = c.build()
    assert c.bundle_fate(report, bundle)["status"] == "included"
    assert report["transactions"] == [target_hash, backrun_hash, loud_hash]
    assert report["transactions"].count(target_hash) == 1  # its own one-tx bundle dropped


def test_hinted_bundle_is_backrun_and_a_failed_backrun_leaves_its_target(
    builder: tuple[Client, Client],
) -> None:
    c, other = builder
    events = EventStream(c.url + "/events")
    try:
        user, user_hash = c.tx(3, EMITTER, data="0x01020304")
        shared = c("mev_sendBundle", {
            "version": "v0.1", "inclusion": {"block": hex(c.next_block()),
                                             "maxBlock": hex(c.next_block() + 5)},
            "body": [{"tx": user}], "privacy": {"hints": ["function_selector", "tx_hash"]},
        })["bundleHash"]
        event = events.next()
    finally:
        events.close()
    assert event["hash"] == shared and event["logs"] is None
    assert event["txs"] == [{"functionSelector": "0x01020304", "hash": user_hash}]
    # A backrun sent to the other endpoint names the hinted bundle by its hash, and reverts.
    failing, failing_hash = other.tx(1, REVERTER)
    backrun = call(other.url, "mev_sendBundle", {
        "version": "v0.1", "inclusion": {"block": hex(c.next_block())},
        "body": [{"hash": shared}, {"tx": failing}]})["bundleHash"]
    report = c.build()
    assert c.bundle_fate(report, backrun)["status"] == "dropped"
    assert c.bundle_fate(report, shared)["status"] == "included"
    assert report["transactions"] == [user_hash] and c.receipt(failing_hash) is None
    unknown = post(c.url, {"jsonrpc": "2.0", "id": 1, "method": "mev_sendBundle", "params": [{
        "version": "v0.1", "inclusion": {"block": hex(c.next_block())},
        "body": [{"hash": "0x" + "ab" * 32}, {"tx": failing}]}]})
    assert unknown["error"]["code"] == -32602 and "unknown hash" in unknown["error"]["message"]


def test_backrun_of_a_pending_public_transaction(builder: tuple[Client, Client]) -> None:
    c, _ = builder
    target, target_hash = c.tx(3, c.accounts[0].address, value=1, tip_gwei=1)
    c("eth_sendRawTransaction", target)
    loud, loud_hash = c.tx(4, c.accounts[0].address, value=1, tip_gwei=50)
    c("eth_sendRawTransaction", loud)
    backrun, backrun_hash = c.tx(1, PAYER, value=10**15)
    c("mev_sendBundle", {"version": "v0.1", "inclusion": {"block": hex(c.next_block())},
                         "body": [{"hash": target_hash}, {"tx": backrun}]})
    assert c.build()["transactions"] == [target_hash, backrun_hash, loud_hash]


def test_coinbase_transfer_beats_a_higher_gas_price(builder: tuple[Client, Client]) -> None:
    c, _ = builder
    target, target_hash = c.tx(3, c.accounts[0].address, value=1)
    c("eth_sendPrivateTransaction", {"tx": target})
    tipper, _ = c.tx(1, c.accounts[0].address, value=1, tip_gwei=50)  # 1.05e15 wei in tips
    payer, payer_hash = c.tx(2, PAYER, value=ETH // 100, tip_gwei=1)  # 1e16 wei to coinbase
    block = hex(c.next_block())
    by_tip = c("mev_sendBundle", {"version": "v0.1", "inclusion": {"block": block},
                                  "body": [{"hash": target_hash}, {"tx": tipper}]})
    by_transfer = c("mev_sendBundle", {"version": "v0.1", "inclusion": {"block": block},
                                       "body": [{"hash": target_hash}, {"tx": payer}]})
    before = int(c("eth_getBalance", DEFAULT_COINBASE, "latest"), 16)
    report = c.build()
    won = c.bundle_fate(report, by_transfer["bundleHash"])
    lost = c.bundle_fate(report, by_tip["bundleHash"])
    assert won["status"] == "included" and lost["status"] == "dropped"
    assert int(lost["payment"], 16) < int(won["payment"], 16)
    assert report["transactions"] == [target_hash, payer_hash]
    gained = int(c("eth_getBalance", DEFAULT_COINBASE, "latest"), 16) - before
    assert gained == int(won["payment"], 16) >= ETH // 100


def test_signature_header_is_checked(builder: tuple[Client, Client]) -> None:
    c, _ = builder
    raw, _ = c.tx(1, c.accounts[0].address, value=1)
    payload = {"jsonrpc": "2.0", "id": 7, "method": "eth_sendBundle",
               "params": [{"txs": [raw], "blockNumber": hex(c.next_block())}]}
    other_body = sign_body(b'{"something": "else"}', SEARCHER_KEY)
    address = other_body.split(":")[0]
    valid = sign_body(b"x", SEARCHER_KEY).split(":")[1]
    for header in (None, "garbage", other_body, f"{address}:0x1234",
                   f"0x{'00' * 20}:{valid}"):
        reply = post(c.url, payload, key=None, header=header)
        assert reply["error"]["code"] == -32600, (header, reply)
        assert reply["id"] == 7
    for method in ("mev_sendBundle", "eth_callBundle", "eth_sendPrivateTransaction"):
        reply = post(c.url, {**payload, "method": method}, key=None)
        assert reply["error"]["code"] == -32600
    assert "bundleHash" in post(c.url, payload)["result"]
    assert "result" in post(c.url, {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId",
                                    "params": []}, key=None)


def test_two_endpoints_merged_and_deduplicated(builder: tuple[Client, Client]) -> None:
    a, b = builder
    block = hex(a.next_block())
    shared, shared_hash = a.tx(1, a.accounts[0].address, value=1)
    same = [call(url, "eth_sendBundle", {"txs": [shared], "blockNumber": block})["bundleHash"]
            for url in (a.url, b.url)]
    assert same[0] == same[1]
    nonce = a.nonce(2)
    cheap, _ = a.tx(2, a.accounts[0].address, value=1, tip_gwei=2, nonce=nonce)
    rich, rich_hash = a.tx(2, PAYER, value=ETH // 100, nonce=nonce)
    only_a = a("eth_sendBundle", {"txs": [cheap], "blockNumber": block})["bundleHash"]
    only_b = b("eth_sendBundle", {"txs": [rich], "blockNumber": block})["bundleHash"]
    separate, separate_hash = a.tx(3, a.accounts[0].address, value=1)
    only_b2 = b("eth_sendBundle", {"txs": [separate], "blockNumber": block})["bundleHash"]
    report = a.build()
    fate = a.bundle_fate(report, same[0])  # listed once, from both endpoints
    assert fate["endpoints"] == [0, 1] and fate["status"] == "included"
    assert a.bundle_fate(report, only_b)["endpoints"] == [1]
    assert a.bundle_fate(report, only_b)["status"] == "included"
    assert a.bundle_fate(report, only_a)["status"] == "dropped"  # same nonce, pays less
    assert a.bundle_fate(report, only_b2)["status"] == "included"
    assert sorted(report["transactions"]) == sorted([shared_hash, rich_hash, separate_hash])
    assert report["transactions"][0] == rich_hash  # the best bid first


def test_call_bundle_simulates_without_mining(builder: tuple[Client, Client]) -> None:
    c, _ = builder
    raw, raw_hash = c.tx(1, PAYER, value=ETH // 100, tip_gwei=1)
    height, nonce = c.next_block(), c.nonce(1)
    result = c("eth_callBundle", {"txs": [raw], "blockNumber": hex(height)})
    assert result["results"][0]["txHash"] == raw_hash
    assert int(result["ethSentToCoinbase"]) == ETH // 100
    assert int(result["gasFees"]) == result["results"][0]["gasUsed"] * GWEI  # a 1 gwei tip
    assert int(result["coinbaseDiff"]) == ETH // 100 + int(result["gasFees"])
    assert result["results"][0]["gasUsed"] > 21_000
    assert (c.next_block(), c.nonce(1)) == (height, nonce)


def test_cancel_private_transaction(builder: tuple[Client, Client]) -> None:
    c, _ = builder
    raw, raw_hash = c.tx(1, c.accounts[0].address, value=1)
    c("eth_sendPrivateTransaction", {"tx": raw})
    assert c("eth_cancelPrivateTransaction", {"txHash": raw_hash}) is True
    assert c("eth_cancelPrivateTransaction", {"txHash": raw_hash}) is False
    assert c.build()["transactions"] == []


def test_replacement_uuid_replaces_the_bundle(builder: tuple[Client, Client]) -> None:
    c, _ = builder
    block = hex(c.next_block())
    old, _ = c.tx(1, c.accounts[0].address, value=1)
    new, new_hash = c.tx(1, c.accounts[0].address, value=2)
    uuid = "5f4b1c7e-0000-4000-8000-000000000001"
    c("eth_sendBundle", {"txs": [old], "blockNumber": block, "replacementUuid": uuid})
    c("eth_sendBundle", {"txs": [new], "blockNumber": block, "replacementUuid": uuid})
    report = c.build()
    assert report["transactions"] == [new_hash] and len(report["bundles"]) == 1


def test_blocks_on_the_interval() -> None:
    with running_builder(interval=0.3) as (_anvil, thread):
        c = Client(thread.urls[0])
        raw, raw_hash = c.tx(1, c.accounts[0].address, value=1)
        c("eth_sendRawTransaction", raw)
        bundle, bundle_hash = c.tx(2, c.accounts[0].address, value=1)
        target = c.next_block() + 2
        c("eth_sendBundle", {"txs": [bundle], "blockNumber": hex(target)})
        deadline = time.monotonic() + 10
        while c.next_block() <= target and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.receipt(raw_hash) is not None
        mined = c.receipt(bundle_hash)
        assert mined is not None and int(mined["blockNumber"], 16) == target

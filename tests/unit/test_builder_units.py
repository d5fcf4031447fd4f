"""The devnet builder's pieces without a chain: the X-Flashbots-Signature header against
Flashbots' own construction, raw transaction decoding, the base fee, the public pool's
order, bundle parsing, pools and the merge of two endpoints."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_keys.datatypes import Signature
from eth_utils.crypto import keccak

from keeper.devnet.builder.block import public_order
from keeper.devnet.builder.bundles import (
    BundleError,
    BundlePool,
    merged,
    parse_eth_bundle,
    parse_mev_bundle,
    parse_private_tx,
)
from keeper.devnet.builder.chain import next_base_fee
from keeper.devnet.builder.txs import SignatureError, decode_raw, sign_body, verify_signature

KEY = "0x" + "5e" * 32
SENDERS = [Account.from_key("0x" + f"{i:02x}" * 32) for i in (1, 2)]
TO = "0x00000000000000000000000000000000000000AA"


def signed(who: int, nonce: int, tip: int = 1, **extra: Any) -> str:
    tx: dict[str, Any] = {"chainId": 31337, "to": TO, "value": 5, "gas": 21_000,
                          "nonce": nonce, "data": "0x0102"}
    if "gasPrice" in extra:
        tx.update(extra)
    else:
        tx.update(type=2, maxFeePerGas=100 * 10**9, maxPriorityFeePerGas=tip * 10**9, **extra)
    return "0x" + bytes(SENDERS[who].sign_transaction(tx).raw_transaction).hex()


def test_signature_is_flashbots_construction() -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"eth_sendBundle","params":[]}'
    header = sign_body(body, KEY)
    address, signature = header.split(":")
    # As relay.flashbots.net checks it (go: accounts.TextHash of Keccak256Hash(body).Hex()).
    hashed = ("0x" + keccak(body).hex()).encode()
    digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(hashed)).encode() + hashed)
    raw = bytearray(bytes.fromhex(signature[2:]))
    raw[64] -= 27
    recovered = Signature(bytes(raw)).recover_public_key_from_msg_hash(digest)
    assert recovered.to_checksum_address() == address == Account.from_key(KEY).address
    assert verify_signature(header, body) == address


@pytest.mark.parametrize("header", [None, "", "no-colon", "0x12:0x34",
                                    f"{SENDERS[0].address}:0xzz"])
def test_malformed_signatures(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify_signature(header, b"{}")


def test_signature_of_another_body_or_address() -> None:
    header = sign_body(b"{}", KEY)
    with pytest.raises(SignatureError):
        verify_signature(header, b"{ }")
    with pytest.raises(SignatureError):
        verify_signature(SENDERS[0].address + ":" + header.split(":")[1], b"{}")


@pytest.mark.parametrize("kind", ["legacy", "access_list", "dynamic"])
def test_decode_raw(kind: str) -> None:
    kinds: dict[str, dict[str, Any]] = {
        "legacy": {"gasPrice": 7 * 10**9},
        "access_list": {"gasPrice": 7 * 10**9, "type": 1, "accessList": []},
        "dynamic": {},
    }
    extra = kinds[kind]
    raw = signed(1, 4, tip=3, **extra)
    tx = decode_raw(raw)
    assert tx.sender == SENDERS[1].address and tx.nonce == 4 and tx.to == TO
    assert (tx.value, tx.data, tx.gas) == (5, b"\x01\x02", 21_000)
    assert tx.hash == "0x" + keccak(bytes.fromhex(raw[2:])).hex()
    if kind == "dynamic":
        assert (tx.max_fee, tx.max_priority_fee, tx.tip(98 * 10**9)) == (
            100 * 10**9, 3 * 10**9, 2 * 10**9)
    else:
        assert tx.legacy_fees and tx.max_fee == tx.max_priority_fee == 7 * 10**9


def test_decode_refuses_garbage() -> None:
    for raw in ("0x", "0xzz", "0x05c0", "0xc0"):
        with pytest.raises(ValueError, match=r"."):
            decode_raw(raw)


def test_next_base_fee_eip1559() -> None:
    def parent(used: int) -> dict[str, str]:
        return {"baseFeePerGas": hex(800), "gasUsed": hex(used), "gasLimit": hex(30_000_000)}

    assert next_base_fee(parent(15_000_000)) == 800
    assert next_base_fee(parent(30_000_000)) == 900  # +12.5 %
    assert next_base_fee(parent(0)) == 700  # -12.5 %


def test_public_order_by_tip_in_nonce_order() -> None:
    a0, a1 = decode_raw(signed(0, 0, tip=1)), decode_raw(signed(0, 1, tip=100))
    b0 = decode_raw(signed(1, 0, tip=50))
    assert public_order([a1, a0, b0], 0, []) == [b0, a0, a1]


def test_pool_replacement_cancel_prune_and_merge() -> None:
    first, second = signed(0, 0), signed(0, 0, tip=2)
    pool = BundlePool(0)
    old = parse_eth_bundle([{"txs": [first], "blockNumber": "0x5", "replacementUuid": "u"}],
                           "0xSigner")
    new = parse_eth_bundle([{"txs": [second], "blockNumber": "0x5", "replacementUuid": "u"}],
                           "0xSigner")
    pool.add(old)
    pool.add(new)
    # An eth_sendBundle is kept per target block (the same bundle sent for blocks N..N+2).
    assert list(pool.bundles) == [f"{new.hash}@5"]
    assert not pool.cancel("0xOther", "u") and pool.cancel("0xsigner", "u")
    assert pool.bundles == {}

    other = BundlePool(1)
    for p in (pool, other):
        p.add(parse_eth_bundle([{"txs": [first], "blockNumber": "0x5"}], "0xS"))
    later = parse_eth_bundle([{"txs": [second], "blockNumber": "0x6"}], "0xS")
    other.add(later)
    merged_5 = merged([pool, other], 5, 0)
    assert [(b.hash, b.endpoints) for b in merged_5] == [(old.hash, {0, 1})]
    assert pool.bundles[f"{old.hash}@5"].endpoints == {0}  # the merge copies
    other.prune(6, {decode_raw(second).hash})
    assert list(other.bundles) == []  # the block-5 one expired, the other's tx was mined


def test_parse_errors() -> None:
    raw = signed(0, 0)
    with pytest.raises(BundleError, match="blockNumber"):
        parse_eth_bundle([{"txs": [raw]}], "0xS")
    with pytest.raises(BundleError, match="txs"):
        parse_eth_bundle([{"txs": [], "blockNumber": "0x1"}], "0xS")
    with pytest.raises(BundleError, match="version"):
        parse_mev_bundle([{"version": "v9", "inclusion": {"block": "0x1"}, "body": [{"tx": raw}]}],
                         "0xS", lambda _h: None)
    with pytest.raises(BundleError, match="unknown hash"):
        parse_mev_bundle([{"inclusion": {"block": "0x1"}, "body": [{"hash": "0x12"}]}],
                         "0xS", lambda _h: None)
    with pytest.raises(BundleError, match="maxBlock"):
        parse_mev_bundle([{"inclusion": {"block": "0x2", "maxBlock": "0x1"},
                           "body": [{"tx": raw}]}], "0xS", lambda _h: None)
    private = parse_private_tx([{"tx": raw}], "0xS", 10)
    assert (private.first_block, private.last_block) == (10, 34)
    assert private.hints == {"hash", "default_logs"}

"""`TxSigner` signs the bytes eth_account signs, and never shows its key."""

from __future__ import annotations

import random

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address

from keeper.execution.signing import TxSigner

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil account 1


def test_the_same_bytes_and_hash_as_eth_account() -> None:
    account = Account.from_key(KEY)
    signer = TxSigner(account)
    rng = random.Random(7)
    for _ in range(200):
        chain_id = rng.choice([1, 10, 8453, 31337, 2**40 + 3])
        to = "0x" + rng.randbytes(20).hex()
        data = "0x" + rng.randbytes(rng.choice([0, 4, 68, 260, 1500])).hex()
        gas, nonce = rng.randrange(21_000, 30_000_000), rng.randrange(0, 2**32)
        priority_fee = rng.randrange(0, 10**12)
        max_fee = priority_fee + rng.randrange(0, 10**13)
        expected = account.sign_transaction({
            "type": 2, "chainId": chain_id, "nonce": nonce, "to": to_checksum_address(to),
            "data": data, "value": 0, "gas": gas,
            "maxFeePerGas": max_fee, "maxPriorityFeePerGas": priority_fee,
        })
        tx_hash, raw = signer.sign(chain_id, to, data, gas=gas, nonce=nonce,
                                   fees=(max_fee, priority_fee))
        assert raw == "0x" + bytes(expected.raw_transaction).hex()
        assert tx_hash == "0x" + bytes(expected.hash).hex()
        assert Account.recover_transaction(raw).lower() == account.address.lower()


def test_the_key_stays_hidden_and_a_bad_address_is_refused() -> None:
    signer = TxSigner(Account.from_key(KEY))
    assert KEY.removeprefix("0x") not in repr(signer) and KEY not in str(signer)
    with pytest.raises(ValueError, match="not an address"):
        signer.sign(1, "0x" + "ab" * 19, "0x", gas=21_000, nonce=0, fees=(1, 1))

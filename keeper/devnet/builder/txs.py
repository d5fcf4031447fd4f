"""Raw transactions and the X-Flashbots-Signature header, as the devnet builder reads them.

A raw transaction is decoded once on arrival (hash, sender, nonce, fees, calldata) so the
builder can order its pool and build hints without asking anvil. The signature header is
Flashbots': `X-Flashbots-Signature: <address>:<signature>`, where the signature is an
EIP-191 personal-sign of the hex string of keccak256(request body) ("0x" + 64 lowercase
hex digits), as relay.flashbots.net and mev-share-node check it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rlp  # type: ignore[import-untyped]  # pyrlp ships no type information
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

SIGNATURE_HEADER = "X-Flashbots-Signature"


class SignatureError(ValueError):
    """The X-Flashbots-Signature header is missing, malformed, or does not sign the body."""


class TxDecodeError(ValueError):
    """A raw transaction the builder cannot decode (unknown type or bad RLP/signature)."""


@dataclass(frozen=True)
class RawTx:
    """A signed transaction as submitted, with the fields the builder orders and hints by."""

    raw: bytes
    hash: str  # 0x + lowercase hex
    sender: str  # checksummed
    nonce: int
    to: str | None  # checksummed; None for a contract creation
    value: int
    data: bytes
    gas: int
    max_fee: int  # gasPrice for legacy and access-list transactions
    max_priority_fee: int

    @property
    def legacy_fees(self) -> bool:
        """Types 0 and 1 (one gasPrice) rather than 1559 fees."""
        return self.raw[0] >= 0xC0 or self.raw[0] == 1

    @property
    def raw_hex(self) -> str:
        return "0x" + self.raw.hex()

    def as_rpc(self) -> dict[str, Any]:
        """As eth_getTransactionByHash shows a pending transaction (no block, no signature)."""
        kind = 0 if self.raw[0] >= 0xC0 else self.raw[0]
        out: dict[str, Any] = {
            "hash": self.hash, "type": hex(kind), "from": self.sender, "to": self.to,
            "nonce": hex(self.nonce), "value": hex(self.value), "gas": hex(self.gas),
            "input": "0x" + self.data.hex(), "gasPrice": hex(self.max_fee),
            "blockHash": None, "blockNumber": None, "transactionIndex": None,
        }
        if not self.legacy_fees:
            out["maxFeePerGas"] = hex(self.max_fee)
            out["maxPriorityFeePerGas"] = hex(self.max_priority_fee)
        return out

    def tip(self, base_fee: int) -> int:
        """What one unit of gas pays the builder over the base fee (EIP-1559 effective tip)."""
        return max(0, min(self.max_priority_fee, self.max_fee - base_fee))


def _int(field: object) -> int:
    assert isinstance(field, bytes)
    return int.from_bytes(field, "big")


def _to(field: object) -> str | None:
    assert isinstance(field, bytes)
    return to_checksum_address(field) if field else None


def decode_raw(raw_hex: str) -> RawTx:
    """Decode a legacy, EIP-2930, EIP-1559 or EIP-7702 signed transaction."""
    try:
        raw = bytes.fromhex(raw_hex.removeprefix("0x"))
    except ValueError:
        raise TxDecodeError("transaction is not hex") from None
    if not raw:
        raise TxDecodeError("empty transaction")
    try:
        if raw[0] >= 0xC0:  # legacy: [nonce, gasPrice, gas, to, value, data, v, r, s]
            f = rlp.decode(raw)
            nonce, fee, prio, gas, to, value, data = f[0], f[1], f[1], f[2], f[3], f[4], f[5]
        elif raw[0] == 1:  # [chainId, nonce, gasPrice, gas, to, value, data, accessList, ...]
            f = rlp.decode(raw[1:])
            nonce, fee, prio, gas, to, value, data = f[1], f[2], f[2], f[3], f[4], f[5], f[6]
        elif raw[0] in (2, 4):  # [chainId, nonce, tip, maxFee, gas, to, value, data, ...]
            f = rlp.decode(raw[1:])
            nonce, prio, fee, gas, to, value, data = f[1], f[2], f[3], f[4], f[5], f[6], f[7]
        else:
            raise TxDecodeError(f"transaction type {raw[0]} is not supported by the builder")
        sender = Account.recover_transaction(raw)
    except TxDecodeError:
        raise
    except Exception as exc:  # rlp and eth-account raise many types for bad input
        raise TxDecodeError(f"cannot decode transaction: {exc}") from None
    assert isinstance(data, bytes)
    return RawTx(
        raw=raw, hash="0x" + keccak(raw).hex(), sender=to_checksum_address(sender),
        nonce=_int(nonce), to=_to(to), value=_int(value), data=data, gas=_int(gas),
        max_fee=_int(fee), max_priority_fee=_int(prio),
    )


def _digest(body: bytes) -> str:
    return "0x" + keccak(body).hex()


def sign_body(body: bytes, private_key: str) -> str:
    """The X-Flashbots-Signature value for `body` signed with `private_key`."""
    signed = Account.sign_message(encode_defunct(text=_digest(body)), private_key)
    address = Account.from_key(private_key).address
    return f"{address}:0x{bytes(signed.signature).hex()}"


def verify_signature(header: str | None, body: bytes) -> str:
    """The checksummed address that signed `body`; SignatureError if the header is missing,
    malformed, or signed by another key than the address it names."""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    address, sep, signature = header.partition(":")
    if not sep or not address.startswith("0x") or len(address) != 42:
        raise SignatureError(f"{SIGNATURE_HEADER} must be <address>:<signature>")
    try:
        recovered = Account.recover_message(
            encode_defunct(text=_digest(body)), signature=bytes.fromhex(signature[2:]))
    except Exception:  # bad hex, wrong length, invalid point: all one answer to the caller
        raise SignatureError("invalid signature") from None
    if recovered.lower() != address.lower():
        raise SignatureError(f"signature check failed for {address}")
    return to_checksum_address(recovered)

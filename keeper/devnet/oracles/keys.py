"""Devnet oracle keys: DEVNET ONLY, derived from public strings, never to hold real funds.

Each devnet oracle has a signing key (signs reports; never sends a transaction) and a
transmitter key (sends `transmit`; funded on the devnet with anvil_setBalance). Both are
keccak256 of a fixed public string, so anyone can recompute them: that is the point (tests
and docs name them), and the reason they must never be used off a devnet.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_keys.datatypes import PrivateKey
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

ORACLE_COUNT = 4
# Signs the SVR feed's requests to a builder (the X-Flashbots-Signature header); holds no ETH.
ORDER_FLOW_KEY = keccak(text="keeper devnet oracle order flow")
FAULTY = 1  # f: OCR2Base needs n > 3f and exactly f + 1 signatures per report


@dataclass(frozen=True)
class OracleKeys:
    """One devnet oracle: its report-signing key and its transmitter key."""

    index: int
    signer_key: bytes
    transmitter_key: bytes

    @property
    def signer(self) -> str:
        return _address(self.signer_key)

    @property
    def transmitter(self) -> str:
        return _address(self.transmitter_key)


def _address(private_key: bytes) -> str:
    return to_checksum_address(PrivateKey(private_key).public_key.to_canonical_address())


def devnet_oracles(count: int = ORACLE_COUNT) -> list[OracleKeys]:
    """The devnet oracles: keccak256("keeper devnet oracle signer|transmitter <i>")."""
    return [
        OracleKeys(
            index=i,
            signer_key=keccak(text=f"keeper devnet oracle signer {i}"),
            transmitter_key=keccak(text=f"keeper devnet oracle transmitter {i}"),
        )
        for i in range(count)
    ]

"""Build and sign OCR2 median reports as the oracle nodes do, and encode `transmit`.

Mirrors libocr: the report layout of offchainreporting2/reportingplugin/median/evmreportcodec
(BuildReport: observations sorted, observers byte i = oracle index of observation i, the
timestamp the median of the oracles' timestamps), the report context of
offchainreporting2plus/chains/evmutil (RawReportContext) and the signature that OCR2Base.transmit
(@chainlink/contracts 0.8.0) recovers: secp256k1 over keccak256(keccak256(report) ++ context),
v - 27 in byte i of rawVs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi.abi import encode
from eth_keys.datatypes import PrivateKey
from eth_utils.crypto import keccak

from keeper.devnet.oracles.keys import OracleKeys
from keeper.oracles.transmit import (
    TRANSMIT_SELECTOR,
    TRANSMIT_TYPES,
    encode_report,
    report_context,
)


@dataclass(frozen=True)
class Observation:
    """One oracle's observation of a feed: its value (feed units) and when it was made."""

    oracle: int
    value: int
    timestamp: int


@dataclass(frozen=True)
class SignedReport:
    """A report, its 96-byte context and the signatures that go with it to `transmit`."""

    report: bytes
    context: bytes
    signatures: tuple[tuple[bytes, bytes, int], ...]  # (r, s, v in {0, 1})

    def calldata(self) -> bytes:
        """`transmit(reportContext, report, rs, ss, rawVs)` calldata, selector included."""
        rs = [r for r, _s, _v in self.signatures]
        ss = [s for _r, s, _v in self.signatures]
        raw_vs = bytes(v for _r, _s, v in self.signatures).ljust(32, b"\x00")
        words = [self.context[i : i + 32] for i in (0, 32, 64)]
        args = [words, self.report, rs, ss, raw_vs]
        return TRANSMIT_SELECTOR + encode(list(TRANSMIT_TYPES), args)


def build_report(observations: Sequence[Observation], juels_per_fee_coin: int = 0) -> bytes:
    """The median report of `observations` (evmreportcodec.BuildReport)."""
    if not observations:
        raise ValueError("a report needs observations")
    times = sorted(o.timestamp for o in observations)
    ordered = sorted(observations, key=lambda o: o.value)
    return encode_report(
        times[len(times) // 2],
        bytes(o.oracle for o in ordered),
        [o.value for o in ordered],
        juels_per_fee_coin,
    )


def signing_hash(report: bytes, context: bytes) -> bytes:
    """keccak256(abi.encodePacked(keccak256(report), reportContext)) as OCR2Base.transmit."""
    return keccak(keccak(report) + context)


def sign_report(
    report: bytes,
    config_digest: bytes,
    epoch: int,
    round_: int,
    *,
    signers: Sequence[OracleKeys],
    extra_hash: bytes = bytes(32),
) -> SignedReport:
    """The report signed by `signers` (OCR2Base wants exactly f + 1 distinct configured ones)."""
    context = report_context(config_digest, epoch, round_, extra_hash)
    digest = signing_hash(report, context)
    signatures = []
    for oracle in signers:
        sig = PrivateKey(oracle.signer_key).sign_msg_hash(digest)
        signatures.append((sig.r.to_bytes(32, "big"), sig.s.to_bytes(32, "big"), sig.v))
    return SignedReport(report=report, context=context, signatures=tuple(signatures))

"""Decode a Chainlink OCR2 median `transmit` call: the feed's new answer before it is mined.

An OCR2 price feed is updated by one transaction,

    transmit(bytes32[3] reportContext, bytes report, bytes32[] rs, bytes32[] ss, bytes32 rawVs)

(OCR2Abstract/OCR2Base in @chainlink/contracts 0.8.0, libocr contract2/OCR2Aggregator.sol):

* reportContext[0] is the config digest, reportContext[1] holds the epoch (4 bytes, big
  endian) and round (1 byte) in its last 5 bytes, reportContext[2] the extra hash
  (libocr offchainreporting2plus/chains/evmutil RawReportContext);
* report = abi.encode(uint32 observationsTimestamp, bytes32 rawObservers,
  int192[] observations, int192 juelsPerFeeCoin), observations sorted ascending
  (libocr offchainreporting2/reportingplugin/median/evmreportcodec);
* the new answer is observations[len / 2] (OCR2Aggregator._report; evmreportcodec
  MedianFromReport);
* signer i signs keccak256(keccak256(report) ++ reportContext[0..3]); rs/ss hold r and s,
  byte i of rawVs holds v - 27 (OCR2Base.transmit's ecrecover).

The functions here are pure: they read calldata (as in a pending transaction's `input`)
and never check signatures (the contract does; a pending transaction may still revert).
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak

TRANSMIT_SIGNATURE = "transmit(bytes32[3],bytes,bytes32[],bytes32[],bytes32)"
TRANSMIT_SELECTOR = keccak(text=TRANSMIT_SIGNATURE)[:4]
TRANSMIT_TYPES = ("bytes32[3]", "bytes", "bytes32[]", "bytes32[]", "bytes32")
REPORT_TYPES = ("uint32", "bytes32", "int192[]", "int192")


class NotATransmit(ValueError):
    """The calldata is not a well-formed OCR2 median `transmit` call."""


@dataclass(frozen=True)
class MedianReport:
    """An OCR2 median report and its context, as carried by `transmit` calldata."""

    config_digest: bytes
    epoch: int
    round: int
    observations_timestamp: int
    observers: bytes  # observer index of each observation, in observation order
    observations: tuple[int, ...]
    juels_per_fee_coin: int

    @property
    def median(self) -> int:
        """The answer the aggregator will store: observations[len / 2] (OCR2Aggregator._report)."""
        return self.observations[len(self.observations) // 2]

    @property
    def epoch_and_round(self) -> int:
        """uint40 (epoch << 8) | round, as OCR2Aggregator's NewTransmission logs it."""
        return (self.epoch << 8) | self.round


def encode_report(
    observations_timestamp: int,
    observers: bytes,
    observations: tuple[int, ...] | list[int],
    juels_per_fee_coin: int = 0,
) -> bytes:
    """abi.encode of a median report (libocr evmreportcodec.BuildReport's layout)."""
    raw_observers = bytes(observers).ljust(32, b"\x00")
    return encode(
        list(REPORT_TYPES),
        [observations_timestamp, raw_observers, list(observations), juels_per_fee_coin],
    )


def report_context(config_digest: bytes, epoch: int, round_: int, extra_hash: bytes) -> bytes:
    """The 96-byte reportContext (libocr evmutil.RawReportContext)."""
    middle = bytes(27) + epoch.to_bytes(4, "big") + round_.to_bytes(1, "big")
    return bytes(config_digest) + middle + bytes(extra_hash)


def decode_report(report: bytes) -> tuple[int, bytes, tuple[int, ...], int]:
    """(observationsTimestamp, observers, observations, juelsPerFeeCoin) of a median report."""
    try:
        timestamp, raw_observers, observations, juels = decode(list(REPORT_TYPES), report)
    except Exception as exc:  # eth_abi raises several decoding error types
        raise NotATransmit(f"report does not decode: {exc}") from exc
    values = tuple(int(v) for v in observations)
    if not values:
        raise NotATransmit("report has no observations")
    return int(timestamp), bytes(raw_observers)[: len(values)], values, int(juels)


def decode_transmit(calldata: bytes | str) -> MedianReport:
    """The median report inside `transmit` calldata (bytes or 0x-hex, selector included)."""
    if isinstance(calldata, str):
        try:
            data = bytes.fromhex(calldata.removeprefix("0x"))
        except ValueError as exc:
            raise NotATransmit(f"calldata is not hex: {exc}") from exc
    else:
        data = calldata
    if data[:4] != TRANSMIT_SELECTOR:
        raise NotATransmit("selector is not transmit(bytes32[3],bytes,bytes32[],bytes32[],bytes32)")
    try:
        context, report, _rs, _ss, _raw_vs = decode(list(TRANSMIT_TYPES), data[4:])
    except Exception as exc:
        raise NotATransmit(f"transmit arguments do not decode: {exc}") from exc
    timestamp, observers, observations, juels = decode_report(bytes(report))
    epoch_round = bytes(context[1])
    return MedianReport(
        config_digest=bytes(context[0]),
        epoch=int.from_bytes(epoch_round[27:31], "big"),
        round=epoch_round[31],
        observations_timestamp=timestamp,
        observers=observers,
        observations=observations,
        juels_per_fee_coin=juels,
    )


def transmit_median(calldata: bytes | str) -> int:
    """The feed's new answer carried by `transmit` calldata: the report's middle observation."""
    return decode_transmit(calldata).median

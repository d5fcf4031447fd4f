"""OCR2 `transmit` calldata: the report layout and context written out word by word, the
median index, the signing hash and rawVs, malformed calldata refused; the devnet oracles'
deviation/heartbeat rule and observations whose median is the reference price.
"""

from __future__ import annotations

import pytest
from eth_keys.datatypes import Signature
from eth_utils.crypto import keccak

from keeper.devnet.oracles.keys import FAULTY, ORACLE_COUNT, devnet_oracles
from keeper.devnet.oracles.network import FeedPolicy, observe
from keeper.devnet.oracles.report import Observation, build_report, sign_report, signing_hash
from keeper.oracles.transmit import (
    TRANSMIT_SELECTOR,
    NotATransmit,
    decode_report,
    decode_transmit,
    encode_report,
    report_context,
    transmit_median,
)


def word(value: int) -> bytes:
    """One ABI word, two's complement for negatives (int192 sign-extends to 256 bits)."""
    return (value % 2**256).to_bytes(32, "big")


# observationsTimestamp 5, observers (2, 0, 1), observations (-5, 200, 300), juels 7, by hand:
HAND_REPORT = (
    word(5)
    + bytes([2, 0, 1]).ljust(32, b"\x00")
    + word(0x80)  # offset of the int192[] after the four head words
    + word(7)
    + word(3)
    + word(-5)
    + word(200)
    + word(300)
)


def test_selector_is_ocr2_transmit() -> None:
    # OCR2Abstract.transmit(bytes32[3],bytes,bytes32[],bytes32[],bytes32): 0xb1dc65a4
    assert TRANSMIT_SELECTOR.hex() == "b1dc65a4"


def test_report_layout_word_by_word() -> None:
    assert encode_report(5, bytes([2, 0, 1]), [-5, 200, 300], 7) == HAND_REPORT
    assert decode_report(HAND_REPORT) == (5, bytes([2, 0, 1]), (-5, 200, 300), 7)


def test_report_context_holds_epoch_and_round_in_its_last_five_bytes() -> None:
    digest, extra = bytes(range(32)), bytes([0xEE]) * 32
    context = report_context(digest, 0x01020304, 5, extra)
    assert context == digest + bytes(27) + bytes([1, 2, 3, 4, 5]) + extra


def _calldata(observations: list[int], signers: int = FAULTY + 1) -> bytes:
    values = [Observation(oracle=i, value=v, timestamp=10 + i) for i, v in enumerate(observations)]
    report = build_report(values)
    oracles = devnet_oracles()[:signers]
    return sign_report(report, b"\x00\x01" + bytes(30), 9, 3, signers=oracles).calldata()


def test_median_is_the_upper_middle_of_the_sorted_observations() -> None:
    # OCR2Aggregator._report: observations[observations.length / 2]
    assert transmit_median(_calldata([400, 100, 300])) == 300
    assert transmit_median(_calldata([400, 100, 300, 200])) == 300
    assert transmit_median(_calldata([7])) == 7


def test_decoded_transmit_carries_its_context_and_sorted_observers() -> None:
    data = _calldata([400, 100, 300, 200])
    report = decode_transmit("0x" + data.hex())
    assert report.observations == (100, 200, 300, 400)
    assert report.observers == bytes([1, 3, 2, 0])
    assert report.observations_timestamp == 12  # the median of 10..13 (upper middle)
    assert (report.epoch, report.round, report.epoch_and_round) == (9, 3, (9 << 8) | 3)
    assert report.config_digest == b"\x00\x01" + bytes(30)


def test_calldata_length_is_what_ocr2base_expects() -> None:
    # OCR2Base.requireExpectedMsgDataLength: 4 + 3*32 context + 4 head words + 3 lengths
    # + the report + 32 bytes per r and per s
    data = _calldata([1, 2, 3, 4], signers=2)
    report_length = 32 * 5 + 32 * 4
    assert len(data) == 4 + 96 + 128 + 96 + report_length + 2 * 32 * 2


def test_signatures_recover_to_the_signers_with_v_in_raw_vs() -> None:
    oracles = devnet_oracles()
    report = build_report([Observation(0, 5, 1), Observation(1, 6, 1)])
    signed = sign_report(report, bytes(32), 1, 1, signers=oracles[1:3])
    digest = signing_hash(report, signed.context)
    assert digest == keccak(keccak(report) + signed.context)
    data = signed.calldata()
    raw_vs = data[4 + 96 + 96 : 4 + 96 + 128]  # the fifth argument, after three offsets
    for i, (r, s, v) in enumerate(signed.signatures):
        assert raw_vs[i] == v
        sig = Signature(vrs=(v, int.from_bytes(r, "big"), int.from_bytes(s, "big")))
        recovered = sig.recover_public_key_from_msg_hash(digest).to_checksum_address()
        assert recovered == oracles[1 + i].signer


@pytest.mark.parametrize(
    "calldata",
    [
        "0x",
        "0xdeadbeef" + "00" * 64,
        "0x" + TRANSMIT_SELECTOR.hex() + "00" * 31,
        "0xnot hex",
    ],
)
def test_malformed_calldata_is_not_a_transmit(calldata: str) -> None:
    with pytest.raises(NotATransmit):
        decode_transmit(calldata)


def test_a_report_without_observations_is_refused() -> None:
    with pytest.raises(NotATransmit, match="no observations"):
        decode_report(encode_report(1, b"", [], 0))


def test_devnet_oracles_are_distinct_and_fixed() -> None:
    oracles = devnet_oracles()
    addresses = {a for o in oracles for a in (o.signer, o.transmitter)}
    assert len(oracles) == ORACLE_COUNT and len(addresses) == 2 * ORACLE_COUNT
    assert ORACLE_COUNT > 3 * FAULTY  # OCR2Base's "faulty-oracle f too high"
    assert oracles[0].signer_key == keccak(text="keeper devnet oracle signer 0")


@pytest.mark.parametrize("count", [4, 5, 7])
def test_observations_have_the_reference_price_as_median(count: int) -> None:
    oracles = devnet_oracles(count)
    values = sorted(o.value for o in observe(3_000_00000000, oracles, 1))
    assert values[count // 2] == 3_000_00000000
    assert values[0] < values[-1]  # the oracles do not all agree


@pytest.mark.parametrize(
    ("last", "since", "value", "due"),
    [
        (None, None, 1, True),  # never transmitted
        (10_000, 10.0, 10_049, False),  # 0.49 % within the hour
        (10_000, 10.0, 10_050, True),  # 0.50 %: the threshold itself
        (10_000, 10.0, 9_950, True),  # downwards too
        (10_000, 3599.0, 10_000, False),
        (10_000, 3600.0, 10_000, True),  # heartbeat
    ],
)
def test_deviation_or_heartbeat(
    last: int | None, since: float | None, value: int, due: bool
) -> None:
    policy = FeedPolicy(deviation_bps=50, heartbeat=3600.0)
    now = 1_000_000.0
    last_time = None if since is None else now - since
    assert policy.due(last, last_time, value, now) is due

"""Pending answers from oracle transactions: a `transmit` to a watched feed decodes to its
median; anything else (another contract, another function, broken calldata, a hint that
shares no calldata) is not an answer."""

from __future__ import annotations

from keeper.devnet.oracles.keys import devnet_oracles
from keeper.devnet.oracles.network import observe
from keeper.devnet.oracles.report import build_report, sign_report
from keeper.intake.answers import from_hint, from_transaction

FEED = "0x51c65cd0cdb1a8a8b79dfc2ee965b1ba0bb8fc89"
ORACLES = devnet_oracles()
PRICE = 1_777_00000000


def _calldata(price: int = PRICE) -> str:
    report = build_report(observe(price, ORACLES, 1_700_000_000))
    signed = sign_report(report, bytes(32), 3, 1, signers=ORACLES[:2])
    return "0x" + signed.calldata().hex()


def test_a_pending_transmit_to_a_feed_is_its_median() -> None:
    tx = {"to": FEED.upper().replace("0X", "0x"), "input": _calldata(), "hash": "0xAB"}
    answer = from_transaction([FEED], tx, seen=5.0)
    assert answer is not None
    assert (answer.feed, answer.answer, answer.tx_hash, answer.origin, answer.seen) == (
        FEED, PRICE, "0xab", "pool", 5.0)


def test_other_transactions_are_not_answers() -> None:
    data = _calldata()
    assert from_transaction([FEED], {"to": "0x" + "11" * 20, "input": data, "hash": "0x1"}) is None
    assert from_transaction([FEED], {"to": FEED, "input": "0xa9059cbb" + data[10:],
                                     "hash": "0x1"}) is None
    assert from_transaction([FEED], {"to": FEED, "input": data[:200], "hash": "0x1"}) is None
    assert from_transaction([FEED], {"to": None, "input": data, "hash": "0x1"}) is None


def test_a_hint_with_calldata_names_its_hash() -> None:
    event = {"hash": "0xFEED", "logs": None,
             "txs": [{"to": FEED, "functionSelector": "0xb1dc65a4", "callData": _calldata()}]}
    answer = from_hint([FEED], event)
    assert answer is not None and (answer.answer, answer.tx_hash, answer.origin) == (
        PRICE, "0xfeed", "hint")
    assert from_hint([FEED], {"hash": "0x1", "txs": [{"to": FEED}]}) is None  # no calldata
    assert from_hint([FEED], {"hash": "0x1", "txs": None}) is None

"""A feed's next answer from its oracle transaction before it is mined.

A Chainlink OCR2 feed is updated by `transmit` sent to its aggregator (the contract that
then emits `AnswerUpdated`); the new answer is the report's median
(keeper.oracles.transmit). A pending transaction carries its `to` and `input`; a hint of
MEV-Share carries `to` and `callData` per transaction when the sender shares them (an SVR
update does: a backrunner must price it). Either becomes a `PendingAnswer` when `to` is a
feed the keeper prepares for.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from keeper.oracles.transmit import TRANSMIT_SELECTOR, NotATransmit, transmit_median

_SELECTOR = "0x" + TRANSMIT_SELECTOR.hex()
Origin = Literal["pool", "hint"]


@dataclass(frozen=True)
class PendingAnswer:
    """`feed`'s next answer, carried by the not yet mined transaction `tx_hash`."""

    feed: str  # the aggregator (lower case): the address that will emit AnswerUpdated
    answer: int
    tx_hash: str
    origin: Origin
    seen: float  # time.time() when the source read it (latency figures start here)


def from_call(
    feeds: Collection[str], to: object, data: object, tx_hash: object, origin: Origin,
    *, seen: float | None = None,
) -> PendingAnswer | None:
    """The answer of a `transmit` call to one of `feeds` (lower case), else None."""
    if not isinstance(to, str) or not isinstance(data, str) or not isinstance(tx_hash, str):
        return None
    feed = to.lower()
    if feed not in feeds or not data.startswith(_SELECTOR):
        return None
    try:
        answer = transmit_median(data)
    except NotATransmit:
        return None
    return PendingAnswer(feed, answer, tx_hash.lower(), origin,
                         time.time() if seen is None else seen)


def from_transaction(
    feeds: Collection[str], tx: Mapping[str, Any], seen: float | None = None,
) -> PendingAnswer | None:
    """A pending transaction as a node returns it (`input`, or `data`)."""
    data = tx.get("input", tx.get("data"))
    return from_call(feeds, tx.get("to"), data, tx.get("hash"), "pool", seen=seen)


def from_hint(
    feeds: Collection[str], event: Mapping[str, Any], seen: float | None = None,
) -> PendingAnswer | None:
    """A MEV-Share hint event: the first of its transactions that is a transmit to a feed.
    The backrun names the event's `hash` (the private transaction, or its bundle)."""
    for tx in event.get("txs") or ():
        if isinstance(tx, Mapping):
            found = from_call(feeds, tx.get("to"), tx.get("callData"), event.get("hash"),
                              "hint", seen=seen)
            if found is not None:
                return found
    return None

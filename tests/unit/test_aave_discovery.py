"""`discovery.users_in` (users read off topics) equals decoding every log with `events.decode`.

Hand-made logs cover what the devnet's history may not: a LiquidationCall that pays the
liquidator in aTokens (its liquidator is in the data, so it takes the decoding path), a
BalanceTransfer, duplicates across logs, unknown events, and a topic whose address padding
is not zero (the fast path must defer to `events.decode`, which rejects it as before).
"""

from __future__ import annotations

import pytest
from eth_abi.abi import encode

from keeper.types import Event
from strategies.aave_v3 import discovery
from strategies.aave_v3 import events as ev
from strategies.aave_v3.strategy import _users_of as users_of

ALICE, BOB, CAROL = ("0x" + c * 40 for c in "abc")
RESERVE = "0x" + "11" * 20


def word(address: str) -> str:
    return "0x" + "00" * 12 + address.removeprefix("0x")


def log(topics: list[str], data: bytes = b"", index: int = 0) -> Event:
    return Event(address="0x" + "22" * 20, topics=tuple(topics), data="0x" + data.hex(),
                 block_number=1, block_hash="0x" + "00" * 32, transaction_hash="0x" + "33" * 32,
                 transaction_index=0, log_index=index)


def decoded(logs: list[Event]) -> list[str]:
    return list(dict.fromkeys(u for e in logs for u in users_of(ev.decode(e))))


def test_every_kind_of_log() -> None:
    logs = [
        log([ev.TOPIC_SUPPLY, word(RESERVE), word(ALICE), word("0x" + "00" * 20)],
            encode(["address", "uint256"], [BOB, 5])),
        log([ev.TOPIC_BORROW, word(RESERVE), word(BOB), word("0x" + "00" * 20)],
            encode(["address", "uint256", "uint8", "uint256"], [ALICE, 1, 2, 3])),
        log([ev.TOPIC_LIQUIDATION_CALL, word(RESERVE), word(RESERVE), word(ALICE)],
            encode(["uint256", "uint256", "address", "bool"], [1, 2, CAROL, True])),
        log([ev.TOPIC_WITHDRAW, word(RESERVE), word(CAROL), word(ALICE)],
            encode(["uint256"], [1])),
        log([ev.TOPIC_REPAY, word(RESERVE), word(ALICE), word(BOB)],
            encode(["uint256", "bool"], [1, False])),
        log([ev.TOPIC_COLLATERAL_ENABLED, word(RESERVE), word(BOB)]),
        log([ev.TOPIC_COLLATERAL_DISABLED, word(RESERVE), word(CAROL)]),
        log([ev.TOPIC_USER_EMODE_SET, word(CAROL)], encode(["uint8"], [1])),
        log([ev.TOPIC_BALANCE_TRANSFER, word(ALICE), word(CAROL)],
            encode(["uint256", "uint256"], [1, 2])),
        log([ev.TOPIC_ANSWER_UPDATED, "0x" + "00" * 31 + "01", "0x" + "00" * 31 + "02"],
            encode(["uint256"], [3])),
    ]
    assert discovery.users_in(logs, users_of) == decoded(logs) == [ALICE, BOB, CAROL]


def test_dirty_padding_is_decoded_and_rejected_as_before() -> None:
    dirty = "0x" + "ff" * 12 + ALICE.removeprefix("0x")
    bad = log([ev.TOPIC_COLLATERAL_ENABLED, word(RESERVE), dirty])
    with pytest.raises(ev.EventDecodeError):
        discovery.users_in([bad], users_of)
    with pytest.raises(ev.EventDecodeError):
        decoded([bad])

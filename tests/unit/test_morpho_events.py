"""Decoders of strategies/morpho_blue/events.py on hand-built logs, and the book they feed."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode

from keeper.types import BlockRef, Event
from strategies.morpho_blue import events as ev
from strategies.morpho_blue.book import BookError, MorphoBook
from strategies.morpho_blue.market import FeedOracleModel, IrmModel, OracleModel, Snapshot
from strategies.morpho_blue.math import MarketParams, MarketState, PositionState

A, B, C, D, E = ("0x" + c * 40 for c in "abcde")
ID = "0x" + "12" * 32
MORPHO = "0x" + "99" * 20
PARAMS = MarketParams(A, B, C, D, 86 * 10**16)
PARAMS_TYPE = "(address,address,address,address,uint256)"


def _log(
    topic0: str, indexed: list[tuple[str, object]], data: list[tuple[str, object]],
    *, address: str = MORPHO, index: int = 0, block: int = 1,
) -> Event:
    topics = (topic0, *("0x" + encode([t], [v]).hex() for t, v in indexed))
    payload = "0x" + encode([t for t, _ in data], [v for _, v in data]).hex()
    return Event(address, topics, payload, block, "0x" + "00" * 32, "0x" + "22" * 32, 0, index)


_ID = ("bytes32", bytes.fromhex(ID[2:]))


def test_topics_are_distinct_keccaks_of_the_eventslib_signatures() -> None:
    assert ev.TOPIC_ANSWER_UPDATED == (
        "0x0559884fd3a460db3073b7fc896cc77986f16e378210ded43186175bf646fc5f"
    )
    assert ev.topic(ev.SUPPLY_SIG) == ev.TOPIC_SUPPLY
    assert len(set(ev.MORPHO_TOPICS)) == len(ev.MORPHO_TOPICS) == 10


def test_every_morpho_event_decodes() -> None:
    params = (A, B, C, D, 86 * 10**16)
    assert ev.decode(_log(ev.TOPIC_CREATE_MARKET, [_ID], [(PARAMS_TYPE, params)])) == (
        ev.CreateMarket(ID, PARAMS)
    )
    assert ev.decode(_log(ev.TOPIC_SET_FEE, [_ID], [("uint256", 5)])) == ev.SetFee(ID, 5)
    assert ev.decode(_log(ev.TOPIC_SUPPLY, [_ID, ("address", A), ("address", B)],
                          [("uint256", 1), ("uint256", 2)])) == ev.Supply(ID, A, B, 1, 2)
    assert ev.decode(_log(ev.TOPIC_WITHDRAW, [_ID, ("address", B), ("address", C)],
                          [("address", A), ("uint256", 3), ("uint256", 4)])) == (
        ev.Withdraw(ID, A, B, C, 3, 4)
    )
    assert ev.decode(_log(ev.TOPIC_BORROW, [_ID, ("address", B), ("address", C)],
                          [("address", A), ("uint256", 5), ("uint256", 6)])) == (
        ev.Borrow(ID, A, B, C, 5, 6)
    )
    assert ev.decode(_log(ev.TOPIC_REPAY, [_ID, ("address", A), ("address", B)],
                          [("uint256", 7), ("uint256", 8)])) == ev.Repay(ID, A, B, 7, 8)
    assert ev.decode(_log(ev.TOPIC_SUPPLY_COLLATERAL, [_ID, ("address", A), ("address", B)],
                          [("uint256", 9)])) == ev.SupplyCollateral(ID, A, B, 9)
    assert ev.decode(_log(ev.TOPIC_WITHDRAW_COLLATERAL, [_ID, ("address", B), ("address", C)],
                          [("address", A), ("uint256", 10)])) == (
        ev.WithdrawCollateral(ID, A, B, C, 10)
    )
    assert ev.decode(_log(ev.TOPIC_LIQUIDATE, [_ID, ("address", A), ("address", B)],
                          [("uint256", i) for i in range(1, 6)])) == (
        ev.Liquidate(ID, A, B, 1, 2, 3, 4, 5)
    )
    assert ev.decode(_log(ev.TOPIC_ACCRUE_INTEREST, [_ID],
                          [("uint256", 11), ("uint256", 12), ("uint256", 13)])) == (
        ev.AccrueInterest(ID, 11, 12, 13)
    )
    assert ev.decode(_log(ev.TOPIC_ANSWER_UPDATED, [("int256", -5), ("uint256", 2)],
                          [("uint256", 3)])) == ev.AnswerUpdated(-5, 2, 3)


def test_unknown_topics_and_malformed_logs() -> None:
    assert ev.decode(_log(ev.topic("FlashLoan(address,address,uint256)"),
                          [("address", A), ("address", B)], [("uint256", 1)])) is None
    with pytest.raises(ev.EventDecodeError, match="topics"):
        ev.decode(_log(ev.TOPIC_SET_FEE, [], [("uint256", 5)]))
    with pytest.raises(ev.EventDecodeError):
        ev.decode(Event(MORPHO, (ev.TOPIC_SET_FEE, "0x" + "00" * 32), "0x01", 1, "0x", "0x", 0, 0))


FEED_C, FEED_L = ("0x" + c * 40 for c in "fa")


def _book() -> MorphoBook:
    snapshot = Snapshot(
        block=0, params={ID: PARAMS},
        markets={ID: MarketState(1000, 10**9, 500, 5 * 10**8, 10, 0)},
        positions={ID: {E: PositionState(0, 4 * 10**8, 100)}},
        oracles={C: OracleModel(C, FeedOracleModel(FEED_C, FEED_L, 10**24))},
        irms={D: IrmModel(D, "irm_mock")},
        answers={FEED_C: 2000 * 10**8, FEED_L: 10**8}, prices={C: 2000 * 10**24}, rates={},
    )
    return MorphoBook(MORPHO, snapshot)


def test_the_book_mirrors_each_storage_write() -> None:
    book = _book()
    block = BlockRef(1, "0x1", "0x0", 500)
    logs = [
        _log(ev.TOPIC_ACCRUE_INTEREST, [_ID], [("uint256", 1), ("uint256", 7), ("uint256", 3)]),
        _log(ev.TOPIC_SUPPLY, [_ID, ("address", A), ("address", A)],
             [("uint256", 100), ("uint256", 10**8)], index=1),
        _log(ev.TOPIC_BORROW, [_ID, ("address", E), ("address", E)],
             [("address", E), ("uint256", 50), ("uint256", 5 * 10**7)], index=2),
        _log(ev.TOPIC_REPAY, [_ID, ("address", A), ("address", E)],
             [("uint256", 20), ("uint256", 2 * 10**7)], index=3),
        _log(ev.TOPIC_SUPPLY_COLLATERAL, [_ID, ("address", E), ("address", E)],
             [("uint256", 11)], index=4),
        _log(ev.TOPIC_WITHDRAW_COLLATERAL, [_ID, ("address", E), ("address", E)],
             [("address", E), ("uint256", 1)], index=5),
        _log(ev.TOPIC_ANSWER_UPDATED, [("int256", 1500 * 10**8), ("uint256", 2)],
             [("uint256", 500)], address=FEED_C, index=6),
        _log(ev.TOPIC_SET_FEE, [_ID], [("uint256", 10**17)], index=7),
    ]
    book.apply(list(reversed(logs)), block)  # applied by log index, whatever the order
    assert book.markets[ID] == MarketState(
        1000 + 7 + 100, 10**9 + 3 + 10**8, 500 + 7 + 50 - 20, 5 * 10**8 + 5 * 10**7 - 2 * 10**7,
        500, 10**17,
    )
    assert book.position(ID, E) == PositionState(0, 4 * 10**8 + 3 * 10**7, 110)
    assert book.mirrored_price(ID) == 1500 * 10**24
    assert book.drain_touched() == {(ID, E)} and book.drain_touched() == set()


def test_the_book_liquidate_with_and_without_bad_debt() -> None:
    book = _book()
    block = BlockRef(1, "0x1", "0x0", 500)
    book.apply([_log(ev.TOPIC_LIQUIDATE, [_ID, ("address", A), ("address", E)],
                     [("uint256", 100), ("uint256", 10**8), ("uint256", 40), ("uint256", 0),
                      ("uint256", 0)])], block)
    assert book.position(ID, E) == PositionState(0, 3 * 10**8, 60)
    assert book.markets[ID] == MarketState(1000, 10**9, 400, 4 * 10**8, 500, 0)
    # Seizing the last 60 units: the remaining 2e8 shares (worth 200) are bad debt.
    book.apply([_log(ev.TOPIC_LIQUIDATE, [_ID, ("address", A), ("address", E)],
                     [("uint256", 100), ("uint256", 10**8), ("uint256", 60), ("uint256", 200),
                      ("uint256", 2 * 10**8)], block=2)], BlockRef(2, "0x2", "0x1", 600))
    assert book.position(ID, E) == PositionState(0, 0, 0)
    assert book.markets[ID] == MarketState(800, 10**9, 100, 10**8, 600, 0)


def test_the_book_refuses_removed_or_misplaced_logs_and_adds_new_markets() -> None:
    book = _book()
    with pytest.raises(BookError):
        book.apply([_log(ev.TOPIC_SET_FEE, [_ID], [("uint256", 1)], block=2)],
                   BlockRef(1, "0x1", "0x0", 500))
    other = "0x" + "34" * 32
    new = MarketParams(A, B, "0x" + "77" * 20, D, 9 * 10**17)
    book.apply([_log(ev.TOPIC_CREATE_MARKET, [("bytes32", bytes.fromhex(other[2:]))],
                     [(PARAMS_TYPE, (A, B, "0x" + "77" * 20, D, 9 * 10**17))])],
               BlockRef(1, "0x1", "0x0", 700))
    assert book.params[other] == new and book.markets[other] == MarketState(last_update=700)
    assert book.mirrored_price(other) is None  # an oracle never classified: read only
    book.allow = {ID}
    third = "0x" + "56" * 32
    book.apply([_log(ev.TOPIC_CREATE_MARKET, [("bytes32", bytes.fromhex(third[2:]))],
                     [(PARAMS_TYPE, (A, B, C, D, 1))], block=2)], BlockRef(2, "0x2", "0x1", 800))
    assert third not in book.markets  # outside the allow-list

"""Which prepared level a feed's answer sends (keeper/prepared.py), without a chain.

The levels are built by hand; the dispatcher is a recorder of what it was handed (the
integration test, tests/integration/test_prepared.py, runs the real one on the devnet).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from keeper.engine import Engine
from keeper.prepared import (
    TOPIC_ANSWER_UPDATED,
    FeedRule,
    Level,
    PreparedLiquidations,
    _by_side,
    level_quarters,
)
from keeper.types import BlockRef, ChainStep, Event, Opportunity

FEED = "0x" + "ab" * 20


class Recorder:
    """Stands in for the dispatcher: keeps what `dispatch` was handed."""

    def __init__(self) -> None:
        self.sent: list[tuple[Opportunity, ...]] = []
        self.armed: list[object] = []  # the `armed` each dispatch was handed
        self.rises: list[int] = []  # the blocks `price_rose` was told
        self.gate = None  # no [ha]: this keeper sends

    def price_rose(self, block: int) -> None:
        self.rises.append(block)

    def touched_after(self, strategy: str, account: str, block: int) -> bool:
        return account == "ours" and block < 12

    def dispatch(self, opportunities: Sequence[Opportunity], tasks: object, *,
                 armed: object = None) -> int:
        self.sent.append(tuple(opportunities))
        self.armed.append(armed)
        return len(opportunities)


class Books:
    """Stands in for a `Foreseeing` strategy: the answer its books hold for FEED."""

    answer = 100

    def feed_answers(self) -> dict[str, int]:
        return {FEED.upper().replace("0X", "0x"): self.answer}


@dataclass
class Capabilities:
    foreseeing: tuple[Books, ...] = (Books(),)


class EngineStub:
    def __init__(self) -> None:
        self.dispatcher = Recorder()
        self.capabilities = Capabilities()
        self.next_base_fee = 7  # the next block's base fee a preparation signs for


def _head(number: int) -> BlockRef:
    return BlockRef(number=number, hash="0x" + "11" * 32, parent_hash="0x" + "00" * 32,
                    timestamp=1_700_000_000 + number)


def _lane(levels: list[Level], at: BlockRef) -> tuple[PreparedLiquidations, Recorder]:
    engine = EngineStub()
    lane = PreparedLiquidations(cast(Engine, engine), {FEED: FeedRule(100)})
    lane.tasks = cast(asyncio.TaskGroup, object())
    lane._ready = {FEED: levels}
    lane._at = at
    return lane, engine.dispatcher


@dataclass(frozen=True)
class Ready:
    """Stands in for a ranked `Opportunity`: what `fire` reads and re-stamps."""

    key: str
    block: int = 10
    strategy: str = "aave_v3"
    account: str = "0xabc"


def _opps(n: int, block: int = 10) -> tuple[Opportunity, ...]:
    return tuple(cast(Opportunity, Ready(f"{n}:{i}", block)) for i in range(n))


def _log(answer: int, block: int, **extra: Any) -> dict[str, Any]:
    return {"address": FEED, "blockNumber": hex(block), "removed": False,
            "topics": [TOPIC_ANSWER_UPDATED, "0x" + answer.to_bytes(32, "big").hex()], **extra}


def test_the_deepest_level_the_answer_reaches_is_sent_once() -> None:
    down = [Level(FEED, 99, -1, _opps(1)), Level(FEED, 98, -1, _opps(2)),
            Level(FEED, 97, -1, _opps(3))]
    lane, sent = _lane([*down, Level(FEED, 101, 1, _opps(4))], _head(10))
    assert lane.heard(_log(97, 11)) == 3  # reaches 99, 98 and 97: the deepest is sent
    assert sent.sent == [_opps(3, block=11)]  # simulated at the block that posted it
    assert lane.heard(_log(90, 12)) == 0  # used once: the next step prepares again


def test_a_fall_between_levels_sends_the_one_above_it_and_a_rise_the_up_side() -> None:
    lane, sent = _lane([Level(FEED, 99, -1, _opps(1)), Level(FEED, 97, -1, _opps(3))],
                       _head(10))
    assert lane.heard(_log(98, 11)) == 1
    assert sent.sent == [_opps(1, block=11)]
    lane, sent = _lane([Level(FEED, 99, -1, _opps(1)), Level(FEED, 101, 1, _opps(4))],
                       _head(10))
    assert lane.heard(_log(102, 11)) == 4
    assert sent.sent == [_opps(4, block=11)]


def test_a_small_move_an_old_block_or_a_removed_log_sends_nothing() -> None:
    lane, sent = _lane([Level(FEED, 99, -1, _opps(1))], _head(10))
    assert lane.heard(_log(100, 11)) == 0  # above every level
    assert lane.heard(_log(90, 10)) == 0  # the block the levels were prepared at
    assert lane.heard(_log(90, 11, removed=True)) == 0  # reorged out
    assert sent.sent == []
    assert lane.heard(_log(90, 11)) == 1


def test_answers_are_ordered_from_the_nearest() -> None:
    wanted: dict[tuple[str, int, int], list[object]] = {
        (FEED, -1, 97): [], (FEED, -1, 99): [], (FEED, 1, 103): [], (FEED, 1, 101): []}
    assert _by_side(wanted) == {(FEED, -1): [99, 97], (FEED, 1): [101, 103]}


class Asked(Books):
    """A `Foreseeing` strategy that records the answers a preparation asks about."""

    answer = 1_000_000

    def __init__(self) -> None:
        self.asked: list[int] = []

    def candidates_if(self, head: BlockRef, feed: str, answers: list[int]) -> list[list[object]]:
        self.asked += answers
        return [[] for _ in answers]


def test_levels_are_a_quarter_threshold_apart_up_to_two_thresholds() -> None:
    assert level_quarters(8) == [4, 5, 6, 7, 8, 12, 16, 20, 24, 28, 32]
    assert level_quarters(1) == [4] and level_quarters(0) == []
    books = Asked()
    engine = EngineStub()
    engine.capabilities = Capabilities(foreseeing=(books,))
    lane = PreparedLiquidations(cast(Engine, engine), {FEED: FeedRule(100)}, levels=3,
                                presign=0)
    asyncio.run(lane.prepare(_head(10)))
    # A 1 % threshold: 1, 1.25, 1.5, 1.75, 2 and 3 % down, then the same up.
    assert books.asked == [990_000, 987_500, 985_000, 982_500, 980_000, 970_000,
                           1_010_000, 1_012_500, 1_015_000, 1_017_500, 1_020_000, 1_030_000]


def test_a_step_with_logs_applied_while_no_preparation_ran_is_valued_anew() -> None:
    """Levels are kept over a step without logs, but not once a step with logs was applied
    since they were prepared (its own preparation skipped: sends were in flight)."""
    books = Asked()
    engine = EngineStub()
    engine.capabilities = Capabilities(foreseeing=(books,))
    lane = PreparedLiquidations(cast(Engine, engine), {FEED: FeedRule(100)}, levels=1,
                                presign=0)
    asyncio.run(lane.prepare(_head(10)))
    asked = len(books.asked)
    asyncio.run(lane.prepare(_head(11), changed=False))  # nothing happened: kept
    assert len(books.asked) == asked
    event = Event(address="0x" + "ee" * 20, topics=("0x" + "11" * 32,), data="0x",
                  block_number=12, block_hash="0x" + "22" * 32,
                  transaction_hash="0x" + "33" * 32, transaction_index=0, log_index=0)
    lane.applied(ChainStep(_head(12), ((_head(12), (event,)),)))  # not prepared after it
    asyncio.run(lane.prepare(_head(13), changed=False))
    assert len(books.asked) == 2 * asked
    asyncio.run(lane.prepare(_head(14), changed=False))  # prepared since: kept again
    assert len(books.asked) == 2 * asked


def test_an_account_our_own_liquidation_touched_since_is_not_sent_again() -> None:
    ours = cast(Opportunity, Ready("ours", 10, account="ours"))
    lane, sent = _lane([Level(FEED, 99, -1, (ours, *_opps(1)))], _head(10))
    assert lane.heard(_log(98, 13)) == 1
    assert [o.key for o in sent.sent[0]] == ["1:0"]


def test_an_account_a_later_step_logged_is_not_sent_from_an_older_level() -> None:
    rival_hit = "0x" + "cd" * 20
    level = (cast(Opportunity, Ready("hit", 10, account=rival_hit)), *_opps(1))
    lane, sent = _lane([Level(FEED, 99, -1, level)], _head(10))
    word = "0x" + "00" * 12 + rival_hit.removeprefix("0x")
    event = Event(address="0x" + "ee" * 20, topics=("0x" + "11" * 32, word), data="0x",
                  block_number=11, block_hash="0x" + "22" * 32,
                  transaction_hash="0x" + "33" * 32, transaction_index=0, log_index=0)
    head = _head(11)
    lane.applied(ChainStep(head, ((head, (event,)),)))
    assert lane.heard(_log(98, 12)) == 1
    assert [o.key for o in sent.sent[0]] == ["1:0"]


def test_a_higher_answer_than_the_books_hold_is_told_to_the_dispatcher() -> None:
    """A feed's answer above the one heard last (at first, what the books hold; its log is
    heard before its block's step): the dispatcher hears the block of the rise; a lower or
    equal answer, or one of an older block, is not told."""
    lane, sent = _lane([], _head(10))
    lane.heard(_log(99, 11))  # below the books' 100: a fall
    assert sent.rises == []
    lane.heard(_log(99, 11))  # the same log again (the socket, then the step): nothing new
    lane.heard(_log(100, 12))  # above the answer heard last, not yet in the books: a rise
    assert sent.rises == [12]
    lane.heard(_log(100, 13))
    lane.heard(_log(101, 12))  # older than the last heard: ignored
    assert sent.rises == [12]
    lane.heard(_log(102, 14))
    assert sent.rises == [12, 14]

"""The stages a feed log passes through, and a long run's memory, with the real engine core,
ranking and dispatcher.

Only the edges are scripted: a `BlockSource` that hands over prepared `ChainStep`s (the
chain follower's value), a strategy that liquidates one account whenever its price feed
falls below a threshold, and an executor that records what it would sign. Everything in
between is the product's code, wired by `keeper.wiring.assemble`'s parts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

import keeper.engine as engine_module
from keeper.dex.uniswap_v2 import Pair, PairBook
from keeper.engine import Engine
from keeper.execution.dispatch import Dispatcher, LivePositions
from keeper.execution.executor import Executor
from keeper.execution.intents import IntentBuilder
from keeper.execution.outcomes import OutcomeLog
from keeper.loop import drive
from keeper.ranking import rank
from keeper.strategy import ChainReader
from keeper.types import (
    BlockRef,
    Call,
    Candidate,
    ChainStep,
    Event,
    LogFilter,
    Opportunity,
    Outcome,
    TxIntent,
)

FEED = "0x" + "fe" * 20
ANSWER_UPDATED = "0x" + "a1" * 32
COLLATERAL, DEBT, QUOTE = "0x" + "c0" * 20, "0x" + "d0" * 20, "0x" + "e0" * 20
E18 = 10**18
THRESHOLD = 1_000


def _block(number: int) -> BlockRef:
    return BlockRef(number, f"0x{number:064x}", f"0x{number - 1:064x}", 1_700_000_000 + number,
                    base_fee=10**9, gas_used=15_000_000, gas_limit=30_000_000)


def _feed_log(number: int, price: int) -> Event:
    return Event(FEED, (ANSWER_UPDATED,), f"0x{price:064x}", number, f"0x{number:064x}",
                 f"0x{number:064x}", 0, 0)


class FeedStrategy:
    """One account, liquidatable while the feed's price is under `THRESHOLD`."""

    name = "feed"

    def __init__(self, record: list[str]) -> None:
        self.record = record
        self.price = 2 * THRESHOLD
        self.round = 0

    def subscriptions(self) -> Sequence[LogFilter]:
        return [LogFilter((FEED,), (ANSWER_UPDATED,), urgent=True)]

    async def sync(self, chain: ChainReader, at: BlockRef) -> None:
        return None

    def apply(self, events: Sequence[Event], block: BlockRef) -> None:
        self.record.append("strategies")
        for event in events:
            self.price = int(event.data, 16)
            self.round += 1

    def candidates(self, block: BlockRef) -> Iterable[Candidate]:
        if self.price >= THRESHOLD:
            return []
        # A new key per price round: each round is a new opportunity (as the keys of the
        # real strategies carry the oracle state).
        return [Candidate(
            strategy=self.name, account="0x" + "ab" * 20, collateral=COLLATERAL, debt=DEBT,
            max_repay=10 * E18, health_factor=9 * E18 // 10, key=f"feed:{self.round}",
            seize=lambda repay: repay * 11 // 10, gas_limit=300_000, spender=DEBT)]

    def build(self, candidate: Candidate, repay: int) -> Call:
        return Call(to=DEBT, data=f"0x{repay:064x}")


class RecordingExecutor:
    """What the dispatcher needs of an executor; `execute` (what `launch` returns for each
    intent) records the signing."""

    native_balance = 10 * E18

    def __init__(self, record: list[str]) -> None:
        self.record = record
        self.chain = None
        self.signed = 0

    async def available(self, tokens: Sequence[str], block: int | None = None) -> dict[str, int]:
        return dict.fromkeys(tokens, 1_000 * E18)

    async def execute(self, intent: TxIntent, base_fee: int) -> Outcome:
        self.record.append("execution")
        self.signed += 1
        return Outcome(intent.opportunity.key, "confirmed", tx_hash=f"0x{self.signed:064x}",
                       block=intent.opportunity.block, gas_used=200_000,
                       realized_profit=intent.opportunity.net_profit, gas_paid=10**14)

    async def look_allowances(self, pairs: Sequence[tuple[str, str]]) -> None:
        pass

    async def launch(self, intents: Sequence[TxIntent], base_fee: int) -> list[Any]:
        return [self.execute(intent, base_fee) for intent in intents]

    def checkpoint(self) -> None:
        pass

    async def orphaned(self, head: int) -> list[Any]:
        return []

    def recovery(self) -> list[Any]:
        return []


class ScriptedSource:
    """A `BlockSource` of prepared steps; sets `stop` after the last one."""

    def __init__(self, steps: Iterator[ChainStep], record: list[str], stop: asyncio.Event):
        self.steps, self.record, self.stop = steps, record, stop
        self.done = 0

    async def latest(self) -> BlockRef:
        return _block(1)

    async def follow(self, stop: asyncio.Event, urgent: LogFilter | None) -> None:
        assert urgent is not None and FEED in urgent.addresses  # the feed is heard first
        await stop.wait()

    def processed(self, step: ChainStep) -> None:
        self.done += 1

    async def next_step(self, log_filter: LogFilter, stop: asyncio.Event) -> ChainStep | None:
        step = next(self.steps, None)
        if step is None:
            stop.set()
            return None
        self.record.append("chain")
        await asyncio.sleep(0)  # let the sends of the previous step run
        return step


def _wired(record: list[str]) -> tuple[Engine, RecordingExecutor]:
    dex = PairBook([
        Pair("0x" + "11" * 20, COLLATERAL, DEBT, 10**9 * E18, 10**9 * E18),
        Pair("0x" + "22" * 20, DEBT, QUOTE, 10**9 * E18, 10**9 * E18),
    ])
    strategy = FeedStrategy(record)
    executor = RecordingExecutor(record)
    intents = IntentBuilder([strategy], {}, dex, quote_token=QUOTE, min_profit=0)
    dispatcher = Dispatcher(cast(Executor, executor), intents, LivePositions(),
                            outcomes=OutcomeLog())
    engine = Engine(cast(ChainReader, None), [strategy], dex, dispatcher, quote_token=QUOTE,
                    min_profit=0, priority_fee=10**9)
    return engine, executor


def _steps(prices: Iterable[int], first: int = 2) -> Iterator[ChainStep]:
    for number, price in enumerate(prices, first):
        block = _block(number)
        yield ChainStep(block, ((block, (_feed_log(number, price),)),), span=1)


async def test_a_feed_log_passes_chain_strategies_ranking_execution_once_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record: list[str] = []

    def ranking(candidates: Iterable[Candidate], **kwargs: Any) -> list[Opportunity]:
        record.append("ranking")
        return rank(candidates, **kwargs)

    monkeypatch.setattr(engine_module, "rank", ranking)
    engine, executor = _wired(record)
    stop = asyncio.Event()
    source = ScriptedSource(_steps([THRESHOLD // 2]), record, stop)
    await asyncio.wait_for(drive(engine, source, stop), 10)
    assert record == ["chain", "strategies", "ranking", "execution"]
    assert executor.signed == 1 and source.done == 2  # the cold start, then the step


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


async def test_memory_stays_flat_over_100k_steps() -> None:
    """100k steps, a liquidation every tenth: resident memory grows < 5 % from step 10k to
    step 100k (outcome history and per-key memory are bounded)."""
    record: list[str] = []
    engine, executor = _wired(record)
    marks: dict[int, int] = {}
    total, check = 100_000, (10_000, 100_000)

    def prices() -> Iterator[int]:
        for i in range(1, total + 1):
            if i in check:
                gc.collect()
                marks[i] = _rss_kib()
            record.clear()  # the scripted edges' own log: not the product's memory
            yield THRESHOLD // 2 if i % 10 == 0 else 2 * THRESHOLD

    stop = asyncio.Event()
    source = ScriptedSource(_steps(prices()), record, stop)
    await asyncio.wait_for(drive(engine, source, stop), 600)
    dispatcher = engine.dispatcher
    assert dispatcher is not None
    assert executor.signed == total // 10 == dispatcher.outcomes.recorded
    assert len(dispatcher.outcomes) <= 4_096
    assert engine.stats.blocks == total
    growth = (marks[100_000] - marks[10_000]) / marks[10_000]
    print(f"\nRSS at step 10k {marks[10_000]} KiB, at 100k {marks[100_000]} KiB "
          f"({growth:+.2%})")
    assert growth < 0.05, marks


def test_the_dispatcher_keeps_what_it_must_exactly() -> None:
    """The bounded outcome log still counts every outcome of the run exactly."""
    log = OutcomeLog(keep=3)
    for i in range(10):
        log.add(Outcome(f"k{i}", "confirmed" if i % 2 else "reverted", realized_profit=i))
    assert log.recorded == 10 and len(log) == 3
    assert log.confirmed_count == 5 and log.realized_profit == 1 + 3 + 5 + 7 + 9
    assert [o.key for o in log.since(8)] == ["k8", "k9"]
    log.replace([dataclasses.replace(log.recent[-1], status="lost", realized_profit=0)])
    assert log.confirmed_count == 4 and log.by_status["lost"] == 1


async def test_an_account_we_liquidated_waits_until_the_book_holds_that_block() -> None:
    """Our liquidation mined at block B: a book older than B does not hold it, so the
    account gets no candidate from it (that re-liquidation would revert)."""
    strategy = FeedStrategy([])
    strategy.price = THRESHOLD // 2
    engine, executor = _wired([])
    dispatcher = engine.dispatcher
    assert dispatcher is not None
    candidates = list(strategy.candidates(_block(10)))
    opportunities = rank(candidates, dex=engine.dex, quote_token=QUOTE, base_fee=10**9,
                         priority_fee=10**9, min_profit=0, block=10)
    async with asyncio.TaskGroup() as tasks:
        dispatcher.dispatch(opportunities, tasks)
    assert executor.signed == 1  # mined at block 10 (the recording executor's answer)
    assert await dispatcher.size(candidates, _block(9)) == []
    assert len(await dispatcher.size(candidates, _block(10))) == 1


async def test_an_outcome_recorded_while_ranking_still_holds_back_the_account() -> None:
    """The gate is checked again at dispatch: a ranking that started before our liquidation
    of the account was recorded as mined (after the ranked block) must not send again."""
    strategy = FeedStrategy([])
    strategy.price = THRESHOLD // 2
    engine, executor = _wired([])
    dispatcher = engine.dispatcher
    assert dispatcher is not None
    candidates = list(strategy.candidates(_block(10)))
    stale = rank(candidates, dex=engine.dex, quote_token=QUOTE, base_fee=10**9,
                 priority_fee=10**9, min_profit=0, block=9)  # ranked on an older book
    fresh = rank(candidates, dex=engine.dex, quote_token=QUOTE, base_fee=10**9,
                 priority_fee=10**9, min_profit=0, block=10)
    async with asyncio.TaskGroup() as tasks:
        dispatcher.dispatch(fresh, tasks)  # mined at block 10 (the recording executor)
    async with asyncio.TaskGroup() as tasks:
        assert dispatcher.dispatch(stale, tasks) == 0
    assert executor.signed == 1

"""The engine core: block steps in, ranked opportunities out to the dispatcher.

Protocol-agnostic (it imports nothing from strategies/) and I/O-free but for what the
strategies read. It pulls typed `ChainStep`s from a `BlockSource` (the chain follower
live, a replay in a backtest), applies each block's logs to the strategies and the DEX
book, re-syncs or refreshes the strategies that need it, asks them for candidates, has
the dispatcher size them within the capital on hand, ranks them, and hands the ranking
to the dispatcher (None: observe only). A ranking runs in waves by promise: the
`HEAD_START` most promising accounts are ranked and sent first, then twice as many, ...
keeper/loop.py drives it from a source.

A strategy that fails (in apply, refresh or candidates) is benched and re-synced at the
next head; the node failing (a `RetryableError`) makes the step be tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import functools
from collections import Counter
from collections.abc import Iterator, Sequence

import structlog

from keeper.bids import BidPolicy
from keeper.dex.venue import Venue
from keeper.errors import RetryableError
from keeper.execution.dispatch import Dispatcher
from keeper.execution.fees import next_base_fee
from keeper.monitor import Monitor
from keeper.passed_over import PassedOver
from keeper.ranking import MAX_EVALUATIONS, head_start, rank, swaps_of
from keeper.routes import UnroutedCollateral
from keeper.strategy import Capabilities, ChainReader, Named, Strategy
from keeper.types import BlockRef, Candidate, ChainStep, Event, LogFilter, Opportunity, SwapLeg

log = structlog.get_logger(__name__)

HEAD_START = 4  # accounts in a ranking's first wave (each next wave has twice as many)
RANK_IN_THREAD = 16  # more candidates than this are ranked off the event loop


@dataclasses.dataclass
class EngineStats:
    """What the engine did so far (the demo's live view and the reports read it)."""

    head: int = 0  # the last head applied
    processed: int = 0  # the last head whose opportunities were all handed to dispatch
    blocks: int = 0
    candidates: int = 0
    opportunities: int = 0
    reorgs: int = 0
    last_opportunities: list[Opportunity] = dataclasses.field(default_factory=list)


class Engine:
    """Drives strategies from block steps; sends through `dispatcher` (None: observe only)."""

    def __init__(
        self, chain: ChainReader, strategies: Sequence[Strategy], dex: Venue,
        dispatcher: Dispatcher | None, *, quote_token: str, min_profit: int,
        priority_fee: int, monitor: Monitor | None = None, bids: BidPolicy | None = None,
    ) -> None:
        self.chain = chain
        self.strategies = list(strategies)
        self.capabilities = Capabilities.of(self.strategies)
        self.dex = dex
        self.dispatcher = dispatcher
        self.quote_token = quote_token.lower()
        self.min_profit = min_profit
        self.priority_fee = priority_fee
        self.monitor = monitor
        self.bids = bids
        self.stats = EngineStats()
        self.last: BlockRef | None = None
        self.next_base_fee = 0
        self._broken: set[str] = set()  # strategies that failed: re-sync at the next head
        self.unrouted = UnroutedCollateral()  # a collateral no exit can sell: one warning
        self.passed_over = PassedOver()  # liquidatable, not taken: a daemon's (enabled) lines

    # -- filters -------------------------------------------------------------------------

    def log_filter(self) -> LogFilter:
        """Every strategy's subscriptions and the DEX book's, merged into one query."""
        filters = [f for s in self.strategies for f in s.subscriptions()]
        filters.append(self.dex.subscriptions())
        addresses = {a.lower() for f in filters for a in f.addresses}
        # One filter that wants every topic of its addresses (e.g. admin contracts) means the
        # merged query cannot narrow topics; strategies drop what they do not use.
        any_topic = any(not f.topics0 for f in filters)
        topics = () if any_topic else tuple(sorted({t for f in filters for t in f.topics0}))
        return LogFilter(tuple(sorted(addresses)), topics)

    def urgent_filter(self) -> LogFilter | None:
        """The strategies' urgent logs (price feeds) in one filter, if any."""
        urgent = [f for s in self.strategies for f in s.subscriptions() if f.urgent]
        if not urgent:
            return None
        addresses = sorted({a.lower() for f in urgent for a in f.addresses})
        topics = sorted({t for f in urgent for t in f.topics0})
        return LogFilter(tuple(addresses), tuple(topics), urgent=True)

    # -- state ---------------------------------------------------------------------------

    async def sync(self, head: BlockRef) -> None:
        """Cold start every strategy at `head`."""
        for strategy in self.strategies:
            await strategy.sync(self.chain, head)
            self._broken.discard(strategy.name)
        self._remember(head)
        log.info("synced", block=head.number, strategies=[s.name for s in self.strategies])

    def _remember(self, head: BlockRef) -> None:
        self.last = head
        self.stats.head = head.number
        self.next_base_fee = next_base_fee(head.base_fee, head.gas_used, head.gas_limit)

    async def apply(self, step: ChainStep) -> None:
        """Apply a step's blocks to the strategies and the DEX book, or, after a reorg,
        rebuild both from the chain at the new head (nothing of the orphaned blocks
        survives: a checkpoint-free rollback)."""
        if step.reorg_depth is not None:
            self.stats.reorgs += 1
            await self.sync(step.head)
            await self.dex.reload(self.chain, step.head)
        else:
            for block, events in step.blocks:
                if events:
                    self._apply(events, block)
            self.dex.apply(step.events)
            self._remember(step.head)
        self.stats.blocks += step.span
        if self.monitor is not None:
            self.monitor.block(step.head, step.span)
            self.monitor.events(Counter(self._kind(e) for e in step.events))

    def _apply(self, events: Sequence[Event], block: BlockRef) -> None:
        for strategy in self.strategies:
            # Routed by each strategy's own subscriptions: strategies may share an address
            # (two protocols on the same price feed), and a strategy's set may grow.
            wanted = {a.lower() for f in strategy.subscriptions() for a in f.addresses}
            mine = [e for e in events if e.address in wanted]
            if mine and strategy.name not in self._broken:
                try:
                    strategy.apply(mine, block)
                except Exception:
                    self._fail(strategy, "apply", block)

    def _kind(self, event: Event) -> str:
        """A bounded label for an event: the strategy that hears it, or "dex"."""
        for strategy in self.strategies:
            if any(event.address in f.addresses for f in strategy.subscriptions()):
                return strategy.name
        return "dex"

    def _fail(self, strategy: Named, stage: str, block: BlockRef,
              error: BaseException | None = None) -> None:
        # A strategy whose state broke (say, time going backwards after a reorg) must not
        # take the daemon down: it sits out until re-synced at the next head.
        log.error("strategy failed; re-syncing it at the next head", strategy=strategy.name,
                  stage=stage, block=block.number, exc_info=error or True)
        self._broken.add(strategy.name)

    async def _prepare(self, head: BlockRef) -> None:
        """Re-sync the strategies that cannot trust their state (benched, or `needs_resync`),
        then each refreshing strategy's batched reads of what logs cannot tell."""
        stale = {s.name for s in self.capabilities.resyncing if s.needs_resync is True}
        for strategy in self.strategies:
            if strategy.name in self._broken or strategy.name in stale:
                log.info("strategy state stale; re-syncing at the head",
                         strategy=strategy.name, block=head.number)
                await strategy.sync(self.chain, head)
                self._broken.discard(strategy.name)
        # Each strategy reads its own state: the reads go out together, not one after another.
        refreshing = [r for r in self.capabilities.refreshing if r.name not in self._broken]
        answers = await asyncio.gather(*(r.refresh(self.chain, head) for r in refreshing),
                                       return_exceptions=True)
        for refreshed, answer in zip(refreshing, answers, strict=True):
            if isinstance(answer, RetryableError | asyncio.CancelledError):
                raise answer
            if isinstance(answer, Exception):
                self._fail(refreshed, "refresh", head, answer)

    # -- evaluation ----------------------------------------------------------------------

    def _candidates(self, head: BlockRef) -> list[Candidate]:
        out: list[Candidate] = []
        for strategy in self.strategies:
            if strategy.name in self._broken:
                continue
            try:
                out.extend(strategy.candidates(head))
            except Exception:
                self._fail(strategy, "candidates", head)
        return out

    async def evaluate(
        self, head: BlockRef, tasks: asyncio.TaskGroup | None = None
    ) -> list[Opportunity]:
        """Candidates of every strategy, sized by the dispatcher, ranked. With `tasks`, the
        head start is dispatched while the rest is ranked."""
        await self._prepare(head)
        candidates = self._candidates(head)
        self.stats.candidates = len(candidates)
        self.unrouted.note(candidates, self.dex)
        pending: list[SwapLeg] = []
        if self.dispatcher is not None:
            self.dispatcher.base_fee = self.next_base_fee
            candidates = await self.dispatcher.size(candidates, head)
            pending = self.dispatcher.pending_swaps(head.number)
        rejected: dict[str, int] = {}
        opportunities = await self._rank(candidates, head, pending, tasks, rejected)
        self.passed_over.note(candidates, opportunities, rejected, head.number)
        self.stats.opportunities += len(opportunities)
        self.stats.last_opportunities = opportunities
        if self.monitor is not None:
            tracked = {s.name: len(s.accounts) for s in self.capabilities.tracking}
            self.monitor.evaluated(tracked, candidates, opportunities)
        return opportunities

    async def _rank(
        self, candidates: list[Candidate], head: BlockRef, pending: list[SwapLeg],
        tasks: asyncio.TaskGroup | None, rejected: dict[str, int] | None = None,
    ) -> list[Opportunity]:
        """`rank` them; with somewhere to send, in waves by promise (`head_start`): the
        `HEAD_START` most promising accounts, then twice as many, and so on, each wave
        ranked after the exit swaps of the ones before and dispatched before the next is
        ranked (the last is the caller's to dispatch); only the first wave's sends are
        awaited until broadcast (waiting on each wave's held the last ones back by seconds
        in a crash: a volley waits for its turn behind the ones before). A crash's best
        liquidations leave within milliseconds; sizing 200 candidates takes half a second."""
        ranking = functools.partial(
            rank, dex=self.dex, quote_token=self.quote_token, base_fee=self.next_base_fee,
            priority_fee=self.priority_fee, min_profit=self.min_profit, block=head.number,
            bids=self.bids, rejected=rejected)
        if tasks is None or self.dispatcher is None:
            return ranking(candidates, pending=pending)
        out: list[Opportunity] = []
        legs, rest, accounts = list(pending), candidates, HEAD_START
        while rest:
            wave, rest = head_start(rest, dex=self.dex, quote_token=self.quote_token,
                                    accounts=accounts)
            ranked = (await asyncio.to_thread(ranking, wave, pending=legs)
                      if len(wave) > RANK_IN_THREAD else ranking(wave, pending=legs))
            out += ranked
            if ranked and rest:
                self.dispatcher.dispatch(ranked, tasks, early=True)
                if accounts == HEAD_START:  # the first leave before anything else is ranked
                    await self.dispatcher.launched()
            legs += [s for o in ranked for s in swaps_of(o)]
            accounts *= 2
        return out

    def rank_at(
        self, candidates: Sequence[Candidate], head: BlockRef, after: Sequence[SwapLeg] = (),
        *, budget: int = MAX_EVALUATIONS,
    ) -> list[Opportunity]:
        """`rank` sized candidates at `head` as a step would, after the exit swaps still
        pending and then `after` (the prepared liquidations rank what a feed's next answer
        would open)."""
        pending = [*(self.dispatcher.pending_swaps(head.number)
                     if self.dispatcher is not None else []), *after]
        return rank(list(candidates), dex=self.dex, quote_token=self.quote_token,
                    base_fee=self.next_base_fee, priority_fee=self.priority_fee,
                    min_profit=self.min_profit, block=head.number, bids=self.bids,
                    pending=pending, budget=budget)

    # -- one step, and the loop ----------------------------------------------------------

    async def advance(
        self, step: ChainStep, tasks: asyncio.TaskGroup | None = None
    ) -> list[Opportunity]:
        """Apply `step`, rank at its head and (with `tasks`) dispatch the ranking. A trial
        step works on copies of the state, put back afterwards (a backtest's trial)."""
        with self.what_if() if step.trial else contextlib.nullcontext():
            await self.apply(step)
            if self.dispatcher is not None and not step.trial:
                await self.dispatcher.after_step(step.head)
            opportunities = await self.evaluate(step.head, tasks)
            if tasks is not None and self.dispatcher is not None:
                self.dispatcher.dispatch(opportunities, tasks)
        return opportunities

    @contextlib.contextmanager
    def what_if(self) -> Iterator[None]:
        """Steps inside work on a copy of the strategies and the DEX book; on exit the real
        state (and the last head applied) is put back."""
        saved = (self.strategies, self.dex, self.capabilities, self.last, self.next_base_fee,
                 self.stats.head)
        self.strategies, self.dex = copy.deepcopy((self.strategies, self.dex))
        self.capabilities = Capabilities.of(self.strategies)
        try:
            yield
        finally:
            (self.strategies, self.dex, self.capabilities, self.last, self.next_base_fee,
             self.stats.head) = saved

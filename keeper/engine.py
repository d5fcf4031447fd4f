"""The engine: heads and logs in, strategies and ranking in the middle, execution out.

Protocol-agnostic (it imports nothing from strategies/). For each new head it
fetches the logs of every block since the last one it processed in one
`eth_getLogs` plus one batch of headers, applies them block by block to the
strategies and the DEX book, asks the strategies for candidates, ranks them,
and hands the profitable ones to the executor as tasks owned by a TaskGroup.
The newest head wins: heads that arrive while a block is processed only
replace the target, they never queue up.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import functools
import time
from collections import Counter
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from keeper.batching import Send, group_sends, split_by_weight
from keeper.chain.failover import FailoverRpc
from keeper.chain.http import HttpRpc, RpcError
from keeper.chain.ws import WsSubscriptions, heads, logs
from keeper.dex.uniswap_v2 import PairBook
from keeper.errors import RetryableError
from keeper.execution.executor import Executor, Outcome
from keeper.execution.fees import next_base_fee
from keeper.execution.flash_route import FlashRoute, min_out
from keeper.monitor import Monitor
from keeper.ranking import head_start, rank
from keeper.strategy import Candidate, Strategy
from keeper.types import BlockRef, Call, Event, LogFilter, Opportunity, SwapLeg, TxIntent

log = structlog.get_logger(__name__)

RING_SIZE = 128  # recent processed heads kept to find a reorg's common ancestor
HEAD_START = 4  # accounts ranked and sent before the rest of a block's candidates is ranked
RANK_IN_THREAD = 16  # more candidates than this are ranked off the event loop


def block_ref(raw: Mapping[str, Any]) -> BlockRef:
    return BlockRef(
        number=int(raw["number"], 16),
        hash=raw["hash"],
        parent_hash=raw["parentHash"],
        timestamp=int(raw["timestamp"], 16),
        base_fee=int(raw.get("baseFeePerGas", "0x0"), 16),
    )


@dataclass
class EngineStats:
    """What the engine did so far (the demo's live view reads it)."""

    head: int = 0
    processed: int = 0  # the last head whose opportunities were all handed to execution
    blocks: int = 0
    candidates: int = 0
    opportunities: int = 0
    urgent_logs: int = 0
    reorgs: int = 0
    urgent_log_at: float = 0.0  # time.perf_counter() when the last urgent log arrived
    outcomes: list[Outcome] = field(default_factory=list)
    last_opportunities: list[Opportunity] = field(default_factory=list)

    @property
    def confirmed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "confirmed"]

    @property
    def realized_profit(self) -> int:
        return sum(o.realized_profit for o in self.confirmed)


class Engine:
    """Drives strategies from chain data; sends through `executor` (None: observe only)."""

    def __init__(
        self,
        chain: HttpRpc,
        strategies: Sequence[Strategy],
        dex: PairBook,
        executor: Executor | None,
        *,
        quote_token: str,
        min_profit: int,
        priority_fee: int,
        poll_interval: float = 0.05,
        flash: FlashRoute | None = None,
        monitor: Monitor | None = None,
        batch_max: int = 5,
    ) -> None:
        self.chain = chain
        self.strategies = list(strategies)
        self.dex = dex
        self.executor = executor
        self.quote_token = quote_token.lower()
        self.min_profit = min_profit
        self.priority_fee = priority_fee
        self.poll_interval = poll_interval
        self.flash = flash
        self.monitor = monitor
        self.batch_max = batch_max
        self._unbatchable: set[str] = set()  # keys whose batch failed simulation: sent alone
        if executor is not None and flash is not None:
            executor.flash_executor, executor.quote_token = flash.executor, self.quote_token
        self._unhealthy: set[tuple[str, str]] = set()  # (strategy, account) at the last rank
        if executor is not None:
            executor.still_there = self._still_there
        self.stats = EngineStats()
        self._last: BlockRef | None = None
        self._next_base_fee = 0
        self._inflight: set[tuple[str, str]] = set()
        self._broken: set[Strategy] = set()  # failed in apply/candidates: re-sync at next head
        self._pending_swaps: dict[str, SwapLeg] = {}  # in-flight flash sends' exit swaps
        self._pending_until: dict[str, int] = {}  # ... resolved: the block they were mined in
        self._wake = asyncio.Event()
        self._poll_now = asyncio.Event()  # a (re)connected socket: read the head once now
        self._target: tuple[int, Mapping[str, Any] | None] | None = None
        self._ring: dict[int, str] = {}  # block number -> hash of the heads processed
        self._orphaned: list[tuple[str, str, Coroutine[Any, Any, Outcome]]] = []
        self._tasks: asyncio.TaskGroup | None = None  # `run`'s, for sends started mid-ranking
        self._sent_early: set[str] = set()  # keys dispatched before the ranking finished

    @property
    def inflight(self) -> int:
        """Liquidations sent (or being sent) whose outcome is not known yet."""
        return len(self._inflight)

    async def latest_block(self) -> tuple[BlockRef, Mapping[str, Any]]:
        raw = await self.chain.call("eth_getBlockByNumber", ["latest", False])
        return block_ref(raw), raw

    async def sync(self) -> BlockRef:
        """Cold start every strategy and the DEX book at the current head."""
        head, raw = await self.latest_block()
        for strategy in self.strategies:
            await self._sync_strategy(strategy, head)
        self._remember(head, raw)
        log.info("synced", block=head.number, strategies=[s.name for s in self.strategies])
        return head

    async def _sync_strategy(self, strategy: Strategy, head: BlockRef) -> None:
        await strategy.sync(self.chain, head)

    async def _refresh(self, head: BlockRef) -> None:
        """The optional `refresh(chain, block)` of each strategy: reads of what its logs
        cannot tell (an oracle or rate model it does not mirror), batched by the strategy."""
        for strategy in self.strategies:
            refresh = getattr(strategy, "refresh", None)
            if refresh is None or strategy in self._broken:
                continue
            try:
                await refresh(self.chain, head)
            except (RetryableError, RpcError):
                raise
            except Exception:
                self._fail(strategy, "refresh", head)

    async def _resync_stale(self, head: BlockRef) -> None:
        """Re-sync, at `head`, every strategy that says its local state cannot be trusted.

        The general mechanism for what a book cannot mirror from logs (a strategy sets
        `needs_resync`, e.g. on a configuration change): a cold start at the head.
        """
        for strategy in self.strategies:
            if strategy in self._broken or getattr(strategy, "needs_resync", False) is True:
                log.info("strategy state stale; re-syncing at the head", strategy=strategy.name,
                         block=head.number)
                await self._sync_strategy(strategy, head)
                self._broken.discard(strategy)

    def _remember(self, head: BlockRef, raw: Mapping[str, Any]) -> None:
        self._ring[head.number] = head.hash.lower()
        for number in [n for n in self._ring if n <= head.number - RING_SIZE or n > head.number]:
            del self._ring[number]
        self._last = head
        self.stats.head = head.number
        self._next_base_fee = next_base_fee(
            head.base_fee, int(raw["gasUsed"], 16), int(raw["gasLimit"], 16)
        )

    def _filter(self) -> LogFilter:
        addresses: set[str] = set()
        topics: set[str] = set()
        filters = [f for s in self.strategies for f in s.subscriptions()]
        filters.append(self.dex.subscriptions())
        any_topic = False
        for log_filter in filters:
            addresses.update(a.lower() for a in log_filter.addresses)
            topics.update(log_filter.topics0)
            any_topic = any_topic or not log_filter.topics0
        # One filter that wants every topic of its addresses (e.g. admin contracts) means the
        # merged query cannot narrow topics; strategies drop what they do not use.
        return LogFilter(tuple(sorted(addresses)), () if any_topic else tuple(sorted(topics)))

    async def step(
        self, head: BlockRef, raw: Mapping[str, Any], events: list[Event] | None = None,
        first: BlockRef | None = None,
    ) -> list[Opportunity]:
        """Apply every block after the last processed one up to `head`; rank at `head`.

        `events` are the logs of that range, and `first` the header of its first block,
        when the caller fetched them already. A first block whose parent is not the last
        block processed means a reorg: the state is rebuilt at `head` instead.
        """
        assert self._last is not None, "sync() first"
        start = self._last.number + 1
        if head.number < start:
            return []
        if events is None or (first is None and head.number > start):
            # The first new block's header comes in the same batch: its parent must be the
            # last block processed, or the chain reorganized under us.
            wanted = [start] if head.number > start else []
            raws, fetched = await self.chain.logs_and_headers(
                self._filter(), start, head.number, wanted)
            events = fetched if events is None else events
            first = block_ref(raws[0]) if raws and raws[0] is not None else first
        parent = first.parent_hash if first is not None else head.parent_hash
        if parent.lower() != self._last.hash.lower():
            return await self._reorganized(head, raw)
        headers = {head.number: head}
        missing = sorted({e.block_number for e in events} - {head.number})
        if first is not None:
            headers[first.number] = first
        missing = [n for n in missing if n not in headers]
        if missing:
            found = await self.chain.batch(
                [("eth_getBlockByNumber", [hex(n), False]) for n in missing]
            )
            headers.update({block_ref(r).number: block_ref(r) for r in found})
        by_block: dict[int, list[Event]] = {}
        for event in events:
            by_block.setdefault(event.block_number, []).append(event)
        for number in sorted(by_block):
            self._apply(by_block[number], headers[number])
        self.dex.apply(events)
        await self._resync_stale(head)
        await self._refresh(head)
        self._remember(head, raw)
        self.stats.blocks += head.number - start + 1
        if self.monitor is not None:
            self.monitor.block(head, head.number - start + 1)
            self.monitor.events(Counter(self._kind(e) for e in events))
        await self._check_orphans(head)
        return await self.evaluate(head)

    async def _check_orphans(self, head: BlockRef) -> None:
        """Our liquidations mined in blocks a reorg orphaned are not done: re-evaluate them
        (the executor checks its young receipts' blocks; nothing to do when there are none)."""
        if self.executor is not None:
            self._orphaned += await self.executor.orphaned(head.number)

    async def _reorganized(self, head: BlockRef, raw: Mapping[str, Any]) -> list[Opportunity]:
        """The chain no longer holds the last block processed: rebuild every strategy and the
        DEX book from the chain at `head` (a checkpoint-free rollback: nothing from the
        orphaned blocks survives), then rank on the new state."""
        assert self._last is not None
        ancestor = await self._common_ancestor(head)
        log.warning("reorg: the last block processed is no longer on the chain; rebuilding",
                    orphaned=self._last.number, orphan_hash=self._last.hash, head=head.number,
                    ancestor=ancestor, depth=self._last.number - ancestor)
        self.stats.reorgs += 1
        for strategy in self.strategies:
            await self._sync_strategy(strategy, head)
            self._broken.discard(strategy)
        self.dex = await PairBook.load(self.chain, list(self.dex.pairs), head)
        self._remember(head, raw)
        if self.monitor is not None:
            self.monitor.block(head, 1)
        await self._check_orphans(head)
        return await self.evaluate(head)

    @contextlib.contextmanager
    def what_if(self) -> Iterator[None]:
        """Steps inside work on a copy of the strategies and the DEX book; on exit the real
        state (and the last head processed) is put back, so nothing applied inside survives
        (a backtest's trial block)."""
        saved = (self.strategies, self.dex, self._last, self._next_base_fee, self.stats.head,
                 dict(self._ring))
        self.strategies, self.dex = copy.deepcopy((self.strategies, self.dex))
        try:
            yield
        finally:
            (self.strategies, self.dex, self._last, self._next_base_fee, self.stats.head,
             self._ring) = saved

    async def _common_ancestor(self, head: BlockRef) -> int:
        """The newest processed head still on the chain (one batch of headers); below the
        ring when the reorg is deeper than it (then everything in it counts as orphaned)."""
        numbers = sorted((n for n in self._ring if n <= head.number), reverse=True)
        found = await self.chain.batch(
            [("eth_getBlockByNumber", [hex(n), False]) for n in numbers]) if numbers else []
        for number, raw in zip(numbers, found, strict=True):
            if raw is not None and str(raw["hash"]).lower() == self._ring[number]:
                return number
        return (min(numbers) if numbers else head.number) - 1

    def _kind(self, event: Event) -> str:
        """A bounded label for an event: the strategy that hears it, or "dex"."""
        for strategy in self.strategies:
            if any(event.address in f.addresses for f in strategy.subscriptions()):
                return strategy.name
        return "dex"

    def _apply(self, events: list[Event], block: BlockRef) -> None:
        for strategy in self.strategies:
            # Routed by each strategy's own subscriptions: strategies may share an address
            # (two protocols on the same price feed), and a strategy's set may grow.
            wanted = {a.lower() for f in strategy.subscriptions() for a in f.addresses}
            mine = [e for e in events if e.address in wanted]
            if mine and strategy not in self._broken:
                try:
                    strategy.apply(mine, block)
                except Exception:
                    self._fail(strategy, "apply", block)

    def _fail(self, strategy: Strategy, stage: str, block: BlockRef) -> None:
        # A strategy whose state broke (say, time going backwards after a reorg) must not
        # take the daemon down: it sits out until re-synced at the next head.
        log.exception("strategy failed; re-syncing it at the next head", strategy=strategy.name,
                      stage=stage, block=block.number)
        self._broken.add(strategy)

    def _candidates(self, head: BlockRef) -> list[Candidate]:
        out: list[Candidate] = []
        for strategy in self.strategies:
            if strategy in self._broken:
                continue
            try:
                out.extend(strategy.candidates(head))
            except Exception:
                self._fail(strategy, "candidates", head)
        return out

    def _still_there(self, strategy: str, account: str) -> bool:
        """Is the position still liquidatable at the newest head ranked (for fee bumps)?"""
        return (strategy, account) in self._unhealthy

    async def evaluate(self, head: BlockRef) -> list[Opportunity]:
        """Candidates of every strategy, sized within the capital on hand, ranked."""
        candidates = self._candidates(head)
        self._unhealthy = {(c.strategy, c.account) for c in candidates}
        self.stats.candidates = len(candidates)
        if self.executor is not None and candidates:
            # Paid with debt tokens the sender holds: never size beyond what is free.
            direct = [c for c in candidates if not self._flashable(c)]
            flashed = [c for c in candidates if self._flashable(c)]
            free = await self.executor.available(sorted({c.debt for c in direct}), head.number)
            if self.monitor is not None and self.executor.native_balance is not None:
                # Before anything is sent: the balance-floor breaker must see this balance.
                self.monitor.balance(self.executor.native_balance)
            candidates = [
                dataclasses.replace(c, max_repay=min(c.max_repay, free[c.debt]))
                for c in direct
            ]
            if flashed:
                candidates += await self._flash_candidates(flashed)
        for key, mined in list(self._pending_until.items()):
            if mined <= head.number:  # applied to the book (or never sent): not pending
                self._pending_swaps.pop(key, None)
                del self._pending_until[key]
        opportunities = await self._rank(candidates, head)
        self.stats.opportunities += len(opportunities)
        self.stats.last_opportunities = opportunities
        if self.monitor is not None:
            tracked = {s.name: len(getattr(s, "accounts", ())) for s in self.strategies}
            self.monitor.evaluated(tracked, candidates, opportunities)
        return opportunities

    async def _rank(self, candidates: list[Candidate], head: BlockRef) -> list[Opportunity]:
        """`rank` them; while running, the `HEAD_START` most promising accounts are ranked and
        handed to execution first, and the rest is ranked while those simulate and send
        (valued after their swaps, as the sequential ranking would)."""
        params: dict[str, Any] = dict(
            dex=self.dex, quote_token=self.quote_token, base_fee=self._next_base_fee,
            priority_fee=self.priority_fee, min_profit=self.min_profit, block=head.number)
        pending = list(self._pending_swaps.values())
        self._sent_early = set()
        if self._tasks is None or self.executor is None:
            return rank(candidates, pending=pending, **params)
        first, rest = head_start(candidates, dex=self.dex, quote_token=self.quote_token,
                                 accounts=HEAD_START)
        early = rank(first, pending=pending, **params)
        if early and rest:
            self.dispatch(early, self._tasks)
            self._sent_early = {o.key for o in early}
            await asyncio.sleep(0)  # the early sends claim and start simulating now
        if not rest:
            return early
        legs = [*pending, *(o.details["swap"] for o in early if o.details.get("swap"))]
        if len(rest) > RANK_IN_THREAD:
            later = await asyncio.to_thread(functools.partial(rank, rest, pending=legs,
                                                              **params))
        else:
            later = rank(rest, pending=legs, **params)
        return early + later

    def _strategy(self, name: str) -> Strategy:
        return next(s for s in self.strategies if s.name == name)

    def _flashable(self, candidate: Candidate) -> bool:
        """Sent through the flash executor: one is configured, the strategy can describe the
        liquidation to it, and the seized collateral has a pair to be sold on."""
        return (
            self.flash is not None
            and hasattr(self._strategy(candidate.strategy), "flash_liquidation")
            and candidate.collateral != candidate.debt
            and self.dex.pair_for(candidate.collateral, candidate.debt) is not None
        )

    async def _flash_candidates(self, candidates: list[Candidate]) -> list[Candidate]:
        """Sized within what a lender can lend now, net of its fee, ranked at flash gas."""
        assert self.flash is not None and self.executor is not None
        await self.flash.refresh(self.executor.chain, sorted({c.debt for c in candidates}))
        return [
            dataclasses.replace(
                c, max_repay=min(c.max_repay, self.flash.max_amount(c.debt, c.collateral)),
                fee=self.flash.fee(c.debt, c.collateral),
                gas_limit=self.flash.gas_for(c.strategy, c.gas_limit),
            )
            for c in candidates
        ]

    def intent(self, opportunity: Opportunity) -> TxIntent:
        candidate: Candidate = opportunity.details["candidate"]
        if candidate.fee is not None and self.flash is not None:
            return self._flash_intent((opportunity,))
        call = self._strategy(candidate.strategy).build(candidate, opportunity.debt_to_cover)
        return TxIntent(opportunity, call, candidate.gas_limit, candidate.spender)

    def _flash_intent(self, send: Send) -> TxIntent:
        """`execute(plan)` on the flash executor for one liquidation or a batch of one debt
        token. The surplus is sold into the quote token and must cover the gas of every
        liquidation as ranked alone plus `min_profit`, so a send that would lose money
        reverts (a batch burns less gas than that, never more)."""
        assert self.flash is not None
        lead = send[0]
        legs = []
        for opp in send:
            candidate = opp.details["candidate"]
            swap = opp.details["swap"]
            assert swap is not None
            legs.append(self._strategy(opp.strategy).flash_liquidation(  # type: ignore[attr-defined]
                candidate, opp.debt_to_cover, (swap.pair,), min_out(swap.amount_out)))
        profit_pairs: tuple[str, ...] = ()
        if lead.debt != self.quote_token:
            pair = self.dex.pair_for(lead.debt, self.quote_token)
            assert pair is not None  # ranking valued the debt through this very pair
            profit_pairs = (pair.address,)
        plan = self.flash.plan_batch(
            legs, debt=lead.debt, repays=[o.debt_to_cover for o in send],
            min_profit=sum(o.gas_cost for o in send) + self.min_profit,
            profit_pairs=profit_pairs)
        call = Call(to=self.flash.executor, data=self.flash.calldata(plan))
        gas = sum(o.gas_limit for o in send) - (len(send) - 1) * self.flash.batch_saving
        return TxIntent(lead, call, gas, None, members=send[1:])

    def sends(self, opportunities: Sequence[Opportunity]) -> list[Send]:
        """Ranked opportunities grouped into transactions (`keeper.batching`)."""
        flash = self.flash
        if flash is None or self.batch_max <= 1:
            return [(o,) for o in opportunities]

        def batchable(opp: Opportunity) -> bool:
            return opp.details["candidate"].fee is not None and opp.key not in self._unbatchable

        def touches(opp: Opportunity) -> frozenset[str]:
            pairs = (self.dex.pair_for(opp.collateral, opp.debt),
                     self.dex.pair_for(opp.debt, self.quote_token))
            return frozenset(p.address for p in pairs if p is not None)

        def fits(batch: Sequence[Opportunity]) -> bool:
            return flash.can_lend(batch[0].debt, [o.collateral for o in batch],
                                  sum(o.debt_to_cover for o in batch))

        return group_sends(opportunities, batchable=batchable, touches=touches, fits=fits,
                           max_size=self.batch_max)

    def dispatch(self, opportunities: Sequence[Opportunity], tasks: asyncio.TaskGroup) -> int:
        """Hand ranked opportunities to execution, best first; returns how many were handed.

        Tasks start in rank order (of each transaction's best liquidation) and the executor
        serves them in that order, so the best opportunity is simulated and sent first.
        """
        if self.executor is None:
            return 0
        jobs, self._orphaned = self._orphaned, []
        self.watch_again(jobs, tasks)
        if self.monitor is not None and not self.monitor.allow_send(opportunities):
            return 0  # a breaker is tripped: keep watching, send nothing
        free = [o for o in opportunities if (o.strategy, o.account) not in self._inflight
                and o.key not in self._sent_early]
        for send in self.sends(free):
            self._inflight.update((o.strategy, o.account) for o in send)
            tasks.create_task(self._execute(send))
        return len(free)

    async def _execute(self, send: Send) -> None:
        assert self.executor is not None
        lead = send[0]
        outcome: Outcome | None = None
        try:
            intent = self.intent(lead) if len(send) == 1 else self._flash_intent(send)
            if intent.spender is None:
                for opp in send:
                    swap = opp.details.get("swap")
                    if swap is not None:
                        # Sold on chain by the flash executor: later rankings must see the
                        # pool moved.
                        self._pending_swaps[opp.key] = swap
            outcome = await self.executor.execute(intent, self._next_base_fee)
            if self.flash is not None and intent.spender is None:
                self._learn_gas(send, outcome)
        except Exception as exc:
            # One failed send must not stop the daemon; it is logged with its traceback.
            log.exception("liquidation failed", key=lead.key)
            outcome = Outcome(lead.key, "error", reason=f"{type(exc).__name__}: {exc}",
                              members=tuple(o.key for o in send[1:]))
        finally:
            for opp in send:
                self._inflight.discard((opp.strategy, opp.account))
                if opp.key in self._pending_swaps:
                    done = outcome is not None and outcome.status in ("confirmed", "reverted")
                    # Until the engine has applied the block it was mined in, the book lacks it.
                    self._pending_until[opp.key] = outcome.block if done and outcome else 0
        assert outcome is not None  # set by the call or by the handler
        if len(send) > 1 and outcome.status == "simulation-failed":
            self._unbatchable.update(o.key for o in send)  # next time, each one alone
        self._record(send, outcome)

    def _learn_gas(self, send: Send, outcome: Outcome) -> None:
        """Rank later flash sends with the gas receipts show (and batches' saving per member)."""
        assert self.flash is not None
        if not outcome.gas_used or outcome.status != "confirmed":
            return
        if len(send) == 1:
            self.flash.gas[send[0].strategy] = outcome.gas_used
            return
        alone = sum(self.flash.gas_for(o.strategy, o.gas_limit) for o in send)
        self.flash.batch_saving = max(0, (alone - outcome.gas_used) // (len(send) - 1))

    def _record(self, send: Send, outcome: Outcome) -> None:
        """One outcome per liquidation: a batch's profit and gas are shared among its
        liquidations in proportion to their expected profit (the sums stay exact)."""
        keys = [o.key for o in send]
        profits = split_by_weight(outcome.realized_profit, [o.net_profit for o in send])
        gas = split_by_weight(outcome.gas_paid, [o.net_profit for o in send])
        for opp, key, profit, paid in zip(send, keys, profits, gas, strict=True):
            each = outcome if len(send) == 1 else dataclasses.replace(
                outcome, key=key, realized_profit=profit, gas_paid=paid,
                members=tuple(k for k in keys if k != key))
            self.stats.outcomes.append(each)
            if self.monitor is not None:
                self.monitor.outcome(opp.strategy, each.status, each.realized_profit,
                                     each.gas_paid)

    def watch_again(
        self, jobs: Sequence[tuple[str, str, Coroutine[Any, Any, Outcome]]],
        tasks: asyncio.TaskGroup,
    ) -> None:
        """Run executor recovery jobs; their accounts get nothing new until each settles."""
        for strategy, account, job in jobs:
            slot = (strategy, account)
            self._inflight.add(slot)
            tasks.create_task(self._recovered(slot, job))

    async def _recovered(
        self, slot: tuple[str, str], job: Coroutine[Any, Any, Outcome]
    ) -> None:
        try:
            outcome = await job
        except Exception as exc:
            log.exception("recovering a transaction failed", account=slot[1])
            outcome = Outcome("", "error", reason=f"{type(exc).__name__}: {exc}")
        finally:
            self._inflight.discard(slot)
        # One outcome per liquidation (a recovered batch's profit stays with its lead); an
        # orphaned liquidation re-evaluated replaces what was recorded for it before.
        each = [outcome, *(dataclasses.replace(outcome, key=k, realized_profit=0, gas_paid=0,
                                               members=()) for k in outcome.members)]
        keys = {o.key for o in each if o.key}
        self.stats.outcomes[:] = [o for o in self.stats.outcomes if o.key not in keys]
        self.stats.outcomes.extend(each)

    # -- intake -----------------------------------------------------------------------------

    def _heard(self, number: int, raw: Mapping[str, Any] | None) -> None:
        """A head (or an urgent log of block `number`) arrived: the newest one wins."""
        target = self._target
        if target is None or number > target[0] or (number == target[0] and target[1] is None):
            self._target = (number, raw)
            if self._last is None or number > self._last.number:
                self._wake.set()

    def _heard_head(self, raw: dict[str, Any]) -> None:
        self._heard(int(raw["number"], 16), raw)

    def _heard_log(self, raw: dict[str, Any]) -> None:
        if raw.get("removed") or raw.get("blockNumber") is None:
            return  # reorged out (or still pending): the block intake sees the truth
        self.stats.urgent_logs += 1
        self.stats.urgent_log_at = time.perf_counter()
        self._heard(int(raw["blockNumber"], 16), None)

    def urgent_filter(self) -> LogFilter | None:
        """The strategies' urgent logs (price feeds) in one filter, if any."""
        urgent = [f for s in self.strategies for f in s.subscriptions() if f.urgent]
        if not urgent:
            return None
        addresses = sorted({a.lower() for f in urgent for a in f.addresses})
        topics = sorted({t for f in urgent for t in f.topics0})
        return LogFilter(tuple(addresses), tuple(topics), urgent=True)

    async def _poll_heads(self, stop: asyncio.Event, ws: WsSubscriptions | None) -> None:
        """HTTP head polling: always without a WebSocket, else while it is down or has just
        reconnected (so missed blocks are backfilled even if no new block comes)."""
        seen_connects = -1
        while not stop.is_set():
            if ws is not None and self.monitor is not None:
                self.monitor.socket(ws.connected)
            if isinstance(self.chain, FailoverRpc) and await self.chain.check_head():
                seen_connects = -1  # a new endpoint: read its head now, socket or not
            if ws is None or not ws.connected or ws.connects != seen_connects:
                seen_connects = ws.connects if ws is not None and ws.connected else seen_connects
                try:
                    raw = await self.chain.call("eth_getBlockByNumber", ["latest", False])
                except (RetryableError, RpcError) as exc:
                    log.warning("head poll failed; retrying", reason=str(exc))
                    seen_connects = -1
                else:
                    self._heard_head(raw)
            await self._pause(stop, self._poll_now)
            self._poll_now.clear()

    async def _pause(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        """Wait `poll_interval`, or less if `stop` (or `wake`) is set meanwhile."""
        waiters = [asyncio.ensure_future(e.wait()) for e in (stop, wake) if e is not None]
        try:
            await asyncio.wait(waiters, timeout=self.poll_interval,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def advance(
        self, number: int, raw: Mapping[str, Any] | None
    ) -> list[Opportunity] | None:
        """`step` to block `number`, fetching its header with the logs when not given.

        None when the node cannot give that header yet (the block's own head will come).
        """
        assert self._last is not None, "sync() first"
        if raw is None:
            start = self._last.number + 1
            wanted = [number, start] if number > start else [number]
            raws, events = await self.chain.logs_and_headers(self._filter(), start, number,
                                                             wanted)
            raw = raws[0]
            if raw is None:
                return None
            first = block_ref(raws[1]) if len(raws) > 1 and raws[1] is not None else None
            return await self.step(block_ref(raw), raw, events, first)
        return await self.step(block_ref(raw), raw)

    async def run(self, stop: asyncio.Event, ws: WsSubscriptions | None = None) -> None:
        """Follow the chain until `stop` is set; sends run as tasks of this TaskGroup.

        Heads come from `ws` (`newHeads`, plus the urgent feeds' logs, which start the
        work on their block before its header arrives) or from HTTP polling.
        """
        delay = 0.5
        while self._last is None:
            try:
                await self.sync()
            except (RetryableError, RpcError) as exc:
                # A cold start reads a lot; a slow or failing node must not end the daemon.
                log.warning("cold start failed; retrying", reason=str(exc), retry_in=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return
                delay = min(delay * 2, 30.0)
        self._wake = asyncio.Event()
        self._poll_now = asyncio.Event()
        self._target = None
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            if self.executor is not None:
                # What an earlier run sent and never saw mined: settle it before that
                # account gets anything new.
                self.watch_again(self.executor.recovery(), tasks)
            if ws is not None:
                subscriptions = [heads(self._heard_head)]
                urgent = self.urgent_filter()
                if urgent is not None:
                    subscriptions.append(logs(urgent, self._heard_log))
                tasks.create_task(ws.run(subscriptions, stop, on_connect=self._poll_now.set))
            intake = tasks.create_task(self._poll_heads(stop, ws))
            stopping = asyncio.ensure_future(stop.wait())
            try:
                while not stop.is_set():
                    if not self._wake.is_set():
                        waking = asyncio.ensure_future(self._wake.wait())
                        await asyncio.wait({waking, stopping, intake},
                                           return_when=asyncio.FIRST_COMPLETED)
                        waking.cancel()
                        if intake.done():
                            intake.result()  # the poller failed: raise its error
                    self._wake.clear()
                    target = self._target
                    if target is None or self._last is None or target[0] <= self._last.number:
                        continue
                    structlog.contextvars.bind_contextvars(block=target[0])
                    try:
                        opportunities = await self.advance(*target)
                    except (RetryableError, RpcError) as exc:
                        # The node hiccuped: keep the target and try again shortly.
                        log.warning("cannot process block; retrying", reason=str(exc))
                        await self._pause(stop)
                        self._wake.set()
                        continue
                    if opportunities is None:
                        continue
                    self.dispatch(opportunities, tasks)
                    self.stats.processed = target[0]
            finally:
                stopping.cancel()
                self._tasks = None
            if self._inflight:
                log.info("stopping: waiting for in-flight liquidations", count=len(self._inflight))

"""The dispatcher: ranked opportunities in, transactions sent and outcomes recorded.

The engine core hands it three things per step, top-down and nothing else:

1. `size(candidates, head)`: before ranking, every candidate is sized within the
   capital on hand (debt tokens the sender holds, less what sends in flight hold), or,
   through the flash executor, within what a lender can lend net of its fee (a flashable
   one is paid from the wallet when the balance left covers it: funding.py). The
   candidates also tell it which positions are still liquidatable (`LivePositions`,
   which the executor asks before a fee bump).
2. `pending_swaps(head)`: the exit swaps of flash sends not yet applied to the DEX book,
   so ranking values later liquidations on the pools those will leave.
3. `dispatch(opportunities, tasks)`: the ranked opportunities, best first. Those of
   accounts with nothing in flight are grouped into transactions (`IntentBuilder`),
   handed to the executor together, in rank order (`Executor.launch`: with simulation
   alongside they are signed, journaled and broadcast at once), and each is then
   followed to its outcome as a task of the caller's TaskGroup; the outcome of each
   liquidation is recorded once (`OutcomeLog`, bounded), gas is learned from receipts,
   and the monitor hears about it. A tripped breaker holds sends back.

After each step, `after_step(head)` collects the executor's recovery jobs for
liquidations a reorg orphaned; at start, `recover(tasks)` settles what an earlier run
sent and never saw mined. Until a recovery settles, its account gets nothing new.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol

import structlog

from keeper.batching import Send, split_by_weight
from keeper.execution.armed import Armed, ordered, send_keys
from keeper.execution.bundles import Backrun
from keeper.execution.executor import Executor
from keeper.execution.funding import split_funding, wallet_terms
from keeper.execution.intents import IntentBuilder
from keeper.execution.outcomes import OutcomeLog
from keeper.execution.staleness import Staleness
from keeper.monitor import Monitor
from keeper.types import BlockRef, Candidate, Opportunity, Outcome, SwapLeg, TxIntent

log = structlog.get_logger(__name__)

Slot = tuple[str, str]  # (strategy, account)
Job = tuple[str, str, Coroutine[Any, Any, Outcome]]


class SendGate(Protocol):
    """May this keeper send now? With `[ha]`, only while its replica holds the leader lease
    (keeper/ha/replica.py); a standby ranks every block and sends nothing."""

    def sending(self) -> bool: ...


class LivePositions:
    """The positions the newest ranking found liquidatable (the executor stops bumping the
    fee of a send whose position is gone)."""

    def __init__(self) -> None:
        self._slots: set[Slot] = set()

    def update(self, candidates: Sequence[Candidate]) -> None:
        self._slots = {(c.strategy, c.account) for c in candidates}

    def __call__(self, strategy: str, account: str) -> bool:
        return (strategy, account) in self._slots


class Dispatcher:
    """Sizing, sending and outcomes for one sending account."""

    def __init__(
        self, executor: Executor, intents: IntentBuilder, live: LivePositions, *,
        monitor: Monitor | None = None, outcomes: OutcomeLog | None = None,
        gate: SendGate | None = None,
    ) -> None:
        self.executor = executor
        self.gate = gate
        self._tasks: asyncio.TaskGroup | None = None  # the loop's, once `recover` was called
        self.intents = intents
        self.live = live
        self.monitor = monitor
        self.outcomes = outcomes if outcomes is not None else OutcomeLog()
        self.base_fee = 0  # the next block's base fee, set by the engine each step
        self._inflight: set[Slot] = set()
        self._sent_early: set[str] = set()  # keys dispatched before the ranking finished
        self._pending_swaps: dict[str, SwapLeg] = {}  # in-flight flash sends' exit swaps
        self._pending_until: dict[str, int] = {}  # ... resolved: the block they were mined in
        self._orphaned: list[Job] = []
        self._launching: set[asyncio.Task[None]] = set()  # dispatches not handed over yet
        # Accounts our own liquidation touched, by the block it was mined in: a book older
        # than that block does not hold it yet, and would liquidate them again (a revert).
        self._mined_at: dict[Slot, int] = {}
        # A send too old to leave (staleness.py) is left to the next step's ranking; the
        # volley asks too, for sends waiting their turn.
        self.staleness = Staleness()
        if (volley := getattr(executor, "volley", None)) is not None:
            volley.staleness = self.staleness

    @property
    def inflight(self) -> int:
        """Liquidations sent (or being sent) whose outcome is not known yet."""
        return len(self._inflight)

    # -- before ranking ------------------------------------------------------------------

    async def size(
        self, candidates: Sequence[Candidate], head: BlockRef, *, scenario: bool = False,
    ) -> list[Candidate]:
        """Every candidate sized within the capital it can use (see the module docstring).
        Accounts our own liquidation touched in a block after `head` are left out.

        `scenario`: the candidates are what a price not posted yet would open (prepared
        liquidations): they do not tell which positions are liquidatable now.
        """
        if not scenario:
            self.live.update(candidates)
        self._mined_at = {s: b for s, b in self._mined_at.items() if b > head.number}
        candidates = [c for c in candidates if (c.strategy, c.account) not in self._mined_at]
        if not candidates:
            return []
        intents = self.intents
        direct = [c for c in candidates if not intents.flashable(c)]
        flashed = [c for c in candidates if intents.flashable(c)]
        # The reads are independent: one round trip for all (balances are usually prefetched,
        # known allowances cost nothing); flashable ones may be paid from the wallet too.
        free, *_ = await asyncio.gather(
            self.executor.available(sorted({c.debt for c in candidates}), head.number),
            self.executor.look_allowances(
                [(c.debt, c.spender) for c in candidates if c.spender is not None]),
            self._lenders(flashed))
        if self.monitor is not None and self.executor.native_balance is not None:
            # Before anything is sent: the balance-floor breaker must see this balance.
            self.monitor.balance(self.executor.native_balance)
        wallet, flashed = split_funding(flashed, direct, free, intents.exits,  # funding.py
                                        intents.quote_token, terms=wallet_terms(self.executor))
        sized = [dataclasses.replace(c, max_repay=min(c.max_repay, free[c.debt]))
                 if c.from_wallet else c for c in (*direct, *wallet)]
        return sized + (intents.flash_sized(flashed) if flashed else [])

    async def _lenders(self, flashed: Sequence[Candidate]) -> None:
        """What the flash lenders hold of the flashed candidates' debt tokens, read now."""
        if flashed:
            flash = self.intents.flash
            assert flash is not None
            await flash.refresh(self.executor.chain, sorted({c.debt for c in flashed}))

    def pending_swaps(self, head: int) -> list[SwapLeg]:
        """Exit swaps of flash sends the book at `head` does not hold yet."""
        for key, mined in list(self._pending_until.items()):
            if mined <= head:  # applied to the book (or never sent): not pending
                self._pending_swaps.pop(key, None)
                del self._pending_until[key]
        return list(self._pending_swaps.values())

    def touched_after(self, strategy: str, account: str, block: int) -> bool:
        """Was our own liquidation of `account` mined after `block` (a book of that block
        does not hold it: an opportunity valued there would liquidate it again)?"""
        return self._mined_at.get((strategy, account), 0) > block

    # -- sending -------------------------------------------------------------------------

    def price_rose(self, block: int) -> None:
        """A feed posted a higher answer in `block` (heard before its step is applied):
        what was valued at an older block is not sent, in the volley's queue included."""
        self.staleness.rose(block)

    def _free(self, opportunities: Sequence[Opportunity], *, clock: bool = True,
              ) -> list[Opportunity]:
        """The opportunities nothing of ours holds: no send in flight for the account, not
        sent early, no liquidation of ours mined after the block they were valued at, and
        not stale (`Staleness`; `clock`: its next block's deadline counts)."""
        stale = self.staleness.stale
        return [o for o in opportunities if (o.strategy, o.account) not in self._inflight
                and o.key not in self._sent_early and stale(o.block, clock=clock) is None
                and self._mined_at.get((o.strategy, o.account), 0) <= o.block]

    async def arm(self, opportunities: Sequence[Opportunity], *, signed: int,
                  known: Armed | None = None) -> Armed:
        """What `dispatch` of `opportunities` would send now, built, and its first `signed`
        transactions signed ahead (keeper/execution/armed.py); `known`: an earlier arming
        whose intents and signatures are reused where they are the same."""
        # Not by the clock: a level's opportunities are revalued when its answer comes.
        sends = self.intents.sends(self._free(opportunities, clock=False))
        intents: dict[tuple[str, ...], TxIntent] = {}
        for send in sends:
            keys = send_keys(send)
            built = known.intents.get(keys) if known is not None else None
            if built is not None and any(
                    a is not b for a, b in zip(built.opportunities, send, strict=True)):
                built = None  # the same keys, valued again: build it anew
            try:
                intents[keys] = built if built is not None else self.intents.intent(send)
            except Exception as exc:  # dispatching it would fail the same way: left out
                log.debug("cannot arm a prepared send", key=send[0].key, reason=str(exc))
        first, presigned = await self.executor.volley.presign(
            ordered(intents, sends)[:signed], self.base_fee,
            known.presigned if known is not None else None)
        return Armed(intents, presigned, first, self.base_fee)

    def dispatch(
        self, opportunities: Sequence[Opportunity], tasks: asyncio.TaskGroup, *,
        early: bool = False, armed: Armed | None = None, backrun: Backrun | None = None,
    ) -> int:
        """Hand ranked opportunities to the executor, best first; returns how many.
        `backrun`: with bundles, they go right behind that (oracle) transaction.

        `early`: a wave of a ranking still running; the rest of that ranking (dispatched
        when it is done) skips them. `armed`: their intents built and transactions signed
        ahead (`arm`), used where they still fit.
        """
        if self.gate is not None and not self.gate.sending():
            return 0  # a standby, or a leader whose lease lapsed: watch, send nothing
        jobs, self._orphaned = self._orphaned, []
        self.watch_again(jobs, tasks)
        if self.monitor is not None and not self.monitor.allow_send(opportunities):
            return 0  # a breaker is tripped: keep watching, send nothing
        # Checked again here, not only when sizing: an outcome recorded while the ranking
        # ran (it awaits) may show our own liquidation mined after the ranked block.
        free = self._free(opportunities)
        # Early waves of one ranking add up; the ranking's own dispatch (not early) skips
        # them all and starts the next step afresh.
        self._sent_early = self._sent_early | {o.key for o in free} if early else set()
        sends = self.intents.sends(free)
        for send in sends:
            self._inflight.update((o.strategy, o.account) for o in send)
        if sends:
            launch = tasks.create_task(self._launch(sends, tasks, armed, backrun=backrun))
            self._launching.add(launch)
            launch.add_done_callback(self._launching.discard)
        return len(free)

    async def launched(self) -> None:
        """Until every send dispatched so far was handed to the executor: with simulation
        alongside, broadcast. CPU-bound work started after this (ranking in a thread holds
        the GIL for up to 5 ms at a time) no longer delays those broadcasts."""
        if not self._launching:
            await asyncio.sleep(0)
        while self._launching:  # and those dispatched meanwhile (a fired level's rest)
            await asyncio.wait(set(self._launching))  # never cancels them

    async def _launch(self, sends: Sequence[Send], tasks: asyncio.TaskGroup,
                      armed: Armed | None = None, *, backrun: Backrun | None = None) -> None:
        """Every send of one dispatch to the executor at once, then each one followed."""
        ready: list[tuple[Send, TxIntent]] = []
        for send in sends:
            try:
                built = armed.intent(send) if armed is not None else None
                intent = built if built is not None else self.intents.intent(send)
            except Exception as exc:
                tasks.create_task(self._follow(send, None, self._failed(send, exc)))
                continue
            if intent.spender is None:
                for opp in send:
                    if opp.swap is not None:
                        # Sold on chain by the flash executor: later rankings must see the
                        # pool moved.
                        self._pending_swaps[opp.key] = opp.swap
            ready.append((send, intent))
        try:
            extra: dict[str, Any] = {"backrun": backrun} if backrun is not None and getattr(
                self.executor, "bundles", None) is not None else {}  # bundles only
            if armed is not None:  # signed ahead (an armed level; bundles: on their lanes)
                extra["presigned"] = armed.presigned
            follows = await self.executor.launch([i for _, i in ready], self.base_fee, **extra)
        except Exception as exc:
            follows = [self._failed(send, exc) for send, _ in ready]
        for n, ((send, intent), follow) in enumerate(zip(ready, follows, strict=True)):
            following = self._follow(send, intent, follow)
            try:
                tasks.create_task(following)
            except RuntimeError:  # the task group is shutting down: these never start
                following.close()
                for unstarted in follows[n:]:
                    unstarted.close()
                raise

    async def _failed(self, send: Send, exc: Exception) -> Outcome:
        raise exc

    async def _follow(
        self, send: Send, intent: TxIntent | None, follow: Coroutine[Any, Any, Outcome],
    ) -> None:
        lead = send[0]
        outcome: Outcome | None = None
        try:
            outcome = await follow
            if intent is not None and intent.spender is None:
                self.intents.gas.learn(send, outcome)
        except Exception as exc:
            # One failed send must not stop the daemon; it is logged with its traceback.
            log.exception("liquidation failed", key=lead.key)
            outcome = Outcome(lead.key, "error", reason=f"{type(exc).__name__}: {exc}",
                              members=tuple(o.key for o in send[1:]))
        finally:
            mined = outcome.block if outcome is not None else 0
            for opp in send:
                self._inflight.discard((opp.strategy, opp.account))
                if mined:
                    self._mined_at[(opp.strategy, opp.account)] = mined
                if opp.key in self._pending_swaps:
                    done = outcome is not None and outcome.status in ("confirmed", "reverted")
                    # Until the engine has applied the block it was mined in, the book lacks it.
                    self._pending_until[opp.key] = outcome.block if done and outcome else 0
        assert outcome is not None  # set by the call or by the handler
        if len(send) > 1 and outcome.status == "simulation-failed":
            self.intents.unbatchable.update(o.key for o in send)  # next time, each one alone
        self._record(send, outcome)

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
            self.outcomes.add(each)
            if self.monitor is not None:
                self.monitor.outcome(each, opp.strategy, breakers=len(send) == 1)
        if self.monitor is not None and len(send) > 1:
            self.monitor.transaction(outcome)

    # -- recovery ------------------------------------------------------------------------

    def recover(self, tasks: asyncio.TaskGroup) -> None:
        """What an earlier run sent and never saw mined: settle it before that account gets
        anything new. A standby settles nothing: `promoted` does it once it leads."""
        self._tasks = tasks
        if self.gate is None or self.gate.sending():
            self.watch_again(self.executor.recovery(), tasks)

    def promoted(self) -> None:
        """This replica now leads: settle what the journal holds signed or sent and never
        seen mined (the old leader's sends), as a restart does. Before the loop's `recover`
        ran, that call does it instead."""
        if self._tasks is not None:
            self.watch_again(self.executor.recovery(), self._tasks)

    async def after_step(self, head: BlockRef) -> None:
        """Our liquidations mined in blocks a reorg orphaned are not done: re-evaluate them
        at the next dispatch (nothing to read when there are no young receipts). The
        journal's WAL is checkpointed here, between steps (`Executor.checkpoint`)."""
        self._orphaned += await self.executor.orphaned(head.number)
        self.executor.checkpoint()

    def watch_again(self, jobs: Sequence[Job], tasks: asyncio.TaskGroup) -> None:
        """Run executor recovery jobs; their accounts get nothing new until each settles."""
        for strategy, account, job in jobs:
            slot = (strategy, account)
            self._inflight.add(slot)
            tasks.create_task(self._recovered(slot, job))

    async def _recovered(self, slot: Slot, job: Coroutine[Any, Any, Outcome]) -> None:
        try:
            outcome = await job
        except Exception as exc:
            log.exception("recovering a transaction failed", account=slot[1])
            outcome = Outcome("", "error", reason=f"{type(exc).__name__}: {exc}")
        finally:
            self._inflight.discard(slot)
        # One outcome per liquidation (a recovered batch's profit stays with its lead); an
        # orphaned liquidation re-evaluated replaces what was recorded for it before.
        self.outcomes.replace([outcome, *(
            dataclasses.replace(outcome, key=k, realized_profit=0, gas_paid=0, members=())
            for k in outcome.members)])

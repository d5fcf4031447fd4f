"""The racing send path: the sends of one dispatch signed together and broadcast at once.

With `execution.simulate = "alongside"` (the default) an executor sends the intents of one
dispatch call as a *volley*, in rank order:

1. every intent is claimed in one database transaction (one commit, not synced: nothing
   is sent yet), and the capital of each direct liquidation is reserved (a local check);
2. nothing waits for a simulation: the gas limit is the strategy's figure (for flash
   liquidations, the gas receipts showed, `GasBook`) or the largest estimate seen for
   that kind of transaction, whichever is larger, with the margins of `gas_limit`
   (`gas_limit_ahead`);
3. when its turn comes (volleys and lone sends broadcast in call order), the intents get
   their nonces in rank order, are signed, journaled in one synced database transaction,
   broadcast in one JSON-RPC batch and marked sent in one database transaction
   (`Sender.send_all`); an armed volley's first one goes ahead of the database instead
   (`_ahead`, keeper/execution/ahead.py: no claim's commit stands before it);
4. each one's simulation (`eth_estimateGas` at the ranked block) starts once the batch is
   out, so that the node answers the broadcast first (on the devnet, simulations sent
   just before a batch of four sends delayed it by about 30 ms); a volley that has to
   wait for its turn starts them while it waits instead, and one that has already
   failed when the turn comes drops its intent unsigned;
5. each sent transaction is followed to its receipt on its own, while its simulation
   answers: a simulation that fails after the send is logged as such, and the send is
   withdrawn (`Pending.withdraw`: replaced by a no-op for its nonce, with higher fees)
   if it is still pending; the receipt decides the outcome (a cancel that landed is
   `lost`, never a revert). A successful one teaches the estimate to later sends.

An intent whose debt token still needs an allowance, and every one ranked after it, goes
the `"before"` way instead (`Executor.execute`): the approval is mined first, then it is
simulated, then sent, still in rank order.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from keeper.chain.http import RpcError
from keeper.execution.ahead import claimable, entry_of, settle
from keeper.execution.mining import Pending
from keeper.execution.receipts import Logger
from keeper.execution.sender import Presigned, SendRefused, Unsigned
from keeper.execution.staleness import Staleness
from keeper.types import Outcome, TxIntent

if TYPE_CHECKING:
    from keeper.execution.executor import Executor

log = structlog.get_logger(__name__)

GAS_MARGIN_PERCENT = 130
FLASH_GAS_MARGIN_PERCENT = 200

Follow = Coroutine[Any, Any, Outcome]


def gas_limit(intent: TxIntent, estimate: int) -> int:
    """The gas limit to send `intent` with, given an estimate of it (0: none known).

    Nested calls get 63/64 of the gas left: a tight limit fails deep inside, so keep a
    margin over the estimate (and never go below the strategy's own figure). A flash
    plan's exits swap through pools that the sends ranked before it move first: a
    concentrated-liquidity swap then crosses more ticks than it did when estimated (seen:
    562k gas in the swap, out of gas at 1.3x), so its ranked gas (learned from receipts)
    gets the margin too. Unused gas is not paid.
    """
    if intent.spender is None:
        return max(intent.gas_limit, estimate) * FLASH_GAS_MARGIN_PERCENT // 100
    return max(intent.gas_limit, estimate * GAS_MARGIN_PERCENT // 100)


def gas_limit_ahead(intent: TxIntent, learned: int) -> int:
    """The gas limit to send `intent` with before its simulation answers: the margin of
    `gas_limit` over the strategy's figure (for a flash liquidation, the gas receipts showed)
    or the largest estimate seen for that kind of call, whichever is larger. The figure is a
    first guess made for ranking: a liquidation may need more than it (seen on the devnet:
    an Aave liquidation out of gas at 437k of a 450k figure)."""
    return gas_limit(dataclasses.replace(intent, gas_limit=0), max(intent.gas_limit, learned))


def shape(intent: TxIntent) -> tuple[str, str, int]:
    """What an estimate is remembered by: strategy, target, liquidations in the call."""
    return intent.opportunity.strategy, intent.call.to.lower(), 1 + len(intent.members)


def with_members(intent: TxIntent, outcome: Outcome) -> Outcome:
    """A batch's outcome names its members (as `Executor.execute` reports it)."""
    if intent.members:
        return dataclasses.replace(outcome, members=tuple(m.key for m in intent.members))
    return outcome


async def done(outcome: Outcome) -> Outcome:
    """An outcome known before anything was sent, as a follow coroutine."""
    return outcome


def _discard(simulation: asyncio.Task[int] | None) -> None:
    """A simulation whose answer no longer matters: stop it, its error never unretrieved."""
    if simulation is not None:
        simulation.cancel()
        simulation.add_done_callback(lambda t: t.cancelled() or t.exception())


def _failed(simulation: asyncio.Task[int] | None) -> str | None:
    """The revert reason of a simulation that already answered with one, else None."""
    if simulation is None or not simulation.done() or simulation.cancelled():
        return None
    error = simulation.exception()
    return error.message if isinstance(error, RpcError) else None


@dataclasses.dataclass
class _Shot:
    """One intent of a volley on its way: index, log context, simulation (None: not yet)."""

    index: int
    intent: TxIntent
    bound: Logger
    simulation: asyncio.Task[int] | None = None


class Volley:
    """The alongside send path of one executor (see the module docstring)."""
    def __init__(self, executor: Executor) -> None:
        self._x = executor
        self.estimates: dict[tuple[str, str, int], int] = {}  # the largest seen, by `shape`
        self.failed_after_send = 0  # simulations that failed once their send had left
        self.staleness = Staleness()  # the dispatcher's: a send valued too long ago stays
        self._judging: set[asyncio.Future[None]] = set()  # simulations judged after sends
        self._withdrawing: list[Pending] = []  # sends to withdraw whose no-op is not out
        # A replay holds what simulations teach until its block is settled: applied as they
        # answer, they would change a later wave's gas limit (so its hash) by timing alone.
        self.hold_learned = False
        self._learned: dict[tuple[str, str, int], int] = {}

    @property
    def settled(self) -> bool:
        """Every sent transaction's simulation has answered, and every withdrawal it asked
        for is in the pool (a replay steps on only then: what they teach changes sends)."""
        self._withdrawing = [p for p in self._withdrawing if p.withdraw]
        return not self._judging and not self._withdrawing

    def apply_learned(self) -> None:
        """What simulations taught while `hold_learned`, now used for later sends."""
        for kind, estimate in self._learned.items():
            self.estimates[kind] = max(self.estimates.get(kind, 0), estimate)
        self._learned.clear()

    async def launch(self, intents: Sequence[TxIntent], base_fee: int,
                     presigned: Mapping[str, Presigned] | None = None) -> list[Follow]:
        """Send `intents` (best first) and return one coroutine per intent, in order, that
        follows it to its outcome; run each as its own task. `presigned`: transactions
        signed ahead for some of them (an armed level, keeper/execution/armed.py), sent as
        they are where they still fit (`Sender.send_all`)."""
        x = self._x
        cut = self._cut(intents)
        # Signed ahead: the first goes alone, claimed alone (a deep level's claims of every
        # send took ~0.05 ms each before it), the rest right after; one fsync after both.
        split = 1 if presigned is not None and cut > 1 else cut
        tickets = [x.turns.take() for _ in range(1 if split == cut else 2)]
        follows: list[Follow] = []
        try:
            ahead = await self._ahead(intents[0], base_fee, tickets[0], presigned,
                                      sync=split == cut) if presigned and split == 1 else None
            if ahead is not None:
                follows += ahead
            elif split:
                follows += await self._fire(intents[:split], base_fee, tickets[0], presigned,
                                            sync=split == cut)
            x.turns.done(tickets[0])
            if split < cut:
                try:
                    follows += await self._fire(intents[split:cut], base_fee, tickets[1],
                                                presigned, alone_first=False)
                except Exception as exc:  # the first has left: it is still followed
                    follows += [done(with_members(i, Outcome(
                        i.opportunity.key, "error", reason=f"{type(exc).__name__}: {exc}")))
                        for i in intents[split:cut]]
        finally:
            for ticket in tickets:
                x.turns.done(ticket)
            if split < cut:
                x.sender.flush()  # the first's marks, if the rest synced nothing
        return follows + [x.execute_before(i, base_fee) for i in intents[cut:]]

    def _cut(self, intents: Sequence[TxIntent]) -> int:
        """How many lead the ones that wait for an approval (those go the "before" way)."""
        x = self._x
        return next((n for n, i in enumerate(intents) if x.needs_approval(i)), len(intents))

    async def presign(self, intents: Sequence[TxIntent], base_fee: int,
                      known: Mapping[str, Presigned] | None = None,
                      ) -> tuple[int, dict[str, Presigned]]:
        """(the next nonce, the transactions of `intents` signed with the nonces and fees
        `launch` would give them now): what an armed level sends without signing."""
        x = self._x
        first = x.nonces.next_nonce
        if first is None or x.simulate_mode == "before":
            return -1, {}
        calls = [self._unsigned(i) for i in intents[:self._cut(intents)]]
        signed = await x.sender.presign(calls, base_fee, first, known)
        if x.ahead is not None and signed:  # which may be sent ahead of the database
            sends = {i.opportunity.key: i.opportunities for i in intents}
            free = claimable(x.journal, [o.key for k in signed for o in sends[k]])
            signed = {k: dataclasses.replace(p, claimable=all(o.key in free for o in sends[k]))
                      for k, p in signed.items()}
        return first, signed

    async def _ahead(self, intent: TxIntent, base_fee: int, ticket: int,
                     presigned: Mapping[str, Presigned], *, sync: bool) -> list[Follow] | None:
        """An armed volley's first transaction sent ahead of the database (ahead.py): its
        entry appended, broadcast, then claimed and recorded; None (nothing done) when it
        cannot go that way, and `_fire` sends it."""
        x, opp = self._x, intent.opportunity
        ready, call = presigned.get(opp.key), self._unsigned(intent)
        fees = x.sender._fees(base_fee, call.priority_fee)
        # A level's lead dispatched alone (keeper/prepared_lead.py): the rest, signed for
        # the nonces after it, follows at once and syncs it (else the next checkpoint does).
        sync = sync and not any(p.nonce > ready.nonce for p in presigned.values()) \
            if ready is not None else sync
        if (x.ahead is None or ready is None or not ready.claimable or fees is None
                or not x.turns.ready(ticket) or x.needs_approval(intent)
                or self.staleness.stale(opp.block)):  # stale: `_fire` drops it
            return None
        if intent.spender is not None and not await x.capital.reserve(opp.debt, opp.wallet_draw):
            return None
        nonce = await x.nonces.reserve()
        entry = entry_of(intent, x.chain.chain_id, nonce, ready)
        if not ready.fits(call, nonce, fees, base_fee) or not x.ahead.write(entry):
            x.nonces.release(nonce)  # nothing left: the database way
            self._release(intent)
            return None
        refusal: SendRefused | None = None
        try:
            [refusal] = await x.sender._broadcast([entry.signed])
        finally:  # the database learns of it whatever the broadcast did
            if not settle(x.journal, entry, sent=refusal is None, durable=sync):
                log.error("a key sent ahead was taken in the journal", key=opp.key)
            x.ahead.settled()
        bound = x.bound(intent)
        if refusal is not None:
            self._release(intent)
            return [done(with_members(intent, x.refused(opp.key, refusal, bound)))]
        if not sync:
            x.sender._unsynced.append((opp.key, entry.tx_hash))  # synced with the rest's
        sent = Pending(opp.key, nonce, (entry.max_fee, entry.priority_fee), call.gas,
                       call.profit_cap_wei, [entry.tx_hash], {entry.tx_hash: entry.raw})
        return [self._follow(_Shot(0, intent, bound, self._simulate(intent)), sent)]

    async def _fire(self, intents: Sequence[TxIntent], base_fee: int, ticket: int,
                    presigned: Mapping[str, Presigned] | None = None, *,
                    sync: bool = True, alone_first: bool = True) -> list[Follow]:
        x = self._x
        claimed = x.journal.claim_all([(i.opportunity, i.members) for i in intents],
                                      x.chain.chain_id)
        outcomes: dict[int, Outcome] = {}
        abandon: list[str] = []
        shots: list[_Shot] = []
        for index, (intent, ok) in enumerate(zip(intents, claimed, strict=True)):
            opp = intent.opportunity
            if not ok:
                outcomes[index] = Outcome(opp.key, "duplicate")
                continue
            bound = x.bound(intent)
            if intent.spender is not None and not await x.capital.reserve(
                    opp.debt, opp.wallet_draw):
                abandon.append(opp.key)
                bound.info("not enough debt asset on hand; not sent", repay=opp.debt_to_cover)
                outcomes[index] = Outcome(opp.key, "no-capital",
                                          reason="debt asset balance is committed")
                continue
            if x.needs_approval(intent):  # its allowance went away (a dry-run fork was reset)
                self._release(intent)
                abandon.append(opp.key)
                outcomes[index] = Outcome(opp.key, "simulation-failed",
                                          reason="the debt token's allowance is not in place")
                continue
            shots.append(_Shot(index, intent, bound))
        x.journal.abandon_all(abandon)
        if not x.turns.ready(ticket):  # an earlier send is still going out: simulate now
            for shot in shots:
                shot.simulation = self._simulate(shot.intent)
        try:
            await x.turns.wait(ticket)
            shots = self._unfailed(shots, outcomes)
            results = await x.sender.send_all([self._unsigned(s.intent) for s in shots],
                                              base_fee, presigned, sync=sync,
                                              alone_first=alone_first)
        except BaseException:
            for shot in shots:
                self._release(shot.intent)
                _discard(shot.simulation)
            raise
        follows: dict[int, Follow] = {}
        abandon = []
        for shot, result in zip(shots, results, strict=True):
            key = shot.intent.opportunity.key
            if isinstance(result, Pending):
                if shot.simulation is None:
                    shot.simulation = self._simulate(shot.intent)
                follows[shot.index] = self._follow(shot, result)
                continue
            self._release(shot.intent)
            _discard(shot.simulation)
            if result is None:
                abandon.append(key)
                outcomes[shot.index] = Outcome(key, "fee-cap",
                                               reason="base fee above max_fee_per_gas")
            else:
                outcomes[shot.index] = x.refused(key, result, shot.bound)
        x.journal.abandon_all(abandon)
        return [follows[n] if n in follows else done(with_members(intents[n], outcomes[n]))
                for n in range(len(intents))]

    def _unfailed(self, shots: list[_Shot], outcomes: dict[int, Outcome]) -> list[_Shot]:
        """The shots whose simulation has not failed yet; the others are dropped unsent."""
        kept: list[_Shot] = []
        dropped: list[str] = []
        for shot in shots:
            # Valued before a rise heard, or its next block due (while it waited its turn).
            reason = _failed(shot.simulation) or self.staleness.stale(shot.intent.opportunity.block)
            if reason is None:
                kept.append(shot)
                continue
            key = shot.intent.opportunity.key
            self._release(shot.intent)
            dropped.append(key)
            shot.bound.info("simulation reverted; not sent", reason=reason)
            outcomes[shot.index] = Outcome(key, "simulation-failed", reason=reason)
        self._x.journal.abandon_all(dropped)
        return kept

    def _simulate(self, intent: TxIntent) -> asyncio.Task[int] | None:
        return self._x.simulate(intent, intent.opportunity.block or "latest")

    def _unsigned(self, intent: TxIntent) -> Unsigned:
        opp = intent.opportunity
        return Unsigned(
            intent.call.to, intent.call.data,
            gas_limit_ahead(intent, self.estimates.get(shape(intent), 0)), opp.key,
            # Fee bumps never spend more on gas than the opportunities are worth.
            profit_cap_wei=sum(o.net_profit + o.gas_cost for o in intent.opportunities),
            priority_fee=opp.priority_fee or None)

    def _release(self, intent: TxIntent) -> None:
        """Give back the capital an unsent intent reserved."""
        opp = intent.opportunity
        if intent.spender is not None:
            self._x.capital.release(opp.debt, opp.wallet_draw, spent=False)

    async def _follow(self, shot: _Shot, sent: Pending) -> Outcome:
        """A sent transaction to its outcome, its simulation judged alongside."""
        intent = dataclasses.replace(shot.intent, gas_limit=sent.gas_limit)
        opp = intent.opportunity
        judged = asyncio.ensure_future(self._judge(intent, shot.simulation, shot.bound, sent))
        self._judging.add(judged)
        judged.add_done_callback(self._judging.discard)
        try:
            outcome = await self._x.confirm(intent, sent, shot.bound)
            await judged
        except BaseException:
            judged.cancel()
            _discard(shot.simulation)
            raise
        finally:
            if intent.spender is not None:
                self._x.capital.release(opp.debt, opp.wallet_draw, spent=True)
        return with_members(intent, outcome)

    async def _judge(self, intent: TxIntent, simulation: asyncio.Task[int] | None,
                     bound: Logger, sent: Pending) -> None:
        """Log a simulation that fails after its send and have the send withdrawn (replaced
        by a no-op if it is still pending); learn the gas of one that passes."""
        if simulation is None:  # no allowance to simulate against (a dry-run fork reset)
            return
        try:
            estimate = await simulation
        except RpcError as exc:
            self.failed_after_send += 1
            bound.warning("simulation failed after the send", reason=exc.message)
            sent.withdraw = True  # the mining watch cancels it if it is not mined yet
            self._withdrawing.append(sent)
            return
        except Exception as exc:  # the node did not answer it: nothing to learn
            bound.info("simulation not answered", reason=str(exc))
            return
        kind = shape(intent)
        if estimate > max(self.estimates.get(kind, 0), self._learned.get(kind, 0)):
            (self._learned if self.hold_learned else self.estimates)[kind] = estimate

"""Send liquidations: claim → simulate → nonce → fees → sign → journal → send → receipt.

The only place that holds the key and signs (through its `Sender`). Every
intent is claimed in the journal first (so the same opportunity is never sent
twice, across restarts too) and the signed transaction is on disk before it is
broadcast. Success is judged from the receipt's logs (the target contract must
have emitted one), not from the status alone; the realized profit is measured
from the receipt's token transfers, valued like the ranking values them.

An `Executor` is wired once: everything it needs is a constructor argument.
It owns small parts, each in its own module: `Sender` (sender.py), `Capital`
(capital.py), `Allowances` (allowances.py), `Settlement` and `RecentReceipts`
(receipts.py), `Recovery` (recovery.py) and `Volley` (volley.py).

How simulation and sending meet is a setting (`execution.simulate`): "alongside" (the
default, `launch` → `Volley`) signs and broadcasts the sends of one dispatch together
without waiting for their simulations, which run at the same time and are logged and
learned from; "before" (`execute_before`) waits for each send's simulation (`lanes` at a
time) and drops the send when it fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, Literal

import structlog
from eth_account.signers.local import LocalAccount

from keeper.chain.http import HttpRpc, RpcError
from keeper.execution.ahead import adopt, ahead_log
from keeper.execution.allowances import Allowances
from keeper.execution.capital import Capital
from keeper.execution.fees import FeePolicy, Fees
from keeper.execution.journal import Journal
from keeper.execution.mining import MiningWatch, Pending
from keeper.execution.nonces import NonceManager
from keeper.execution.races import why_reverted
from keeper.execution.receipts import Appraiser, Logger, RecentReceipts, Settlement
from keeper.execution.recovery import Recovery, RecoveryJob, StillThere
from keeper.execution.sender import Presigned, Sender, SendRefused
from keeper.execution.turns import Turns
from keeper.execution.volley import Follow, Volley, gas_limit, with_members
from keeper.types import Outcome, TxIntent

__all__ = ["Executor", "Simulate"]

log = structlog.get_logger(__name__)

SIMULATION_LANES = 2  # intents simulated at once, "before" sending: more only queue at the node
Simulate = Literal["alongside", "before"]


class Executor:
    """Signs and sends intents for one account; one instance owns that account's nonces.

    `follow`: called with the engine's head before each balance read (a dry-run fork
    moves itself there). `flash_executor` and `quote_token`: liquidations may go through
    that flash executor, and a recovered transaction to it is valued by the quote token
    it paid out. `still_there(strategy, account)`: is the position still liquidatable at
    the newest head ranked? (fee bumps and re-evaluated orphans stop when it is not).
    """

    def __init__(
        self, chain: HttpRpc, account: LocalAccount, journal: Journal, fees: FeePolicy,
        appraise: Appraiser, *, follow: Callable[[int], Awaitable[None]] | None = None,
        lanes: int = SIMULATION_LANES, flash_executor: str | None = None,
        quote_token: str | None = None, still_there: StillThere | None = None,
        simulate: Simulate = "alongside",
    ) -> None:
        # Every field is Final: the parts are built from the same arguments, so changing
        # one afterwards would reach some parts and not others. Build a new executor.
        self.chain: Final = chain
        self.account: Final = account
        self.address: Final = account.address.lower()
        self.journal: Final = journal
        # An armed volley's first transaction is sent ahead of a SQLite journal's database
        # (keeper/execution/ahead.py); a shared one (`[ha]`, PostgreSQL) claims first.
        self.ahead: Final = ahead_log(journal) if type(journal) is Journal else None
        self.fees: Final = fees
        self.nonces: Final = NonceManager(self.address)
        self.watch: Final = MiningWatch(chain, self.address, journal, fees)
        self.sender: Final = Sender(chain, account, journal, fees, self.nonces)
        self.capital: Final = Capital(chain, self.address, follow=follow)
        recent = RecentReceipts()
        self.allowances: Final = Allowances(chain, self.sender, self.watch, recent)
        self.settlement: Final = Settlement(self.address, journal, appraise, recent)
        self.flash_executor: Final = flash_executor.lower() if flash_executor else None
        self.quote_token: Final = quote_token.lower() if quote_token else None
        self.still_there: Final = still_there
        self._recovery = Recovery(
            chain, self.sender, self.watch, settlement=self.settlement, recent=recent,
            allowances=self.allowances, still_there=still_there,
            flash_executor=self.flash_executor, quote_token=self.quote_token)
        self._lanes = asyncio.Semaphore(lanes)
        self.turns: Final = Turns()  # broadcasts go out in call order (volleys and lone sends)
        self.simulate_mode: Final = simulate
        self.volley: Final = Volley(self)

    async def start(self) -> None:
        """Resync the nonce with the chain's pending nonce and the journal."""

        async def pending() -> int:
            return int(await self.chain.call("eth_getTransactionCount",
                                              [self.address, "pending"]), 16)

        if self.ahead is not None:  # sent by an earlier run, never recorded: recorded now
            adopt(self.journal, self.ahead)
        await self.nonces.sync(pending, self.journal.max_nonce())
        unsigned = self.journal.abandon_unsigned()
        if unsigned:
            log.info("journal: intents planned but never signed by an earlier run are free again",
                     count=unsigned)

    def checkpoint(self) -> None:
        """Between steps: unsynced sends synced, the WAL checkpointed, the ahead file emptied."""
        self.sender.flush()
        self.journal.checkpoint()
        if self.ahead is not None:
            self.ahead.clear()

    def recovery(self, keys: set[str] | None = None, *, reorged: bool = False) -> list[RecoveryJob]:
        """(strategy, account, job) for every transaction an earlier run signed or sent and
        never saw mined (only those of `keys` when given): each job waits for it
        (re-sending its journaled bytes if it vanished) and records how it ended. Run
        them before sending anything new for those accounts; nothing is signed twice."""
        return self._recovery.jobs(keys, reorged=reorged)

    async def orphaned(self, head: int) -> list[RecoveryJob]:
        """Recovery jobs for receipts of ours that a reorg orphaned (`Recovery.orphaned`)."""
        return await self._recovery.orphaned(head)

    @property
    def busy(self) -> bool:
        """True while any liquidation of this executor holds capital (is in flight)."""
        return self.capital.busy

    @property
    def native_balance(self) -> int | None:
        """The sender's native balance at the last `available` read (None before one)."""
        return self.capital.native_balance

    async def available(self, tokens: Sequence[str], block: int | None = None) -> dict[str, int]:
        """Balance of each token not already committed to a liquidation in flight (one batch).

        `block` is the engine's head; it is passed to the `follow` hook first. The
        balances read here are what `execute` reserves capital from, without another read.
        """
        return await self.capital.available(tokens, block)

    async def look_allowances(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Learn which (token, spender) allowances are already in place (`Allowances.look`;
        no request once every pair is known), so their first send needs no approval step."""
        await self.allowances.look(pairs)

    def simulate(
        self, intent: TxIntent, block: int | str = "latest"
    ) -> asyncio.Task[int] | None:
        """Start the simulation of `intent` at `block` now; the task's result is its gas.

        A gas estimate reverts exactly where `eth_call` would, so it is the simulation.
        None while the debt token's allowance is not in place yet (`execute` approves
        first, then simulates).
        """
        if intent.spender is None:  # funds itself: nothing to approve
            return self._estimate(intent, block)
        since = self.allowances.since(intent.opportunity.debt, intent.spender)
        if since is None:
            return None
        if isinstance(block, int) and block < since:
            block = "latest"  # approved after the ranked block: its state lacks the allowance
        return self._estimate(intent, block)

    def _estimate(self, intent: TxIntent, block: int | str) -> asyncio.Task[int]:
        call = {"from": self.address, "to": intent.call.to, "data": intent.call.data}
        tag = hex(block) if isinstance(block, int) else block

        async def estimate() -> int:
            return int(await self.chain.call("eth_estimateGas", [call, tag]), 16)

        return asyncio.ensure_future(estimate())

    def needs_approval(self, intent: TxIntent) -> bool:
        """The intent pays with a token whose allowance to its spender is not in place."""
        spender = intent.spender
        return spender is not None and self.allowances.since(
            intent.opportunity.debt, spender) is None

    def bound(self, intent: TxIntent) -> Logger:
        """The log context of one intent's lines."""
        opp = intent.opportunity
        bound: Logger = log.bind(strategy=opp.strategy, account=opp.account, key=opp.key)
        if intent.members:
            bound = bound.bind(batch=[m.key for m in intent.members])
        return bound

    async def launch(
        self, intents: Sequence[TxIntent], base_fee: int,
        presigned: Mapping[str, Presigned] | None = None,
    ) -> list[Follow]:
        """Send `intents` (best first; nonce order is this order) the way `simulate` says,
        and return one coroutine per intent, in order, that follows it to its outcome: run
        each as a task. "alongside": claimed, signed (or `presigned`: `Volley.presign`),
        journaled and broadcast together before this returns (`Volley`); "before": each
        one's coroutine does all of it."""
        if self.simulate_mode == "before":
            return [self.execute_before(i, base_fee) for i in intents]
        return await self.volley.launch(intents, base_fee, presigned)

    async def execute(self, intent: TxIntent, base_fee: int) -> Outcome:
        """Claim, reserve capital, simulate, sign, journal, send and confirm one intent, the
        way `simulate` says (`launch` of this intent alone)."""
        if self.simulate_mode == "before":
            return await self.execute_before(intent, base_fee)
        [follow] = await self.volley.launch([intent], base_fee)
        return await follow

    async def execute_before(self, intent: TxIntent, base_fee: int) -> Outcome:
        """Claim, reserve capital, simulate, then sign, journal, send and confirm one intent.

        The claim-to-simulation part runs in one of `lanes` slots, taken in call order:
        a caller that starts intents best first gets the best one simulated and sent
        first, instead of every simulation of a crash queueing at the node together.
        """
        return with_members(intent, await self._execute(intent, base_fee))

    async def _execute(self, intent: TxIntent, base_fee: int) -> Outcome:
        opp = intent.opportunity
        bound = self.bound(intent)
        ticket = self.turns.take()
        try:
            async with self._lanes:
                ready = await self._prepare(intent, base_fee, bound)
            if isinstance(ready, Outcome):
                return ready
            try:
                # Broadcast in call order: the nonce order is then the rank order, the order
                # the ranking valued them in (each one's swap on the pool the previous left).
                await self.turns.wait(ticket)
                return await self._send_and_confirm(ready, base_fee, bound,
                                                    sent_hook=lambda: self.turns.done(ticket))
            finally:
                if intent.spender is not None:
                    self.capital.release(opp.debt, opp.wallet_draw, spent=True)
        finally:
            self.turns.done(ticket)

    async def _prepare(self, intent: TxIntent, base_fee: int, bound: Logger) -> TxIntent | Outcome:
        """The intent with its gas limit, capital reserved; or why it is not sent."""
        opp = intent.opportunity
        if intent.members:
            claimed = self.journal.claim_batch(opp, intent.members, self.chain.chain_id)
        else:
            claimed = self.journal.claim(opp, self.chain.chain_id)
        if not claimed:
            return Outcome(opp.key, "duplicate")
        spender = intent.spender
        # Capital first (a local check): the simulation runs at the ranked block, before
        # this account's other sends spent their share of the balance. A call that funds
        # itself (spender None) needs none.
        if spender is not None and not await self.capital.reserve(opp.debt, opp.wallet_draw):
            self.journal.mark_abandoned(opp.key)
            bound.info("not enough debt asset on hand; not sent", repay=opp.debt_to_cover)
            return Outcome(opp.key, "no-capital", reason="debt asset balance is committed")
        try:
            simulation = self.simulate(intent, opp.block or "latest")
            if simulation is None:
                assert spender is not None
                # Approving mines a transaction first: simulate after it, at the new head.
                await self.allowances.ensure(opp.debt, spender, opp.debt_to_cover, base_fee)
                simulation = self._estimate(intent, "latest")
            estimate = await simulation
        except RpcError as exc:
            if spender is not None:
                self.capital.release(opp.debt, opp.wallet_draw, spent=False)
            self.journal.mark_abandoned(opp.key)
            bound.info("simulation reverted; not sent", reason=exc.message)
            return Outcome(opp.key, "simulation-failed", reason=exc.message)
        except BaseException:
            if spender is not None:
                self.capital.release(opp.debt, opp.wallet_draw, spent=False)
            raise
        return dataclasses.replace(intent, gas_limit=gas_limit(intent, estimate))

    async def _send_and_confirm(
        self, intent: TxIntent, base_fee: int, bound: Logger,
        sent_hook: Callable[[], None] | None = None,
    ) -> Outcome:
        opp = intent.opportunity
        # Fee bumps never spend more on gas than the opportunities are worth.
        cap = sum(o.net_profit + o.gas_cost for o in intent.opportunities)
        try:
            sent = await self.sender.send(
                intent.call.to, intent.call.data, intent.gas_limit, base_fee, key=opp.key,
                profit_cap_wei=cap, priority_fee=opp.priority_fee or None,
            )
        except RpcError as exc:
            return self.refused(opp.key, exc, bound)
        if sent is None:
            self.journal.mark_abandoned(opp.key)
            return Outcome(opp.key, "fee-cap", reason="base fee above max_fee_per_gas")
        if sent_hook is not None:
            sent_hook()
        return await self.confirm(intent, sent, bound)

    def refused(self, key: str, exc: RpcError, bound: Logger) -> Outcome:
        """The node refused the send of intent `key`: dropped (the next block may claim it
        again), logged, reported."""
        self._drop_unsent(key)
        if isinstance(exc, SendRefused):
            level = bound.error if exc.refusal == "funds" else bound.warning
            level("send refused by the node", refusal=exc.refusal, reason=exc.message)
            return Outcome(key, "send-failed", reason=f"{exc.refusal}: {exc.message}")
        bound.warning("send refused by the node", reason=exc.message)
        return Outcome(key, "send-failed", reason=exc.message)

    async def confirm(self, intent: TxIntent, sent: Pending, bound: Logger) -> Outcome:
        """A sent intent followed to its receipt (fee bumps, re-sends), and its outcome."""
        opp = intent.opportunity
        bound = bound.bind(tx=sent.hashes[0])
        bound.info("liquidation sent", net_profit=opp.net_profit, repay=opp.debt_to_cover)

        async def sign(nonce: int, fees: Fees) -> tuple[str, str]:
            return await self.sender.sign(intent.call.to, intent.call.data, intent.gas_limit,
                                          nonce, fees)

        def worth() -> bool:  # a batch reverts whole if one of its positions is gone
            there = self.still_there
            return there is None or all(there(o.strategy, o.account)
                                        for o in intent.opportunities)

        mined = await self.watch.mined(sent, sign, worth, self.sender.cancel)
        self.nonces.confirm(sent.nonce)  # used either way: mined or taken
        if mined.receipt is None or mined.tx_hash is None:
            return self.settlement.lost(opp.key, sent.hashes, sent.nonce, bound)
        if mined.tx_hash in sent.cancels:
            return self.settlement.cancelled(opp.key, mined.tx_hash, mined.receipt, bound)
        quote = opp.quote_token if intent.spender is None else None
        bound = bound.bind(tx=mined.tx_hash)
        outcome = self.settlement.settle(
            opp.key, mined.tx_hash, mined.receipt, collateral=opp.collateral, debt=opp.debt,
            quote=quote, bound=bound, call_to=intent.call.to)
        if outcome.status != "reverted":
            return outcome
        return await why_reverted(self.chain, self.address, intent, outcome,
                                  receipt=mined.receipt, bound=bound)

    def _drop_unsent(self, key: str) -> None:
        record = self.journal.get(key)
        if record is not None:
            for tx in record.transactions:
                if tx.status in ("signed", "sent"):
                    self.journal.mark_dropped(key, tx.tx_hash)


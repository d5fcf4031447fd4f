"""Send one liquidation: claim → simulate → nonce → fees → sign → journal → send → receipt.

The only place that holds the key and signs. Every intent is claimed in the
journal first (so the same opportunity is never sent twice, across restarts
too) and the signed transaction is on disk before it is broadcast. Success is
judged from the receipt's logs (the target contract must have emitted one), not
from the status alone; the realized profit is measured from the sender's
token balances before and after, valued like the ranking values them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from eth_abi.abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from keeper.chain.http import HttpRpc, RpcError
from keeper.execution.fees import FeePolicy, Fees
from keeper.execution.journal import IntentRecord, Journal, TxRecord
from keeper.execution.mining import MiningWatch, Pending, SendRefusal, classify_send_error
from keeper.execution.nonces import NonceManager
from keeper.types import TxIntent

log = structlog.get_logger(__name__)

BALANCE_OF = "0x70a08231"
ALLOWANCE = "0xdd62ed3e"
APPROVE = "0x095ea7b3"
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
MAX_UINT = 2**256 - 1
APPROVE_GAS = 100_000
CANCEL_GAS = 21_000  # a zero-value transfer to itself: frees a nonce, does nothing
RECEIPT_TIMEOUT = 120.0
FINALITY_DEPTH = 64  # receipts this many blocks deep are final: no longer checked for reorgs
GAS_MARGIN_PERCENT = 130
SIMULATION_LANES = 2  # intents simulated at once: more only queue at the node

Status = Literal[
    "confirmed", "reverted", "duplicate", "simulation-failed", "fee-cap", "no-capital",
    "send-failed", "lost", "error",
]
# (collateral token, debt token, collateral received, debt paid, gas paid in wei) -> quote wei
Appraiser = Callable[[str, str, int, int, int], int]


class SendRefused(RpcError):
    """`eth_sendRawTransaction` was refused; `refusal` says how (`classify_send_error`)."""

    def __init__(self, refusal: SendRefusal, method: str, message: str) -> None:
        super().__init__(method, {"code": None, "message": message})
        self.refusal = refusal


@dataclass(frozen=True)
class Outcome:
    key: str
    status: Status
    tx_hash: str = ""
    block: int = 0
    gas_used: int = 0
    realized_profit: int = 0
    reason: str = ""
    gas_paid: int = 0  # native wei
    members: tuple[str, ...] = ()  # keys of the batch this transaction also carried


def _addr(word: str) -> bytes:
    return bytes.fromhex(word.removeprefix("0x").rjust(40, "0"))


class Executor:
    """Signs and sends intents for one account; one instance owns that account's nonces."""

    def __init__(
        self,
        chain: HttpRpc,
        account: LocalAccount,
        journal: Journal,
        fees: FeePolicy,
        appraise: Appraiser,
        *,
        follow: Callable[[int], Awaitable[None]] | None = None,
        lanes: int = SIMULATION_LANES,
    ) -> None:
        self.chain = chain
        # Called with the engine's head before each evaluation's balance read: a dry-run
        # fork uses it to move itself to that block while nothing is in flight on it.
        self._follow = follow
        self.account = account
        self.address = account.address.lower()
        self.journal = journal
        self.fees = fees
        self.nonces = NonceManager(self.address)
        self.watch = MiningWatch(chain, self.address, journal, fees)
        # Set by the engine when liquidations go through a flash executor: a recovered
        # transaction to it is valued by the quote token it paid out.
        self.flash_executor: str | None = None
        self.quote_token: str | None = None
        # Set by the engine: is the opportunity still there (for fee bumps)?
        self.still_there: Callable[[str, str], bool] | None = None  # (strategy, account)
        self._appraise = appraise
        # (token, spender) -> the block from which the allowance is known to be in place
        self._approved: dict[tuple[str, str], int] = {}
        self._young: dict[str, tuple[int, str]] = {}  # tx hash -> (block, block hash) mined
        self._approvals: dict[str, tuple[str, str, str]] = {}  # hash -> (token, spender, raw)
        self._approving = asyncio.Lock()
        self._committed: dict[str, int] = {}
        self._balances: dict[str, int] = {}
        self.native_balance: int | None = None  # read with the token balances
        self._lanes = asyncio.Semaphore(lanes)
        self._tickets = itertools.count()  # call order of `execute`
        self._turn = 0  # the lowest ticket not yet broadcast nor given up
        self._finished: set[int] = set()
        self._turn_moved = asyncio.Event()

    async def start(self) -> None:
        """Resync the nonce with the chain's pending nonce and the journal."""

        async def pending() -> int:
            return int(await self.chain.call("eth_getTransactionCount",
                                              [self.address, "pending"]), 16)

        await self.nonces.sync(pending, self.journal.max_nonce())
        unsigned = self.journal.abandon_unsigned()
        if unsigned:
            log.info("journal: intents planned but never signed by an earlier run are free again",
                     count=unsigned)

    async def _sign(
        self, to: str, data: str, gas: int, nonce: int, fees: Fees
    ) -> tuple[str, str]:
        tx: dict[str, Any] = {
            "type": 2, "chainId": self.chain.chain_id, "nonce": nonce,
            "to": to_checksum_address(to),
            "data": data, "value": 0, "gas": gas,
            "maxFeePerGas": fees[0], "maxPriorityFeePerGas": fees[1],
        }
        signed = self.account.sign_transaction(tx)
        return "0x" + bytes(signed.hash).hex(), "0x" + bytes(signed.raw_transaction).hex()

    async def _sign_and_send(
        self, to: str, data: str, gas: int, base_fee: int, *, key: str | None,
        profit_cap_wei: int = 0,
    ) -> Pending | None:
        fees = self.fees.fees(base_fee)
        if fees is None:
            return None
        nonce = await self.nonces.reserve()
        tx_hash, raw = await self._sign(to, data, gas, nonce, fees)
        if key is not None:
            self.journal.record_signed(key, nonce, tx_hash, raw, fees[0], fees[1])
        try:
            await self.chain.call("eth_sendRawTransaction", [raw])
        except RpcError as exc:
            refusal = classify_send_error(exc.message)
            if refusal != "known":  # "already known": it is in the pool, as if just sent
                if refusal == "nonce-low":  # used: never hand it out again
                    chain_nonce = int(await self.chain.call(
                        "eth_getTransactionCount", [self.address, "pending"]), 16)
                    self.nonces.confirm(nonce)
                    await self.nonces.skip_to(chain_nonce)
                else:
                    self.nonces.release(nonce)
                raise SendRefused(refusal, exc.method, exc.message) from None
        if key is not None:
            self.journal.mark_sent(key, tx_hash)
        return Pending(key, nonce, fees, gas, profit_cap_wei, [tx_hash], {tx_hash: raw})

    async def receipt(self, tx_hash: str) -> dict[str, Any]:
        """Poll for the receipt of a transaction that is not watched otherwise."""
        deadline = time.monotonic() + RECEIPT_TIMEOUT
        while True:
            found = await self.chain.call("eth_getTransactionReceipt", [tx_hash])
            if found is not None:
                return dict(found)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no receipt for {tx_hash} after {RECEIPT_TIMEOUT:.0f} s")
            await asyncio.sleep(0.05)

    def recovery(
        self, keys: set[str] | None = None, *, reorged: bool = False
    ) -> list[tuple[str, str, Coroutine[Any, Any, Outcome]]]:
        """(strategy, account, job) for every transaction an earlier run signed or sent and
        never saw mined (only those of `keys` when given): each job waits for it
        (re-sending its journaled bytes if it vanished) and records how it ended. Run
        them before sending anything new for those accounts; nothing is signed twice.

        `reorged`: they were mined in blocks a reorg orphaned. They are re-evaluated, not
        blindly resent: one that vanished while its position is no longer liquidatable
        has its nonce taken by a zero-value self-transfer instead.
        """
        by_nonce: dict[int, list[TxRecord]] = {}
        for tx in self.journal.pending():
            if keys is None or tx.intent_key in keys:
                by_nonce.setdefault(tx.nonce, []).append(tx)
        jobs = []
        for nonce, versions in sorted(by_nonce.items()):
            key = versions[-1].intent_key
            record = self.journal.get(key)
            if record is None:
                continue
            newest = versions[-1]
            # Its call is not at hand, so it is never bumped; the only replacement possible
            # is the no-op cancel of a re-evaluated orphan (its gas, within what it was worth).
            cancel_gas, cap = (CANCEL_GAS, max(record.expected_profit, 0)) if reorged else (0, 0)
            pending = Pending(key, nonce, (newest.max_fee, newest.priority_fee), cancel_gas, cap,
                              [v.tx_hash for v in versions],
                              {v.tx_hash: v.raw_tx for v in versions})
            jobs.append((record.strategy, record.account,
                         self._recover(record, pending, reorged=reorged)))
        return jobs

    async def orphaned(self, head: int) -> list[tuple[str, str, Coroutine[Any, Any, Outcome]]]:
        """Receipts of ours less than `FINALITY_DEPTH` blocks old whose block is no longer on
        the chain (one batch of headers, none when there are no young receipts): they go
        back to pending in the journal, and a `recovery` job re-evaluates each."""
        for tx_hash, (block, _) in list(self._young.items()):
            if block <= head - FINALITY_DEPTH:
                del self._young[tx_hash]
                self._approvals.pop(tx_hash, None)
        if not self._young:
            return []
        numbers = sorted({block for block, _ in self._young.values()})
        answers = await self.chain.batch(
            [("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        canonical = {n: str(raw["hash"]).lower() for n, raw in zip(numbers, answers, strict=True)
                     if raw is not None}  # None: a node behind us; ask again next block
        gone = [tx_hash for tx_hash, (block, block_hash) in self._young.items()
                if block in canonical and canonical[block] != block_hash]
        if not gone:
            return []
        for tx_hash in gone:
            del self._young[tx_hash]
        await self._restore_approvals(gone)
        orphaned = self.journal.unmine(gone)
        for tx in orphaned:
            log.warning("reorg: a mined transaction of ours was orphaned; re-evaluating it",
                        key=tx.intent_key, tx=tx.tx_hash, nonce=tx.nonce)
        return self.recovery({tx.intent_key for tx in orphaned}, reorged=True)

    async def _recover(
        self, record: IntentRecord, pending: Pending, *, reorged: bool = False
    ) -> Outcome:
        bound = log.bind(strategy=record.strategy, account=record.account, key=record.key)
        bound.info("recovering a transaction of an earlier run" if not reorged else
                   "re-evaluating a transaction whose block was orphaned",
                   nonce=pending.nonce, tx=pending.hashes[-1])
        worth = cancel = None
        if reorged and self.still_there is not None:
            there = self.still_there

            def worth() -> bool:
                return there(record.strategy, record.account)

            async def cancel(nonce: int, fees: Fees) -> tuple[str, str]:
                return await self._sign(self.address, "0x", CANCEL_GAS, nonce, fees)

        mined = await self.watch.mined(pending, sign=None, worth=worth, cancel=cancel)
        if mined.receipt is None or mined.tx_hash is None:
            for tx_hash in pending.hashes:
                self.journal.mark_dropped(record.key, tx_hash)
            bound.warning("its nonce went to another transaction", nonce=pending.nonce)
            return Outcome(record.key, "lost", reason="nonce consumed by another transaction")
        self.nonces.confirm(pending.nonce)
        if mined.tx_hash in pending.cancels:
            return self._cancelled(record.key, mined.tx_hash, mined.receipt, bound)
        to = str(mined.receipt.get("to") or "").lower()
        flashed = self.flash_executor is not None and to == self.flash_executor
        outcome = self._settle(record.key, mined.tx_hash, mined.receipt,
                               collateral=record.collateral, debt=record.debt,
                               quote=self.quote_token if flashed else None, bound=bound)
        return dataclasses.replace(outcome, members=tuple(self.journal.members(record.key)))

    async def ensure_allowance(self, token: str, spender: str, amount: int, base_fee: int) -> None:
        """Approve the protocol's own contract (never an arbitrary address) once per token."""
        if (token, spender) in self._approved:
            return
        async with self._approving:  # concurrent sends must not approve twice
            if (token, spender) not in self._approved:
                await self._approve(token, spender, amount, base_fee)

    async def _approve(self, token: str, spender: str, amount: int, base_fee: int) -> None:
        query = ALLOWANCE + encode(["address", "address"], [self.address, spender]).hex()
        allowance = int(await self.chain.eth_call(token, query), 16)
        if allowance < amount:
            data = APPROVE + encode(["address", "uint256"], [spender, MAX_UINT]).hex()
            sent = await self._sign_and_send(token, data, APPROVE_GAS, base_fee, key=None)
            if sent is None:
                raise RuntimeError("base fee above max_fee_per_gas: cannot approve")
            mined = await self.watch.mined(sent, sign=None)
            if mined.receipt is None:
                raise RuntimeError(f"approve of {token}: its nonce went to another transaction")
            receipt = mined.receipt
            self.nonces.confirm(sent.nonce)
            if int(receipt["status"], 16) != 1:
                raise RuntimeError(f"approve of {token} for {spender} reverted")
            self._approved[(token, spender)] = int(receipt["blockNumber"], 16)
            tx_hash = mined.tx_hash or sent.hashes[-1]
            self._mined_in(tx_hash, receipt)
            self._approvals[tx_hash] = (token, spender, sent.raws[tx_hash])
        else:
            self._approved[(token, spender)] = 0

    def _token_flows(self, receipt: dict[str, Any], collateral: str, debt: str) -> tuple[int, int]:
        """(collateral received, debt paid) by this account, from the receipt's Transfer logs.

        Read from the transaction's own logs, so concurrent sends cannot blur it.
        """
        received = paid = 0
        for token, source, target, amount in self._transfers(receipt):
            if token == collateral and target == self.address:
                received += amount
            if token == debt and source == self.address:
                paid += amount
        return received, paid

    def _received(self, receipt: dict[str, Any], token: str) -> int:
        """What this account received of `token` in the receipt's Transfer logs."""
        return sum(amount for t, _source, target, amount in self._transfers(receipt)
                   if t == token and target == self.address)

    @staticmethod
    def _transfers(receipt: dict[str, Any]) -> list[tuple[str, str, str, int]]:
        """(token, from, to, amount) of every ERC-20 Transfer log, addresses lower-case."""
        out = []
        for entry in receipt["logs"]:
            topics = [t.lower() for t in entry["topics"]]
            if len(topics) != 3 or topics[0] != TRANSFER_TOPIC:
                continue
            out.append((entry["address"].lower(), "0x" + topics[1][-40:], "0x" + topics[2][-40:],
                        int(entry["data"], 16)))
        return out

    @property
    def busy(self) -> bool:
        """True while any liquidation of this executor holds capital (is in flight)."""
        return any(self._committed.values())

    async def available(self, tokens: Sequence[str], block: int | None = None) -> dict[str, int]:
        """Balance of each token not already committed to a liquidation in flight (one batch).

        `block` is the engine's head; it is passed to the `follow` hook first. The
        balances read here are what `execute` reserves capital from, without another read.
        """
        if self._follow is not None and block is not None:
            await self._follow(block)
        data = BALANCE_OF + encode(["address"], [self.address]).hex()
        answers = await self.chain.batch(
            [("eth_call", [{"to": t, "data": data}, "latest"]) for t in tokens]
            + [("eth_getBalance", [self.address, "latest"])]
        )
        self.native_balance = int(answers.pop(), 16)  # for the balance-floor breaker
        self._balances.update({t: int(a, 16) for t, a in zip(tokens, answers, strict=True)})
        return {t: max(0, self._balances[t] - self._committed.get(t, 0)) for t in tokens}

    async def _capital_for(self, token: str, amount: int) -> bool:
        """Reserve `amount` of the sender's `token` for one send (concurrent sends share it).

        Reserved against the balance of the last `available` read (read once per block
        with candidates): a send is released from `_committed` only after its receipt,
        so a balance read later already reflects it, and an earlier one errs on the
        side of holding back. Check and reserve run without an await in between.
        """
        if token not in self._balances:
            await self.available([token])
        if self._balances[token] - self._committed.get(token, 0) < amount:
            return False
        self._committed[token] = self._committed.get(token, 0) + amount
        return True

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
        since = self._approved.get((intent.opportunity.debt, intent.spender))
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

    async def execute(self, intent: TxIntent, base_fee: int) -> Outcome:
        """Claim, reserve capital, simulate, then sign, journal, send and confirm one intent.

        The claim-to-simulation part runs in one of `lanes` slots, taken in call order:
        a caller that starts intents best first gets the best one simulated and sent
        first, instead of every simulation of a crash queueing at the node together.
        """
        outcome = await self._execute(intent, base_fee)
        if intent.members:
            outcome = dataclasses.replace(outcome, members=tuple(m.key for m in intent.members))
        return outcome

    async def _execute(self, intent: TxIntent, base_fee: int) -> Outcome:
        opp = intent.opportunity
        bound = log.bind(strategy=opp.strategy, account=opp.account, key=opp.key)
        if intent.members:
            bound = bound.bind(batch=[m.key for m in intent.members])
        ticket = next(self._tickets)
        try:
            async with self._lanes:
                ready = await self._prepare(intent, base_fee, bound)
            if isinstance(ready, Outcome):
                return ready
            try:
                # Broadcast in call order: the nonce order is then the rank order, the order
                # the ranking valued them in (each one's swap on the pool the previous left).
                await self._wait_turn(ticket)
                return await self._send_and_confirm(ready, base_fee, bound,
                                                    sent_hook=lambda: self._done(ticket))
            finally:
                if intent.spender is not None:
                    self._release(opp.debt, opp.debt_to_cover, spent=True)
        finally:
            self._done(ticket)

    async def _wait_turn(self, ticket: int) -> None:
        while self._turn < ticket:
            await self._turn_moved.wait()

    def _done(self, ticket: int) -> None:
        """Ticket `ticket` was broadcast (or will never be): later ones may go."""
        if ticket < self._turn or ticket in self._finished:
            return
        self._finished.add(ticket)
        while self._turn in self._finished:
            self._finished.discard(self._turn)
            self._turn += 1
        moved, self._turn_moved = self._turn_moved, asyncio.Event()
        moved.set()  # wakes every waiter; each checks the turn again on the new event

    async def _prepare(
        self, intent: TxIntent, base_fee: int, bound: structlog.typing.FilteringBoundLogger
    ) -> TxIntent | Outcome:
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
        if spender is not None and not await self._capital_for(opp.debt, opp.debt_to_cover):
            self.journal.mark_abandoned(opp.key)
            bound.info("not enough debt asset on hand; not sent", repay=opp.debt_to_cover)
            return Outcome(opp.key, "no-capital", reason="debt asset balance is committed")
        try:
            simulation = self.simulate(intent, opp.block or "latest")
            if simulation is None:
                assert spender is not None
                # Approving mines a transaction first: simulate after it, at the new head.
                await self.ensure_allowance(opp.debt, spender, opp.debt_to_cover, base_fee)
                simulation = self._estimate(intent, "latest")
            estimate = await simulation
        except RpcError as exc:
            if spender is not None:
                self._release(opp.debt, opp.debt_to_cover, spent=False)
            self.journal.mark_abandoned(opp.key)
            bound.info("simulation reverted; not sent", reason=exc.message)
            return Outcome(opp.key, "simulation-failed", reason=exc.message)
        except BaseException:
            if spender is not None:
                self._release(opp.debt, opp.debt_to_cover, spent=False)
            raise
        # Nested calls get 63/64 of the gas left: a tight limit fails deep inside, so keep
        # a margin over the estimate (and never go below the strategy's own figure).
        gas_limit = max(intent.gas_limit, estimate * GAS_MARGIN_PERCENT // 100)
        return dataclasses.replace(intent, gas_limit=gas_limit)

    def _release(self, token: str, amount: int, *, spent: bool) -> None:
        self._committed[token] -= amount
        if spent:  # until the next `available` read, assume it was all paid
            self._balances[token] -= amount

    async def _send_and_confirm(
        self, intent: TxIntent, base_fee: int, bound: structlog.typing.FilteringBoundLogger,
        sent_hook: Callable[[], None] | None = None,
    ) -> Outcome:
        opp = intent.opportunity
        # Fee bumps never spend more on gas than the opportunities are worth.
        cap = sum(o.net_profit + o.gas_cost for o in intent.opportunities)
        try:
            sent = await self._sign_and_send(
                intent.call.to, intent.call.data, intent.gas_limit, base_fee, key=opp.key,
                profit_cap_wei=cap,
            )
        except SendRefused as exc:
            self._drop_unsent(opp.key)  # dropped: the next block may claim it again
            level = bound.error if exc.refusal == "funds" else bound.warning
            level("send refused by the node", refusal=exc.refusal, reason=exc.message)
            return Outcome(opp.key, "send-failed", reason=f"{exc.refusal}: {exc.message}")
        except RpcError as exc:
            self._drop_unsent(opp.key)
            bound.warning("send refused by the node", reason=exc.message)
            return Outcome(opp.key, "send-failed", reason=exc.message)
        if sent is None:
            self.journal.mark_abandoned(opp.key)
            return Outcome(opp.key, "fee-cap", reason="base fee above max_fee_per_gas")
        if sent_hook is not None:
            sent_hook()
        bound = bound.bind(tx=sent.hashes[0])
        bound.info("liquidation sent", net_profit=opp.net_profit, repay=opp.debt_to_cover)

        async def sign(nonce: int, fees: Fees) -> tuple[str, str]:
            return await self._sign(intent.call.to, intent.call.data, intent.gas_limit,
                                    nonce, fees)

        def worth() -> bool:  # a batch reverts whole if one of its positions is gone
            there = self.still_there
            return there is None or all(there(o.strategy, o.account)
                                        for o in intent.opportunities)

        async def cancel(nonce: int, fees: Fees) -> tuple[str, str]:
            return await self._sign(self.address, "0x", CANCEL_GAS, nonce, fees)

        mined = await self.watch.mined(sent, sign, worth, cancel)
        if mined.receipt is None or mined.tx_hash is None:
            for tx_hash in sent.hashes:
                self.journal.mark_dropped(opp.key, tx_hash)
            bound.warning("its nonce went to another transaction", nonce=sent.nonce)
            return Outcome(opp.key, "lost", reason="nonce consumed by another transaction")
        self.nonces.confirm(sent.nonce)
        if mined.tx_hash in sent.cancels:
            return self._cancelled(opp.key, mined.tx_hash, mined.receipt, bound)
        quote = opp.quote_token if intent.spender is None else None
        return self._settle(opp.key, mined.tx_hash, mined.receipt, collateral=opp.collateral,
                            debt=opp.debt, quote=quote, bound=bound.bind(tx=mined.tx_hash),
                            call_to=intent.call.to)

    def _cancelled(
        self, key: str, tx_hash: str, receipt: dict[str, Any],
        bound: structlog.typing.FilteringBoundLogger,
    ) -> Outcome:
        """Our no-op took the nonce: the liquidation is lost, and the gas it cost recorded."""
        gas_used = int(receipt["gasUsed"], 16)
        gas_paid = gas_used * int(receipt["effectiveGasPrice"], 16)
        self.journal.mark_reverted(key, tx_hash, int(receipt["blockNumber"], 16), gas_used,
                                   -gas_paid)
        self._mined_in(tx_hash, receipt)
        bound.info("cancelled: the opportunity was gone", tx=tx_hash)
        return Outcome(key, "lost", tx_hash, reason="cancelled: no longer there",
                       gas_paid=gas_paid)

    def _settle(
        self, key: str, tx_hash: str, receipt: dict[str, Any], *, collateral: str, debt: str,
        quote: str | None, bound: structlog.typing.FilteringBoundLogger,
        call_to: str | None = None,
    ) -> Outcome:
        """Judge a receipt (success needs a log of the called contract), journal it, value it.

        `quote`: the profit arrives in that token (a flash executor); else it is valued
        from the collateral received and the debt paid.
        """
        block = int(receipt["blockNumber"], 16)
        gas_used = int(receipt["gasUsed"], 16)
        gas_paid = gas_used * int(receipt["effectiveGasPrice"], 16)
        self._mined_in(tx_hash, receipt)
        target = (call_to or str(receipt.get("to") or "")).lower()
        emitted = any(entry["address"].lower() == target for entry in receipt["logs"])
        if int(receipt["status"], 16) == 1 and emitted:
            if quote is not None:
                realized = self._received(receipt, quote) - gas_paid
            else:
                received, paid = self._token_flows(receipt, collateral, debt)
                realized = self._appraise(collateral, debt, received, paid, gas_paid)
            self.journal.mark_confirmed(key, tx_hash, block, gas_used, realized)
            bound.info("liquidation confirmed", block=block, realized_profit=realized)
            return Outcome(key, "confirmed", tx_hash, block, gas_used, realized,
                           gas_paid=gas_paid)
        self.journal.mark_reverted(key, tx_hash, block, gas_used, -gas_paid)
        bound.warning("liquidation reverted", block=block)
        return Outcome(key, "reverted", tx_hash, block, gas_used, -gas_paid, gas_paid=gas_paid)

    async def _restore_approvals(self, orphaned: Sequence[str]) -> None:
        """An orphaned approval is sent again as it was signed (an approval is harmless to
        repeat, and the liquidations after it in nonce order need its nonce filled); until
        it is mined again, the allowance is not assumed."""
        for tx_hash in orphaned:
            if tx_hash not in self._approvals:
                continue
            token, spender, raw = self._approvals.pop(tx_hash)
            self._approved.pop((token, spender), None)
            log.warning("reorg: our approval was orphaned; sending it again", tx=tx_hash,
                        token=token, spender=spender)
            try:
                await self.chain.call("eth_sendRawTransaction", [raw])
            except RpcError as exc:  # already back in the pool, or its nonce went elsewhere
                log.info("re-sending the orphaned approval was refused", reason=exc.message)

    def _mined_in(self, tx_hash: str, receipt: dict[str, Any]) -> None:
        """Remember where it was mined until that is final (`orphaned` checks it)."""
        self._young[tx_hash] = (int(receipt["blockNumber"], 16), str(receipt["blockHash"]).lower())

    def _drop_unsent(self, key: str) -> None:
        record = self.journal.get(key)
        if record is not None:
            for tx in record.transactions:
                if tx.status in ("signed", "sent"):
                    self.journal.mark_dropped(key, tx.tx_hash)

"""Submission through private bundles to block builders (`execution.submitter = "bundle"`).

The public path (`Volley`) broadcasts with `eth_sendRawTransaction`; this one puts each
liquidation's signed transaction in a bundle of its own, sent to every configured builder
(keeper/execution/builders.py) for the next block and the `blocks - 1` after it, and
follows it:

- **included**: its receipt is settled like any other (confirmed, or reverted and then
  judged as a lost race or not), and the bid it paid `block.coinbase` is journaled;
- **outbid**: the last target block passed without it and another transaction touched the
  account (a rival's liquidation, the borrower's repay): `lost`, with the winner, counted
  in `keeper_races_lost_total`, never by a breaker;
- **expired**: neither, and the position is still liquidatable at the head: the same
  signed bytes are sent again for the next `blocks` blocks (at most `max_rounds` times,
  while its max fee still covers the base fee); no longer liquidatable: `lost` to the
  market; out of rounds: `send-failed` (the opportunity may be claimed again).

Exactly once: the bytes are signed once, journaled with the bundle's last target block
before any bundle leaves (`BundleBook`), and the last target block is raised on disk
before every resubmission. However many builders and blocks hold the transaction, it has
one hash and one nonce, so it is mined at most once and confirmed once. The nonce is given
back (`NonceManager.reissue`) only after the last target block is mined without it and
the chain's nonce is still below it: while any bundle can land, no other transaction is
signed for that nonce, across restarts too (`recovery`). Each transaction holds its nonce
lane (keeper/execution/lanes.py) until it ends, so later liquidations take other lanes.

A backrun (`Backrun`: a pending oracle transaction, or a hinted private one) puts every
liquidation of the dispatch right behind it, in one bundle (a builder includes at most one
bundle holding a given transaction): `eth_sendBundle [oracle raw, ours...]`, or
`mev_sendBundle` with the body `[{hash}, {tx: ours}...]` (keeper/execution/bundles_send.py).
A resubmission sends each of ours alone (by then the oracle update is mined or gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from hexbytes import HexBytes

from keeper.errors import ConfigError
from keeper.execution.builders import BuilderClient
from keeper.execution.bundles_journal import BundleBook, BundledTx
from keeper.execution.bundles_send import Backrun, BundleSender, Live
from keeper.execution.executor import Executor, _why_reverted
from keeper.execution.flash import bid_paid
from keeper.execution.journal import Signed
from keeper.execution.lanes import Lane, Lanes
from keeper.execution.races import touched
from keeper.execution.recovery import RecoveryJob
from keeper.execution.sender import Sender
from keeper.execution.volley import Follow, done, gas_limit, with_members
from keeper.types import Outcome, TxIntent

__all__ = ["BUNDLE_BLOCKS", "Backrun", "BundleSetup", "BundleSubmitter", "Live"]

log = structlog.get_logger(__name__)

BUNDLE_BLOCKS = 3  # the next block and two more: as open-source searchers keep a bundle
MAX_ROUNDS = 10  # resubmissions of one transaction, `blocks` blocks each
POLL = 0.1  # seconds between checks of a bundled transaction (receipt, head)
OPERATORS = "0x13e7c9d8"  # FlashLiquidator.operators(address)


@dataclass(frozen=True)
class BundleSetup:
    """What bundle mode needs besides the executor: the builders, the extra lanes (each an
    operator of the flash executor), how many blocks a bundle targets, the checks' pace."""

    client: BuilderClient
    lanes: Sequence[Any] = ()  # LocalAccount of lanes 1.. (lane 0: the executor's account)
    blocks: int = BUNDLE_BLOCKS
    max_rounds: int = MAX_ROUNDS
    poll: float = POLL


class BundleSubmitter:
    """Signs on free lanes, journals, sends bundles to every builder, follows each one."""

    def __init__(self, executor: Executor, setup: BundleSetup) -> None:
        self.executor = executor
        self.client = setup.client
        self.send = BundleSender(setup.client)
        self.blocks, self.max_rounds, self.poll = setup.blocks, setup.max_rounds, setup.poll
        self.book = BundleBook(executor.journal)
        lanes = [Lane(0, executor.account, executor.sender)]
        for index, account in enumerate(setup.lanes, start=1):
            lanes.append(Lane(index, account, Sender(
                executor.chain, account, executor.journal, executor.fees,
                type(executor.nonces)(account.address.lower()))))
        self.lanes = Lanes(lanes)
        self._ours = {lane.address for lane in self.lanes}
        self.head = 0
        self._head_read = float("-inf")  # loop time of the last head read
        self._head_lock = asyncio.Lock()

    async def start(self) -> None:
        """Sync every lane's nonce stream (chain and journal); the lanes that hold a bundled
        transaction of an earlier run stay held until `recovery` sees it out."""
        chain = self.executor.chain
        for lane in self.lanes.lanes[1:]:  # lane 0 is the executor's, synced by its start
            async def pending(address: str = lane.address) -> int:
                return int(await chain.call("eth_getTransactionCount", [address, "pending"]), 16)

            await lane.nonces.sync(pending, self.book.max_nonce(lane.address))
        await check_operators(self.executor, self.lanes)
        for tx in self.book.live():
            held = self.lanes.by_address(tx.sender)
            if held is not None:
                held.holder = tx.tx_hash
        self.head = int(await chain.call("eth_blockNumber", []), 16)

    def max_nonce(self) -> int | None:
        """The executor's own account's highest journaled nonce (lane 0's and public)."""
        return self.book.max_nonce(self.executor.address, main=True)

    # ------------------------------------------------------------------ sending

    async def launch(
        self, intents: Sequence[TxIntent], base_fee: int, backrun: Backrun | None = None,
    ) -> list[Follow]:
        """Claim, sign, journal and send each intent's bundle (best first), each on a free
        lane; one coroutine per intent, in order, follows it to its outcome. Behind a
        `backrun`, all of them go in one bundle (a builder includes one bundle holding a
        given transaction), journaled together first."""
        first = max(self.head, *(i.opportunity.block for i in intents)) + 1 if intents else 0
        follows: list[Follow] = []
        sending: list[asyncio.Task[None]] = []
        group: list[Live] = []
        for intent in intents:
            try:
                prepared = await self._prepare(intent, base_fee, backrun, first,
                                               journal=backrun is None)
            except Exception as exc:  # this one only: those before it are out, followed
                prepared = self._failed(intent, exc)
            if isinstance(prepared, Outcome):
                follows.append(done(with_members(intent, prepared)))
                continue
            if backrun is None:  # its bundle leaves while the next one is signed
                sending.append(asyncio.ensure_future(self.send.alone(
                    prepared, first, rest_later=True)))
            group.append(prepared)
            follows.append(self._followed(prepared, intent))
        if backrun is not None and group:
            try:
                self._journal_group(group)
            except BaseException:
                for follow in follows:
                    follow.close()  # nothing of the group left: none is followed
                raise
            sending.append(asyncio.ensure_future(self.send.behind(group, backrun)))
        if sending:
            await asyncio.gather(*sending)  # every first bundle is out when this returns
        return follows

    def _failed(self, intent: TxIntent, exc: Exception) -> Outcome:
        """An intent that could not be signed or journaled (nothing of it left the keeper)."""
        key = intent.opportunity.key
        log.error("bundle not prepared", key=key, error=f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(Exception):  # claimable again, if it was claimed
            self.executor.journal.mark_abandoned(key)
        return Outcome(key, "error", reason=f"not sent: {type(exc).__name__}: {exc}")

    def _journal_group(self, group: list[Live]) -> None:
        """The group's signed transactions on disk in one synced write; if that fails,
        none left the keeper: their nonces and lanes are given back."""
        try:
            self.book.record_signed_all([
                (Signed(live.key, live.tx.nonce, live.tx.tx_hash, live.tx.raw_tx,
                        live.tx.max_fee, live.tx.priority_fee), live.lane.address)
                for live in group], first_block=group[0].tx.first_block,
                last_block=group[0].tx.last_block)
        except BaseException:
            for live in group:
                live.lane.nonces.release(live.tx.nonce)
                live.lane.holder = None
                with contextlib.suppress(Exception):  # claimable again (the write failed)
                    self.executor.journal.mark_abandoned(live.key)
            raise

    async def _followed(self, live: Live, intent: TxIntent) -> Outcome:
        try:
            return with_members(intent, await self.follow(live))
        finally:
            if intent.spender is not None:
                opp = intent.opportunity
                self.executor.capital.release(opp.debt, opp.wallet_draw, spent=True)

    async def _prepare(
        self, intent: TxIntent, base_fee: int, backrun: Backrun | None, first: int, *,
        journal: bool,
    ) -> Live | Outcome:
        """Claimed, on a lane, signed for blocks `first`.., and (`journal`) journaled."""
        ex, opp = self.executor, intent.opportunity
        claimed = (ex.journal.claim_batch(opp, intent.members, ex.chain.chain_id)
                   if intent.members else ex.journal.claim(opp, ex.chain.chain_id))
        if not claimed:
            return Outcome(opp.key, "duplicate")
        fees = ex.sender._fees(base_fee, opp.priority_fee or None)
        if fees is None:
            ex.journal.mark_abandoned(opp.key)
            return Outcome(opp.key, "fee-cap", reason="base fee above max_fee_per_gas")
        spender = intent.spender
        lane = self.lanes.take("", own_tokens=spender is not None)
        if lane is None:
            ex.journal.mark_abandoned(opp.key)
            return Outcome(opp.key, "send-failed", reason="every nonce lane holds a bundle")
        reserved = False
        try:
            if spender is not None:
                if not await ex.capital.reserve(opp.debt, opp.wallet_draw):
                    lane.holder = None
                    ex.journal.mark_abandoned(opp.key)
                    return Outcome(opp.key, "no-capital", reason="debt asset is committed")
                reserved = True
                await ex.allowances.ensure(opp.debt, spender, opp.debt_to_cover, base_fee)
            nonce = await lane.nonces.reserve()
            try:
                gas = gas_limit(intent, 0)
                tx_hash, raw = await lane.sender.sign(intent.call.to, intent.call.data, gas,
                                                      nonce, fees)
                tx = BundledTx(opp.key, tx_hash, nonce, raw, fees[0], fees[1], lane.address,
                               first, first + self.blocks - 1)
                if journal:
                    self.book.record_signed(Signed(opp.key, nonce, tx_hash, raw, *fees),
                                            sender=lane.address, first_block=tx.first_block,
                                            last_block=tx.last_block)
            except BaseException:
                lane.nonces.release(nonce)  # never left the keeper
                raise
        except BaseException:
            lane.holder = None
            if reserved:
                ex.capital.release(opp.debt, opp.wallet_draw, spent=False)
            raise
        lane.holder = tx_hash
        return Live(opp.key, opp.strategy, tuple(o.account for o in intent.opportunities),
                     opp.collateral, opp.debt, opp.block, lane, tx, intent.call.to,
                     intent=intent, backrun=backrun)

    # ------------------------------------------------------------------ following

    async def follow(self, live: Live) -> Outcome:
        """Wait for `live`'s transaction until its last target block is mined; then settle
        it, or judge it outbid or expired (resubmitting while it is still worth it)."""
        ex = self.executor
        bound = log.bind(strategy=live.strategy, key=live.key, tx=live.tx.tx_hash,
                         lane=live.lane.index)
        if live.intent is not None:  # a fresh send (a recovered one is already 'sent')
            if live.rest is not None:
                await live.rest
            ex.journal.mark_sent(live.key, live.tx.tx_hash)
        seen = -1  # the head its receipt was last looked for at (a receipt needs a new block)
        while True:
            head = await self._head()
            if head == seen:
                await asyncio.sleep(self.poll)
                continue
            seen = head
            receipt = await self._receipt(live.tx.tx_hash)
            if receipt is not None:
                return await self._mined(live, receipt, bound)
            if head < live.tx.last_block:
                continue
            ended = await self._not_included(live, bound)
            if ended is not None:
                return ended

    async def _head(self) -> int:
        """The chain's head, read at most once per `poll` however many bundles are followed."""
        async with self._head_lock:
            now = asyncio.get_running_loop().time()
            if now - self._head_read >= self.poll:
                read = int(await self.executor.chain.call("eth_blockNumber", []), 16)
                self.head, self._head_read = max(self.head, read), now
            return self.head

    async def _not_included(self, live: Live, bound: Any) -> Outcome | None:
        """The last target block is mined without it: an outcome, or None once resubmitted."""
        ex, lane, tx = self.executor, live.lane, live.tx
        used = int(await ex.chain.call("eth_getTransactionCount", [lane.address, "latest"]), 16)
        if used > tx.nonce:  # only we sign for the lane: a version of ours is mined
            receipt = await self._receipt(tx.tx_hash)
            if receipt is not None:
                return await self._mined(live, receipt, bound)
            return self._end(live, Outcome(live.key, "lost",
                                           reason="nonce consumed by another transaction"),
                             reissue=False)
        block = {"blockNumber": hex(self.head), "transactionIndex": hex(2**31)}
        others = await touched(ex.chain, live.accounts, ranked_at=live.ranked_at, receipt=block)
        won = next((h for h, sender in others if sender not in self._ours), None)
        if won is not None:
            bound.info("outbid: another transaction took the position", winner=won)
            return self._end(live, Outcome(live.key, "lost", winner=won,
                                           reason=f"outbid: {won} took the position first"))
        there = ex.still_there is None or ex.still_there(live.strategy, live.accounts[0])
        if not there:
            return self._end(live, Outcome(
                live.key, "lost", reason="no longer liquidatable: bundle not included"))
        latest = await ex.chain.call("eth_getBlockByNumber", ["latest", False])
        base_fee = int(latest.get("baseFeePerGas", "0x0"), 16)
        if live.rounds >= self.max_rounds or tx.max_fee < base_fee:
            why = "out of rounds" if live.rounds >= self.max_rounds else "base fee above its fee"
            return self._end(live, Outcome(
                live.key, "send-failed",
                reason=f"bundle not included by block {tx.last_block} ({why})"))
        live.rounds += 1
        first = self.head + 1
        live.tx = dataclasses.replace(tx, last_block=first + self.blocks - 1)
        self.book.extend(tx.tx_hash, live.tx.last_block)  # on disk before the bundles leave
        bound.info("bundle not included; sent again", round=live.rounds,
                   blocks=f"{first}-{live.tx.last_block}")
        await self.send.alone(live, first)
        return None

    def _end(self, live: Live, outcome: Outcome, *, reissue: bool = True) -> Outcome:
        """It can no longer be mined: dropped in the journal (the opportunity may be claimed
        again), its nonce given back to the lane, the lane free."""
        self.executor.journal.mark_dropped(live.key, live.tx.tx_hash)
        if reissue:
            live.lane.nonces.reissue(live.tx.nonce)
        else:
            live.lane.nonces.confirm(live.tx.nonce)
        live.lane.holder = None
        return outcome

    async def _receipt(self, tx_hash: str) -> dict[str, Any] | None:
        found = await self.executor.chain.call("eth_getTransactionReceipt", [tx_hash])
        return found if isinstance(found, dict) and found.get("blockNumber") else None

    async def _mined(self, live: Live, receipt: dict[str, Any], bound: Any) -> Outcome:
        ex = self.executor
        live.lane.nonces.confirm(live.tx.nonce)
        live.lane.holder = None
        flashed = ex.flash_executor is not None and live.call_to.lower() == ex.flash_executor
        if flashed:
            assert ex.flash_executor is not None
            bid = bid_paid(receipt["logs"], ex.flash_executor)
            self.book.record_bid(live.tx.tx_hash, bid)
        outcome = ex.settlement.settle(
            live.key, live.tx.tx_hash, receipt, collateral=live.collateral, debt=live.debt,
            quote=ex.quote_token if flashed else None, bound=bound.bind(
                block=int(receipt["blockNumber"], 16)), call_to=live.call_to)
        if outcome.status != "reverted" or live.intent is None:
            return outcome
        return await _why_reverted(ex.chain, live.lane.address, live.intent, outcome,
                                  receipt=receipt, bound=bound)

    # ------------------------------------------------------------------ restart

    def recovery(self, keys: set[str] | None = None) -> list[RecoveryJob]:
        """A job for each bundled transaction of an earlier run that may still be mined:
        followed to its end like a fresh one (its nonce stays taken until then)."""
        jobs: list[RecoveryJob] = []
        for tx in self.book.live():
            record = self.executor.journal.get(tx.key)
            lane = self.lanes.by_address(tx.sender)
            if record is None or lane is None or (keys is not None and tx.key not in keys):
                continue
            lane.holder = tx.tx_hash
            call_to = _recipient(tx.raw_tx)
            live = Live(tx.key, record.strategy, (record.account,), record.collateral,
                         record.debt, record.block, lane, tx, call_to)
            log.info("recovering a bundled transaction of an earlier run", key=tx.key,
                     tx=tx.tx_hash, lane=lane.index, last_block=tx.last_block)
            jobs.append((record.strategy, record.account, self.follow(live)))
        return jobs


def _recipient(raw: str) -> str:
    """The `to` of a signed transaction (journaled bytes)."""
    decoded = TypedTransaction.from_bytes(HexBytes(raw))
    return "0x" + bytes(decoded.as_dict()["to"]).hex()


async def check_operators(executor: Executor, lanes: Lanes) -> None:
    """Each lane but the owner's must be an operator of the flash executor (its flash
    liquidations would revert at every builder otherwise): one line if one is not."""
    target = executor.flash_executor
    if target is None or len(lanes) < 2:
        return
    calls = [("eth_call", [{"to": target, "data": OPERATORS + lane.address[2:].rjust(64, "0")},
                           "latest"]) for lane in lanes.lanes[1:]]
    answers = await executor.chain.batch(calls)
    for lane, answer in zip(lanes.lanes[1:], answers, strict=True):
        word = str(answer or "0x")
        if word == "0x" or not int(word, 16):
            raise ConfigError(
                f"nonce lane {lane.address} is not an operator of the flash executor "
                f"{target}: deploy it with keeper deploy-executor --lanes, or have its "
                "owner call setOperator(lane, true)")

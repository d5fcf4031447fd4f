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
  while its max fee still covers the base fee and its call succeeds on the latest block);
  no longer liquidatable: `lost` to the market; out of rounds, or reverting as signed:
  `send-failed` (the opportunity may be claimed again).

Exactly once: the bytes are signed once, journaled with the bundle's last target block
before any bundle leaves (`BundleBook`), and the last target block is raised on disk
before every resubmission. However many builders and blocks hold the transaction, it has
one hash and one nonce, so it is mined at most once and confirmed once. The nonce is given
back (`NonceManager.reissue`) only after the last target block is mined without it and
the chain's nonce is still below it: while any bundle can land, no other transaction is
signed for that nonce, across restarts too (`recovery`). Each transaction holds its nonce
lane (keeper/execution/lanes.py) until it ends, so later liquidations take other lanes;
a dispatch's liquidations paid from the account's tokens share lane 0's one bundle, and
one of those (`Lane.shared`) not included ends instead of being resent alone.

A backrun (`Backrun`: a pending oracle transaction, or a hinted private one) puts every
liquidation of the dispatch right behind it, in one bundle (a builder includes at most one
bundle holding a given transaction): `eth_sendBundle [oracle raw, ours...]`, or
`mev_sendBundle` with the body `[{hash}, {tx: ours}...]` (keeper/execution/bundles_send.py).
A resubmission sends each of ours alone (by then the oracle update is mined or gone).
A backrun whose target was mined without it can no longer land: it is judged then, not
after its last target block.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from hexbytes import HexBytes

from keeper.chain.http import HttpRpc
from keeper.errors import RetryableError, RpcError
from keeper.execution.builders import BuilderClient
from keeper.execution.bundles_chain import OwnChain
from keeper.execution.bundles_journal import BundleBook
from keeper.execution.bundles_launch import BundleLauncher
from keeper.execution.bundles_presign import presign_on_lanes
from keeper.execution.bundles_send import Backrun, BundleSender, Live
from keeper.execution.executor import Executor
from keeper.execution.flash import bid_paid
from keeper.execution.lanes import Lane, Lanes, check_operators
from keeper.execution.races import touched, why_reverted
from keeper.execution.recovery import RecoveryJob
from keeper.execution.sender import Presigned, Sender
from keeper.types import Outcome, TxIntent

__all__ = ["BUNDLE_BLOCKS", "Backrun", "BundleSetup", "BundleSubmitter", "Live"]

log = structlog.get_logger(__name__)

BUNDLE_BLOCKS = 3  # the next block and two more: as open-source searchers keep a bundle
MAX_ROUNDS = 10  # resubmissions of one transaction, `blocks` blocks each
POLL = 0.1  # seconds between checks of a bundled transaction (receipt, head)
TARGETS_KEPT = 256  # backrun targets remembered (each is mined or gone within blocks)


@dataclass(frozen=True)
class BundleSetup:
    """What bundle mode needs besides the executor: the builders, the extra lanes (each an
    operator of the flash executor), how many blocks a bundle targets, the checks' pace."""

    client: BuilderClient
    lanes: Sequence[Any] = ()  # LocalAccount of lanes 1.. (lane 0: the executor's account)
    blocks: int = BUNDLE_BLOCKS
    max_rounds: int = MAX_ROUNDS
    poll: float = POLL


class BundleSubmitter(BundleLauncher):
    """Signs on free lanes, journals, sends bundles to every builder (`BundleLauncher`),
    follows each one."""

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
        self.chain = OwnChain(self.lanes.lanes[0], executor.chain, self.book, self.send)
        self._ours = {lane.address for lane in self.lanes}
        self.head = 0
        self.signed_ahead = self.signed_now = 0
        self._groups = OrderedDict()
        self._head_read = float("-inf")  # loop time of the last head read
        self._head_lock = asyncio.Lock()
        # Backrun targets: the head each was last looked for at, and those mined.
        self._target_read: OrderedDict[str, tuple[int, float]] = OrderedDict()  # head, when
        self._mined_targets: OrderedDict[str, int] = OrderedDict()

    async def start(self) -> None:
        """Sync every lane's nonce stream (chain and journal); the lanes that hold a bundled
        transaction of an earlier run stay held until `recovery` sees it out."""
        chain = self.executor.chain
        for lane in self.lanes.lanes[1:]:  # lane 0 is the executor's, synced by its start
            async def pending(address: str = lane.address) -> int:
                return int(await chain.call("eth_getTransactionCount", [address, "pending"]), 16)

            await lane.nonces.sync(pending, self.book.max_nonce(lane.address))
        await check_operators(chain, self.executor.flash_executor, self.lanes)
        for lane in self.lanes.lanes:  # an [ha] standby's start again when it leads: the
            lane.clear()               # old leader's resolved transactions hold no lane
        for tx in self.book.live():  # several on one lane: one bundle's (shared)
            held = self.lanes.by_address(tx.sender)
            if held is not None:
                held.hold(tx.tx_hash)
        self.head = int(await chain.call("eth_blockNumber", []), 16)

    def max_nonce(self) -> int | None:
        """The executor's own account's highest journaled nonce (lane 0's and public)."""
        return self.book.max_nonce(self.executor.address, main=True)

    # ------------------------------------------------------------------ signing ahead

    async def presign(
        self, intents: Sequence[TxIntent], base_fee: int,
        known: Mapping[str, Presigned] | None = None,
    ) -> tuple[int, dict[str, Presigned]]:
        """(lane 0's next nonce, `intents` signed on the lanes and nonces a launch would
        give them now): an armed level's transactions (keeper/execution/bundles_presign.py).
        The nonce is what `Armed.stale` compares: lane 0's stream moves with every send of
        the account's own."""
        first = self.executor.nonces.next_nonce
        if first is None:
            return -1, {}
        return first, await presign_on_lanes(self.lanes, intents, base_fee, known)

    # ------------------------------------------------------------------ following

    async def follow(self, live: Live) -> Outcome:
        """Wait for `live`'s transaction until its last target block is mined; then settle
        it, or judge it outbid or expired (resubmitting while it is still worth it)."""
        ex = self.executor
        bound = log.bind(strategy=live.strategy, key=live.key, tx=live.tx.tx_hash,
                         lane=live.lane.index)
        if live.intent is not None and not live.marked:  # a fresh send (a recovered one
            if live.rest is not None:                      # is already 'sent')
                await live.rest
            ex.journal.mark_sent(live.key, live.tx.tx_hash)
        seen = -1  # the head its receipt was last looked for at (a receipt needs a new block)
        while True:
            # Behind its target in its first round (a resubmission goes alone).
            behind = live.backrun.hash if live.backrun is not None and not live.rounds else None
            head = await self._head()
            if head == seen:
                # A node can announce a block a moment before it serves the block's receipts
                # (anvil does): a target not found mined at this head is looked for again, or
                # a bundle behind a target mined in the last block before a quiet spell
                # would wait for the next block to be judged.
                if behind is None or not await self._target_mined(behind, head):
                    await asyncio.sleep(self.poll)
                    continue
            else:
                seen = head
                receipt = await self._receipt(live.tx.tx_hash)
                if receipt is not None:
                    return await self._mined(live, receipt, bound)
                if head < live.tx.last_block and not (
                        behind is not None and await self._target_mined(behind, head)):
                    continue
            ended = await self._not_included(live, bound)
            if ended is not None:
                return ended

    async def _target_mined(self, target: str, head: int) -> bool:
        """Is the backrun's target mined (by `head`)? Then a bundle behind it can no longer
        land, and `live` is judged now, not after its last target block: resent alone, or
        ranked again, two blocks sooner (a public bot took such positions meanwhile). One
        receipt read per target and `poll`, however many transactions went behind it."""
        if target in self._mined_targets:
            return True
        now = asyncio.get_running_loop().time()
        last = self._target_read.get(target)
        if last is not None and last[0] == head and now - last[1] < self.poll:
            return False
        self._target_read[target] = (head, now)
        while len(self._target_read) > TARGETS_KEPT:
            self._target_read.popitem(last=False)
        receipt = await self._receipt(target)
        if receipt is None:
            return False
        # The head read last may be older than the block that mined it (read at most once a
        # poll): a resubmission targets the blocks after that one.
        self.head = max(self.head, int(str(receipt["blockNumber"]), 16))
        self._mined_targets[target] = head
        while len(self._mined_targets) > TARGETS_KEPT:
            self._mined_targets.popitem(last=False)
        return True

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
        if tx.tx_hash in lane.shared:  # alone, it may wait on a nonce that is never mined
            return self._end(live, Outcome(
                live.key, "send-failed", reason=f"bundle not included by block "
                f"{tx.last_block} (sent with others of its lane: ranked again, not resent)"))
        if not await _runs_now(ex.chain, lane.address, tx.raw_tx):
            # Builders drop what reverts: resent as signed it would be dropped again, block
            # after block (a flash exit's min_out or profit guard priced before the pools
            # moved), while its exit still weighs on the pools later ones are valued on.
            return self._end(live, Outcome(
                live.key, "send-failed", reason=f"bundle not included by block "
                f"{tx.last_block}, and as signed it reverts now (ranked again, not resent)"))
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
        live.lane.let_go(live.tx.tx_hash)
        return outcome

    async def _receipt(self, tx_hash: str) -> dict[str, Any] | None:
        found = await self.executor.chain.call("eth_getTransactionReceipt", [tx_hash])
        return found if isinstance(found, dict) and found.get("blockNumber") else None

    async def _mined(self, live: Live, receipt: dict[str, Any], bound: Any) -> Outcome:
        ex = self.executor
        live.lane.nonces.confirm(live.tx.nonce)
        live.lane.let_go(live.tx.tx_hash)
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
        return await why_reverted(ex.chain, live.lane.address, live.intent, outcome,
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
            lane.hold(tx.tx_hash)
            call_to = _recipient(tx.raw_tx)
            live = Live(tx.key, record.strategy, (record.account,), record.collateral,
                         record.debt, record.block, lane, tx, call_to)
            log.info("recovering a bundled transaction of an earlier run", key=tx.key,
                     tx=tx.tx_hash, lane=lane.index, last_block=tx.last_block)
            jobs.append((record.strategy, record.account, self.follow(live)))
        return jobs


async def _runs_now(chain: HttpRpc, sender: str, raw: str) -> bool:
    """Would the signed transaction `raw` succeed on the latest block? One `eth_call` with
    its own call and gas limit; True too when the node cannot answer (resent as before)."""
    decoded = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    call = {"from": sender, "to": "0x" + bytes(decoded["to"]).hex(),
            "data": "0x" + bytes(decoded["data"]).hex(), "gas": hex(decoded["gas"])}
    try:
        await chain.call("eth_call", [call, "latest"])
    except RpcError:
        return False
    except RetryableError:
        pass  # cannot tell: resent as before
    return True


def _recipient(raw: str) -> str:
    """The `to` of a signed transaction (journaled bytes)."""
    decoded = TypedTransaction.from_bytes(HexBytes(raw))
    return "0x" + bytes(decoded.as_dict()["to"]).hex()

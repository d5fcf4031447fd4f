"""Waiting for a sent transaction to be mined: re-sending it if it vanished, bumping its fees.

A sent transaction can end four ways, and `MiningWatch.mined` tells them apart:

- **mined**: a receipt for one of its versions (the original or a replacement);
- **vanished**: no receipt, not in the node's pool, and the account's nonce not consumed
  (anvil 1.7.1 with interval mining drops a transaction that arrives while a block is
  being mined; real nodes evict under load). The newest version's raw bytes (journaled
  before the first broadcast) are sent again: same hash, nothing signed twice;
- **stuck**: still in the pool after `bump_after_blocks` new blocks, and the next nonce of
  the account to be mined (behind an earlier one of ours it only waits its turn) or priced
  under the base fee. A replacement with
  the same nonce and both fee fields raised by at least 12.5 % (EIP-1559 replacement
  rule; `FeePolicy.bump`), capped by `max_fee_per_gas` and by the opportunity's
  expected profit per gas, is signed, journaled and sent; every version is watched;
- **lost**: the nonce was consumed by a transaction that is none of its versions (another
  sender of the same key, or an operator's manual cancel): nothing of ours can land. Told
  at the second check that finds the nonce used without a receipt of ours (a node may
  serve the nonce a moment before the block's receipts).

Every check is a few RPC calls per `check_every` seconds per pending transaction.

A node that does not answer (a `RetryableError`: a dropped connection, a timeout) changes
none of this: the poll and the check are tried again, every `RECEIPT_POLL` seconds growing to
`check_every`, until `timeout`. A re-send or a replacement whose answer was lost may have
reached the node: it counts as sent (its receipt is watched; if it is not in the pool, the
next check sends its bytes again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from keeper.chain.http import HttpRpc, RpcError
from keeper.errors import RetryableError
from keeper.execution.fees import FeePolicy, Fees
from keeper.execution.journal import Journal

log = structlog.get_logger(__name__)

RECEIPT_POLL = 0.05
CHECK_EVERY = 1.0  # seconds between the pool / nonce / bump checks of one transaction
BUMP_AFTER_BLOCKS = 3
RECEIPT_TIMEOUT = 300.0
NODE_GONE_AFTER = 20.0  # seconds without any answer after which a watch stops retrying

SendRefusal = Literal["known", "nonce-low", "underpriced", "funds", "other"]


def classify_send_error(message: str) -> SendRefusal:
    """What a node's refusal of `eth_sendRawTransaction` means, for the reaction to it:

    - known: the node already has this very transaction (treat it as sent);
    - nonce-low: the nonce is used (skip ahead to the chain's nonce; never reuse it);
    - underpriced: the fees are too low for the pool or the base fee (retry next block);
    - funds: the account cannot pay the gas (stop and say so; the balance breaker trips);
    - other: anything else (the intent is dropped and may be retried).
    """
    text = message.lower()
    if "already known" in text or "already imported" in text or "known transaction" in text:
        return "known"
    if "nonce too low" in text or "nonce has already been used" in text or (
            "nonce" in text and "too low" in text):
        return "nonce-low"
    if "underpriced" in text or "fee too low" in text or "less than block base fee" in text \
            or "max fee per gas less than" in text:
        return "underpriced"
    if "insufficient funds" in text or "insufficient balance" in text:
        return "funds"
    return "other"


# (nonce, fees) -> (tx hash, raw signed tx), for a replacement of the same call
Signer = Callable[[int, Fees], Awaitable[tuple[str, str]]]


@dataclass
class Pending:
    """One nonce's transaction and its versions, newest last."""

    key: str | None  # the journal intent (None: an approval, not journaled)
    nonce: int
    fees: Fees
    gas_limit: int
    profit_cap_wei: int  # the most its gas may cost (the opportunity's expected value)
    hashes: list[str] = field(default_factory=list)
    raws: dict[str, str] = field(default_factory=dict)
    sent_block: int | None = None
    resent: int = 0
    bumped: int = 0
    checks: int = 0
    taken_checks: int = 0  # checks that found its nonce used and none of its receipts
    cancels: set[str] = field(default_factory=set)  # versions that only free the nonce
    # Set by whoever learns the call would fail (its simulation, answered after the send):
    # the watch replaces it with a no-op at its next poll, if a `cancel` signer was given.
    withdraw: bool = False


@dataclass(frozen=True)
class Mined:
    """How a pending transaction ended: its receipt, or None when the nonce went elsewhere."""

    tx_hash: str | None
    receipt: dict[str, Any] | None


class MiningWatch:
    """Watches one account's pending transactions until each is mined or lost."""

    def __init__(
        self,
        chain: HttpRpc,
        address: str,
        journal: Journal,
        fees: FeePolicy,
        *,
        bump_after_blocks: int = BUMP_AFTER_BLOCKS,
        check_every: float = CHECK_EVERY,
        timeout: float = RECEIPT_TIMEOUT,
    ) -> None:
        self.chain = chain
        self.address = address
        self.journal = journal
        self.fees = fees
        self.bump_after_blocks = bump_after_blocks
        self.check_every = check_every
        self.timeout = timeout

    async def mined(
        self, pending: Pending, sign: Signer | None, worth: Callable[[], bool] | None = None,
        cancel: Signer | None = None,
    ) -> Mined:
        """Poll until a version of `pending` has a receipt or its nonce is lost.

        `sign` signs a replacement (None: never bump, e.g. a transaction recovered from
        the journal whose call the keeper no longer has). `worth` says whether the
        opportunity is still there (the position still liquidatable, not liquidated by
        someone else): when it is not, fees are not raised any more, and the transaction
        lands (it then reverts cheaply or does less) or is outbid; and when it vanished
        from the pool meanwhile (a reorg orphaned its block, or the node evicted it), it is
        not sent again blindly: `cancel` signs a no-op for its nonce (a zero-value transfer
        to the sender), which frees the nonce for the sends behind it. Raises TimeoutError
        after `timeout` seconds with neither.
        """
        try:
            return await self._poll(pending, sign, worth, cancel)
        finally:  # mined or lost: nothing is left to withdraw (a replay waits on the flag)
            pending.withdraw = False

    async def _poll(
        self, pending: Pending, sign: Signer | None, worth: Callable[[], bool] | None,
        cancel: Signer | None,
    ) -> Mined:
        deadline = time.monotonic() + self.timeout
        next_check = time.monotonic() + self.check_every
        unanswered = 0  # polls in a row the node did not answer
        silent_since = 0.0  # when the first of them was sent
        while True:
            try:
                receipts = await self.chain.batch(
                    [("eth_getTransactionReceipt", [h]) for h in pending.hashes])
                for tx_hash, receipt in zip(pending.hashes, receipts, strict=True):
                    if receipt is not None:
                        return Mined(tx_hash, dict(receipt))
                now = time.monotonic()
                if now <= deadline and pending.withdraw and cancel is not None:
                    await self._withdraw(pending, cancel)
                    pending.withdraw = False  # cleared once the no-op is in the pool
                if now <= deadline and now >= next_check:
                    next_check = now + self.check_every
                    if await self._check(pending, sign, worth, cancel):
                        return Mined(None, None)
            except RetryableError as exc:
                # The transaction is where it was (in the pool, mined, or to be re-sent):
                # one unanswered request must not end its watch (it would be recorded as
                # an error while it may still be mined).
                unanswered += 1
                if unanswered == 1:
                    silent_since = time.monotonic()
                    log.warning("node did not answer while watching a transaction; retrying",
                                tx=pending.hashes[-1], nonce=pending.nonce, reason=str(exc))
                elif time.monotonic() - silent_since > NODE_GONE_AFTER:
                    # A node gone this long is down, not one dropped request: the watch ends
                    # (the journal keeps it sent; a stop must not wait out `timeout` on it).
                    raise
            else:
                unanswered = 0
            if time.monotonic() > deadline:
                raise TimeoutError(f"no receipt for {pending.hashes[-1]} after "
                                   f"{self.timeout:.0f} s")
            await asyncio.sleep(min(RECEIPT_POLL * 2 ** unanswered, self.check_every))

    async def _withdraw(self, pending: Pending, cancel: Signer) -> None:
        """Replace a pending call that would fail by a no-op for its nonce (both fees raised
        as for any replacement, within its cap): if it lands first, nothing reverts."""
        head = await self.chain.call("eth_getBlockByNumber", ["latest", False])
        log.info("its simulation failed after it was sent; cancelling it",
                 tx=pending.hashes[-1], nonce=pending.nonce)
        await self._bump(pending, cancel, int(head.get("baseFeePerGas", "0x0"), 16),
                         int(head["number"], 16), is_cancel=True)

    async def _check(
        self, pending: Pending, sign: Signer | None, worth: Callable[[], bool] | None = None,
        cancel: Signer | None = None,
    ) -> bool:
        """Re-send a vanished version, or bump a stuck one; True when the nonce is lost."""
        pending.checks += 1
        newest = pending.hashes[-1]
        consumed, in_pool, head = await self.chain.batch([
            ("eth_getTransactionCount", [self.address, "latest"]),
            ("eth_getTransactionByHash", [newest]),
            ("eth_getBlockByNumber", ["latest", False]),
        ])
        head_number = int(head["number"], 16)
        if pending.sent_block is None:
            pending.sent_block = head_number
        if int(consumed, 16) > pending.nonce:
            # Mined by now, or lost to another tx. A node can answer the new nonce before it
            # serves the block's receipts (anvil 1.7.1 does, for a moment after each block):
            # lost only when a later check still finds none of our receipts, or a mined
            # liquidation would be journaled as lost.
            receipts = await self.chain.batch(
                [("eth_getTransactionReceipt", [h]) for h in pending.hashes])
            if any(r is not None for r in receipts):
                return False  # the poll returns it
            pending.taken_checks += 1
            return pending.taken_checks > 1
        if in_pool is None:
            base_fee = int(head.get("baseFeePerGas", "0x0"), 16)
            if cancel is not None and worth is not None and not worth():
                log.info("vanished and no longer worth sending; cancelling its nonce",
                         tx=newest, nonce=pending.nonce)
                await self._bump(pending, cancel, base_fee, head_number, is_cancel=True)
                return False
            if not await self._resend(pending, newest) and sign is not None:
                # Refused (its fees no longer pass the base fee, say): replace it now.
                await self._bump(pending, sign, int(head.get("baseFeePerGas", "0x0"), 16),
                                 head_number)
            return False
        base_fee = int(head.get("baseFeePerGas", "0x0"), 16)
        # Behind earlier transactions of ours still in the pool, it waits for them, whatever
        # its fees: only the next nonce to mine is bumped, or one whose fee cap the base fee
        # passed (a batch of 104 liquidations took anvil's automine over 2 s to mine; 20 of
        # them were bumped in vain, replacements signed for transactions mined moments later).
        waiting = int(consumed, 16) < pending.nonce and pending.fees[0] >= base_fee
        if (sign is not None and head_number - pending.sent_block >= self.bump_after_blocks
                and not waiting and (worth is None or worth())):
            await self._bump(pending, sign, base_fee, head_number)
        return False

    async def _resend(self, pending: Pending, tx_hash: str) -> bool:
        """Send the journaled bytes again; False if the node refused them."""
        pending.resent += 1
        log.warning("transaction vanished from the pool; sending it again", tx=tx_hash,
                    nonce=pending.nonce, times=pending.resent)
        try:
            await self.chain.call("eth_sendRawTransaction", [pending.raws[tx_hash]])
        except RpcError as exc:  # "already known" / "nonce too low": the next check tells
            log.info("re-send refused", tx=tx_hash, reason=exc.message)
            return "already known" in exc.message.lower()
        except RetryableError as exc:  # its answer was lost: the next check tells
            log.info("re-send not answered", tx=tx_hash, reason=str(exc))
        return True

    async def _bump(
        self, pending: Pending, sign: Signer, base_fee: int, head: int, *,
        is_cancel: bool = False,
    ) -> None:
        fees = self.fees.bump(pending.fees, base_fee, pending.profit_cap_wei, pending.gas_limit)
        if fees is None:
            return  # at the cap (fee or profit): let this version land or fail as it is
        tx_hash, raw = await sign(pending.nonce, fees)
        if pending.key is not None:
            self.journal.record_signed(pending.key, pending.nonce, tx_hash, raw, fees[0],
                                       fees[1])
        try:
            await self.chain.call("eth_sendRawTransaction", [raw])
        except RpcError as exc:
            log.warning("replacement refused", tx=tx_hash, nonce=pending.nonce,
                        reason=exc.message)
            if pending.key is not None:
                self.journal.mark_dropped(pending.key, tx_hash)
            return
        except RetryableError as exc:
            # It may have reached the node: watched as sent (re-sent if it is not there).
            log.warning("replacement not answered; watching it as sent", tx=tx_hash,
                        nonce=pending.nonce, reason=str(exc))
        if pending.key is not None:
            self.journal.mark_sent(pending.key, tx_hash)
        pending.bumped += 1
        if is_cancel:
            pending.cancels.add(tx_hash)
        pending.hashes.append(tx_hash)
        pending.raws[tx_hash] = raw
        pending.fees = fees
        pending.sent_block = head
        log.info("fees bumped", tx=tx_hash, nonce=pending.nonce, max_fee=fees[0], tip=fees[1])

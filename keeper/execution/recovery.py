"""Recovering what was sent but never seen mined: by an earlier run, or orphaned by a reorg.

An earlier run may have signed or sent transactions and stopped before their
receipts; the journal keeps their raw bytes. Each becomes a job that waits for
it (re-sending the very same bytes if it vanished, so nothing is signed twice)
and records how it ended. A receipt of ours whose block a reorg orphaned goes
back to pending in the journal, and is re-evaluated rather than blindly resent:
one that vanished while its position is no longer liquidatable has its nonce
taken by a zero-value self-transfer instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from keeper.chain.http import HttpRpc
from keeper.execution.allowances import Allowances
from keeper.execution.fees import Fees
from keeper.execution.journal import IntentRecord, Journal, TxRecord
from keeper.execution.mining import MiningWatch, Pending
from keeper.execution.receipts import RecentReceipts, Settlement
from keeper.execution.sender import CANCEL_GAS, Sender
from keeper.types import Outcome

log = structlog.get_logger(__name__)

# (strategy, account, the job): run it before sending anything new for that account
RecoveryJob = tuple[str, str, Coroutine[Any, Any, Outcome]]
StillThere = Callable[[str, str], bool]  # (strategy, account) still liquidatable at the head?


class Recovery:
    """Finds one account's unresolved transactions in the journal and sees each one out."""

    def __init__(
        self, chain: HttpRpc, sender: Sender, watch: MiningWatch, *, settlement: Settlement,
        recent: RecentReceipts, allowances: Allowances,
        still_there: StillThere | None = None, flash_executor: str | None = None,
        quote_token: str | None = None,
    ) -> None:
        self.chain = chain
        self.journal: Journal = sender.journal
        self._sender = sender
        self._watch = watch
        self._settlement = settlement
        self._recent = recent
        self._allowances = allowances
        self._still_there = still_there
        # A recovered transaction to the flash executor is valued by the quote token it
        # paid out; any other by the collateral received and the debt paid.
        self._flash_executor = flash_executor
        self._quote_token = quote_token
        # Hashes another part follows, always skipped (bundle mode: its bundled ones).
        self.skip: Callable[[], set[str]] | None = None

    def jobs(
        self, keys: set[str] | None = None, *, reorged: bool = False,
        skip: set[str] | frozenset[str] = frozenset(),
    ) -> list[RecoveryJob]:
        """A job for every transaction signed or sent and never seen mined (only those of
        `keys` when given), lowest nonce first. `reorged`: they were mined in blocks a
        reorg orphaned, so each is re-evaluated (see the module's docstring). `skip`:
        hashes another part follows (bundled transactions: never broadcast publicly)."""
        by_nonce: dict[int, list[TxRecord]] = {}
        if self.skip is not None:
            skip = {*skip, *self.skip()}
        for tx in self.journal.pending():
            if tx.tx_hash in skip:
                continue
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

    async def orphaned(self, head: int) -> list[RecoveryJob]:
        """Receipts of ours not yet final whose block is no longer on the chain (one batch
        of headers, none when there are no such receipts): they go back to pending in the
        journal, and a job re-evaluates each."""
        self._recent.final(head)
        self._allowances.final(head)
        gone = await self._recent.orphaned(self.chain)
        if not gone:
            return []
        await self._allowances.restore(gone)
        orphaned = self.journal.unmine(gone)
        for tx in orphaned:
            log.warning("reorg: a mined transaction of ours was orphaned; re-evaluating it",
                        key=tx.intent_key, tx=tx.tx_hash, nonce=tx.nonce)
        return self.jobs({tx.intent_key for tx in orphaned}, reorged=True)

    async def _recover(
        self, record: IntentRecord, pending: Pending, *, reorged: bool = False
    ) -> Outcome:
        bound = log.bind(strategy=record.strategy, account=record.account, key=record.key)
        bound.info("recovering a transaction of an earlier run" if not reorged else
                   "re-evaluating a transaction whose block was orphaned",
                   nonce=pending.nonce, tx=pending.hashes[-1])
        worth = cancel = None
        if reorged and self._still_there is not None:
            there = self._still_there

            def worth() -> bool:
                return there(record.strategy, record.account)

            async def cancel(nonce: int, fees: Fees) -> tuple[str, str]:
                return await self._sender.cancel(nonce, fees)

        mined = await self._watch.mined(pending, sign=None, worth=worth, cancel=cancel)
        self._sender.nonces.confirm(pending.nonce)  # used either way: mined or taken
        if mined.receipt is None or mined.tx_hash is None:
            return self._settlement.lost(record.key, pending.hashes, pending.nonce, bound)
        if mined.tx_hash in pending.cancels:
            return self._settlement.cancelled(record.key, mined.tx_hash, mined.receipt, bound)
        to = str(mined.receipt.get("to") or "").lower()
        flashed = self._flash_executor is not None and to == self._flash_executor
        outcome = self._settlement.settle(
            record.key, mined.tx_hash, mined.receipt, collateral=record.collateral,
            debt=record.debt, quote=self._quote_token if flashed else None, bound=bound)
        return dataclasses.replace(outcome, members=tuple(self.journal.members(record.key)))

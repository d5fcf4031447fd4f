"""The executor in bundle mode (`execution.submitter = "bundle"`): the public executor's
parts (claims, capital, allowances, settlement, recovery) with every liquidation sent to
block builders as a private bundle (`BundleSubmitter`, keeper/execution/bundles.py)
instead of the public mempool.

What changes from `Executor`: its own account's nonce stream leaves out the other lanes'
transactions (one journal holds every lane's), the public recovery leaves bundled
transactions to the submitter (they are followed to their last target block and never
broadcast publicly), and `launch` takes the transaction to backrun, if any.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import structlog

from keeper.execution.bundles import Backrun, BundleSetup, BundleSubmitter
from keeper.execution.bundles_ahead import AheadSubmitter
from keeper.execution.bundles_presign import BundleVolley
from keeper.execution.executor import Executor
from keeper.execution.journal import Journal
from keeper.execution.recovery import RecoveryJob
from keeper.execution.sender import Presigned
from keeper.execution.volley import Follow
from keeper.types import Outcome, TxIntent

log = structlog.get_logger(__name__)


class BundleExecutor(Executor):
    """An `Executor` whose sends are private bundles; `bundles` says to which builders."""

    def __init__(self, *args: Any, bundles: BundleSetup, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # An armed backrun's first bundle leaves ahead of the SQLite journal's database
        # (bundles_ahead.py); another journal takes every record before it leaves.
        self.bundles: Final = (AheadSubmitter(self, bundles) if type(self.journal) is Journal
                               else BundleSubmitter(self, bundles))
        # Arming signs on the lanes (`BundleSubmitter.presign`); `volley` is the attribute
        # `Dispatcher.arm` asks. Set through the instance dict: it is Final on `Executor`.
        vars(self)["volley"] = BundleVolley(self, self.bundles)
        # Never rebroadcast publicly, also after a reorg (not followed up there yet).
        self._recovery.skip = self.bundles.book.owns

    async def start(self) -> None:
        """Sync the account's nonce (its public and lane-0 transactions), then every lane's."""

        async def pending() -> int:
            return int(await self.chain.call("eth_getTransactionCount",
                                              [self.address, "pending"]), 16)

        if isinstance(self.bundles, AheadSubmitter):  # before any nonce stream is synced
            self.bundles.adopt()
        await self.nonces.sync(pending, self.bundles.max_nonce())
        await self.bundles.start()
        unsigned = self.journal.abandon_unsigned()
        if unsigned:
            log.info("journal: intents planned but never signed by an earlier run are free again",
                     count=unsigned)

    def checkpoint(self) -> None:
        """Between steps, as `Executor.checkpoint`, and the bundles' ahead file emptied."""
        super().checkpoint()
        if isinstance(self.bundles, AheadSubmitter):
            self.bundles.clear()

    def recovery(self, keys: set[str] | None = None, *, reorged: bool = False) -> list[RecoveryJob]:
        """The public recovery of everything but bundled transactions, and the submitter's
        recovery of those (followed until their last target block, never rebroadcast)."""
        public = self._recovery.jobs(keys, reorged=reorged)  # skips the bundled ones
        return public if reorged else [*public, *self.bundles.recovery(keys)]

    async def launch(
        self, intents: Sequence[TxIntent], base_fee: int,
        presigned: Mapping[str, Presigned] | None = None, *, backrun: Backrun | None = None,
    ) -> list[Follow]:
        """Each intent in a bundle of its own, to every builder, or all of them right behind
        `backrun` when given; `presigned`: an armed level's transactions, signed on the
        lanes by `volley.presign`, sent as signed where they fit."""
        return await self.bundles.launch(intents, base_fee, backrun, presigned)

    async def execute(self, intent: TxIntent, base_fee: int) -> Outcome:
        [follow] = await self.launch([intent], base_fee)
        return await follow

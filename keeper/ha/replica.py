"""One replica of a sending account: a standby with warm books, or the leader, by its lease.

With `[ha]`, `keeper run` builds the same keeper as always (follower, engine,
dispatcher, executor) on a `PgJournal`, and hands it a `Replica`:

- **Standby.** The engine follows the chain, applies every block and ranks; the
  dispatcher sends nothing (`sending()` is false: `SendGate`), the executor neither
  syncs its nonce nor recovers anything, the journal refuses writes (no epoch).
- **Promotion.** When the lease thread takes the lease (keeper/ha/lease.py), the journal
  writes under the new epoch, the executor syncs its nonce from the chain and the shared
  journal and frees the old leader's unsigned claims (`Executor.start`), and the
  dispatcher settles what the journal holds signed or sent (`Dispatcher.promoted`: the
  same recovery as a restart: the same bytes re-broadcast, never re-signed; in bundle
  mode the old leader's bundled transactions are followed to their last target block and
  sent again to the builders while worth it, their lanes held until then). Then it sends.
- **Loss.** When the lease lapses (a renewal missed its deadline, or another replica took
  it), sending stops at once: every broadcast is checked against the lease in memory
  (`check_send`, the chain client's `send_gate`; in bundle mode the builder client's too)
  and every journal write is fenced by the epoch (bundle mode's rows as well). Prepared
  liquidations are dropped, the loop is cancelled with whatever it had in flight (the new
  leader settles it from the journal) and `keeper run` exits with code 75 (`LeaseLost`):
  the supervisor starts it again, as a standby.

A clean stop (SIGTERM) ends the lease at the server after the loop has finished, so a
standby takes over at once instead of waiting for the expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import IO, TYPE_CHECKING, Any

import click
import structlog

from keeper.errors import KeeperError, RetryableError
from keeper.execution.bundles_executor import BundleExecutor
from keeper.execution.journal_pg import Fenced, PgJournal, lease_key
from keeper.ha.lease import Lease, replica_name

if TYPE_CHECKING:
    from keeper.wiring import Keeper

log = structlog.get_logger(__name__)

EXIT_LEASE_LOST = 75  # EX_TEMPFAIL: restart me (as a standby)


class LeaseLost(click.ClickException, KeeperError):
    """This replica led and lost its lease: `keeper run` exits 75 for the supervisor to
    restart it (as a standby), with one line."""

    exit_code = EXIT_LEASE_LOST

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"keeper: {self.format_message()}", err=True)


class NotLeading(KeeperError):
    """A broadcast refused in memory: this replica does not hold the leader lease."""


class Replica:
    """The role of one replica; see the module docstring. `sending()` is the dispatcher's
    gate, `check_send` the chain client's."""

    def __init__(self, lease: Lease, journal: PgJournal) -> None:
        self.lease = lease
        self.journal = journal
        self.leading = False
        self.lost = False
        self.promoted_in: float | None = None  # seconds from taking the lease to sending

    @classmethod
    def open(
        cls, dsn: str, schema: str, chain_id: int, address: str, *,
        name: str | None = None, lease_seconds: float = 1.0,
    ) -> Replica:
        """The shared journal (a standby's: no epoch yet) and the lease of this account."""
        key = lease_key(chain_id, address)
        lease = Lease(dsn, schema, key, replica_name(name), seconds=lease_seconds)
        journal = PgJournal(dsn, schema, key, held=lease.held, idle_seconds=lease_seconds)
        return cls(lease, journal)

    def sending(self) -> bool:
        return self.leading and self.lease.held()

    def check_send(self) -> None:
        if not self.sending():
            raise NotLeading("not the leader (the lease is not held): not broadcast")

    async def run(self, keeper: Keeper, loop: Coroutine[Any, Any, None],
                  stop: asyncio.Event) -> None:
        """Run the keeper's `loop` as this replica until it ends; raises `LeaseLost` (the
        loop cancelled at once) when the lease is lost after this replica led."""
        changed = asyncio.Event()
        running = asyncio.get_running_loop()

        def wake() -> None:  # from the lease's thread
            running.call_soon_threadsafe(changed.set)

        if keeper.executor is not None:  # every broadcast checks the lease in memory
            keeper.executor.chain.send_gate = self.check_send
            if isinstance(keeper.executor, BundleExecutor):  # and every bundle
                keeper.executor.bundles.client.send_gate = self.check_send
        self.lease.start(wake)
        work = asyncio.ensure_future(loop)
        role = asyncio.ensure_future(self._follow_lease(keeper, changed, stop))
        try:
            await asyncio.wait({work, role}, return_when=asyncio.FIRST_COMPLETED)
            if self.lost:
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work
                raise LeaseLost(f"leader lease lost (epoch {self.lease.epoch}): stopped "
                                "sending; exiting to restart as a standby")
            await work
        finally:
            role.cancel()
            work.cancel()
            # Released only while still ours (same holder and epoch): a standby then takes
            # over at once instead of waiting for the expiry.
            await asyncio.to_thread(self.lease.stop, release=True)

    async def _follow_lease(self, keeper: Keeper, changed: asyncio.Event,
                            stop: asyncio.Event) -> None:
        while not stop.is_set():
            await changed.wait()
            changed.clear()
            if self.lease.lost.is_set():
                self._step_down(keeper)
                return
            if self.lease.epoch is None or self.leading:
                continue
            try:
                promoted = await self._promote(keeper)
            except Exception:  # e.g. the journal's server: never hold a lease without leading
                log.exception("promotion failed")
                promoted = False
            if not promoted:
                self._step_down(keeper)
                return

    async def _promote(self, keeper: Keeper) -> bool:
        started = time.monotonic()
        self.journal.epoch = self.lease.epoch
        executor, dispatcher = keeper.executor, keeper.dispatcher
        assert executor is not None and dispatcher is not None, "a replica sends"
        while True:
            try:
                await executor.start()  # nonce from the chain and the shared journal
                break
            except Fenced:
                return False  # lost before it could lead
            except RetryableError as exc:  # the node: try again while the lease holds
                log.warning("promotion: cannot sync the nonce; retrying", reason=str(exc))
                if not self.lease.held():
                    return False
                await asyncio.sleep(0.1)
        self.leading = True
        dispatcher.promoted()  # settle the old leader's sends from the journal
        self.promoted_in = time.monotonic() - started
        log.warning("leading: this replica signs and sends", epoch=self.lease.epoch,
                    promoted_in=round(self.promoted_in, 3),
                    next_nonce=executor.nonces.next_nonce)
        return True

    def _step_down(self, keeper: Keeper) -> None:
        self.leading = False
        self.lost = True
        if keeper.prepared is not None:
            keeper.prepared.tasks = None  # prepared liquidations can no longer fire
        log.error("stepping down: this replica no longer sends", epoch=self.lease.epoch)

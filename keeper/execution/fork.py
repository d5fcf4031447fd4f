"""Dry-run: a local anvil fork of the configured chain, where the executor sends instead.

`DryRunFork.start(url, chain_id, block)` runs anvil (`keeper.anvil.Anvil`,
a child process on a free loopback port that dies with the keeper) forked from
`url` at `block`, with the real chain id and no dev accounts, so the sending
account has exactly its real balances there; `rpc` is an `HttpRpc` to it.

In dry-run the engine keeps reading the real chain; only the executor talks
to the fork (a `ForkExecutor`, whose `follow` hook is `DryRunFork.follow`).
Before each balance read the engine passes its head to `follow`: when the
fork was forked at an older block and nothing of the executor is in flight
on it, the fork is moved to that block with `anvil_reset`. A reset drops
whatever the fork mined itself (approvals included), so the executor forgets
its approvals and its nonces are resynced from the fork's pending nonce only:
the dry-run journal's nonces are fork nonces and say nothing about the chain.

Nothing here ever sends to the configured chain: the fork only reads from it.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import structlog

from keeper.anvil import Anvil
from keeper.chain.http import HttpRpc, RpcError
from keeper.errors import FatalError, KeeperError
from keeper.execution.executor import Executor
from keeper.secrets import redact, redact_url
from keeper.types import Outcome, TxIntent

log = structlog.get_logger(__name__)


class ForkError(FatalError):
    """The dry-run fork could not be started from the configured chain, or moved."""


class ForkExecutor(Executor):
    """An `Executor` on the fork that also counts its liquidations in progress.

    `Executor.busy` covers a send from its capital reservation (or its nonce)
    to its receipt; a reset between the claim and that reservation (while
    approving or simulating) would lose the approval or make the send revert,
    so every `execute_before` call (each send with simulation "before", and
    each one that needs an approval) counts as in flight here; a volley holds
    no await there. Simulations run at the fork's latest block, where the send
    will land.
    """

    _running = 0

    @property
    def busy(self) -> bool:
        return self._running > 0 or bool(self.nonces.in_flight) or super().busy

    def simulate(self, intent: TxIntent, *_block: Any, **__block: Any) -> Any:
        # The engine's block numbers are the chain's; on a fork that has mined its own
        # blocks they name other states (or none yet). The send lands on "latest".
        return super().simulate(intent, "latest")

    async def execute_before(self, *args: Any, **kwargs: Any) -> Outcome:
        # Passed through untouched: only the count matters here.
        self._running += 1
        try:
            return await super().execute_before(*args, **kwargs)
        finally:
            self._running -= 1

    def forget_fork_state(self) -> None:
        """The fork was reset: approvals it mined are gone, so approve again when needed."""
        self.allowances.forget()


class DryRunFork:
    """A running anvil fork of `url`, forked at `block`, and a client for it."""

    def __init__(self, url: str, anvil: Anvil, rpc: HttpRpc, block: int) -> None:
        self.url = url
        self.anvil = anvil
        self.rpc = rpc
        self.block = block
        """The block of the configured chain the fork was last forked at."""
        self.resets = 0
        self.executor: ForkExecutor | None = None
        self._lock = asyncio.Lock()

    @classmethod
    async def start(cls, url: str, chain_id: int, block: int) -> DryRunFork:
        """Fork `url` (which must serve `chain_id`) at `block`; one-line `ForkError` if not."""
        where = redact_url(url)
        try:
            source = await HttpRpc.open(url)
        except KeeperError as exc:
            raise ForkError(f"dry-run: cannot fork {where}: {exc}") from None
        try:
            if source.chain_id != chain_id:
                raise ForkError(
                    f"dry-run: {where} serves chain id {source.chain_id}, not {chain_id}"
                )
            if await source.call("eth_getBlockByNumber", [hex(block), False]) is None:
                raise ForkError(f"dry-run: {where} has no block {block} to fork at")
        except RpcError as exc:
            raise ForkError(f"dry-run: cannot fork {where}: {exc}") from None
        finally:
            await source.aclose()
        anvil = Anvil(
            chain_id=chain_id,
            # No dev accounts: the sender keeps its real ETH balance. No disk cache of
            # the remote's state: a long dry run would leave one per fork block.
            args=["--fork-url", url, "--fork-block-number", str(block),
                  "--accounts", "0", "--no-storage-caching"],
        )
        try:
            # In this thread, not a worker: anvil's PR_SET_PDEATHSIG fires when the
            # thread that started it exits, and a worker thread may exit first.
            anvil.start()
        except (KeeperError, OSError) as exc:
            reason = redact(str(exc).replace(url, where))  # anvil may quote the URL
            raise ForkError(f"dry-run: cannot start the local fork of {where}: {reason}") from None
        try:
            rpc = await HttpRpc.open(anvil.rpc_url)
        except BaseException:
            anvil.stop()
            raise
        log.info("dry-run fork started", source=where, block=block, rpc=anvil.rpc_url,
                 pid=anvil.pid)
        return cls(url, anvil, rpc, block)

    def attach(self, executor: ForkExecutor) -> None:
        """The executor sending to this fork (its `follow` hook must be `self.follow`)."""
        self.executor = executor

    async def resync(self) -> None:
        """Set the executor's next nonce from the fork alone (the journal's are fork nonces)."""
        executor = self.executor
        if executor is None:
            return
        address = executor.address

        async def pending() -> int:
            return int(await self.rpc.call("eth_getTransactionCount", [address, "pending"]), 16)

        await executor.nonces.sync(pending, None)

    @property
    def busy(self) -> bool:
        return self.executor is not None and self.executor.busy

    async def follow(self, block: int) -> None:
        """Move the fork to `block` if it is behind and nothing is in flight on it."""
        code = self.anvil.poll()
        if code is not None:  # else every later call would only retry a dead endpoint
            raise ForkError(f"dry-run: the local fork's anvil exited (code {code})")
        if block <= self.block or self.busy:
            return
        async with self._lock:
            if block <= self.block or self.busy:
                return
            forking = {"forking": {"jsonRpcUrl": self.url, "blockNumber": block}}
            try:
                await self.rpc.call("anvil_reset", [forking])
            except RpcError as exc:
                raise ForkError(f"dry-run: cannot move the fork to block {block}: "
                                f"{exc.message}") from None
            self.block = block
            self.resets += 1
            if self.executor is not None:
                self.executor.forget_fork_state()
                await self.resync()
            log.debug("dry-run fork moved", block=block)

    async def aclose(self) -> None:
        """Close the client and stop anvil (SIGTERM, then SIGKILL after 5 s)."""
        try:
            await self.rpc.aclose()
        finally:
            self.anvil.stop()

    async def __aenter__(self) -> DryRunFork:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

"""The replay loop of `keeper backtest --rpc/--tape` (see `keeper.backtest.archive` for the
method): one historical block at a time rebuilt on the fork, the keeper's engine stepped and
its transactions inserted, each block checked against history.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from keeper.backtest.history import (
    HistoricalBlock,
    History,
    fingerprint_calls,
    normalized,
)
from keeper.backtest.model import BacktestReport, Mode
from keeper.backtest.tally import Tally
from keeper.backtest.trial import Insert, pool_raws, trial_block
from keeper.chain.http import HttpRpc, RpcError
from keeper.wiring import Keeper

log = structlog.get_logger(__name__)

T = TypeVar("T")
Progress = Callable[[int, int], None]
BROADCAST_TIMEOUT = 5.0  # how long a block waits for the keeper's sends to reach the pool
PREFETCH = 8  # historical blocks read ahead of the replay
HEALTH_SAMPLES = 100


@dataclass
class BlockCheck:
    """How one replayed block compares with the historical one."""

    number: int
    same_txs: bool  # passive: equal tx hash lists; active: history's txs in order among them
    same_receipts_root: bool
    fingerprint_diff: list[str]  # fingerprint keys whose values differ
    failed: list[str]  # historical txs that succeeded in history and failed on the fork
    keeper_txs: list[str]

    @property
    def reproduced(self) -> bool:
        return (self.same_txs and self.same_receipts_root and not self.fingerprint_diff
                and not self.failed)


@dataclass
class ReplayResult:
    report: BacktestReport
    checks: list[BlockCheck] = field(default_factory=list)

    @property
    def reproduced(self) -> int:
        return sum(c.reproduced for c in self.checks)


class Sends(asyncio.TaskGroup):
    """The TaskGroup of the keeper's sends; it remembers them, so the end of a replay can
    cancel those still waiting for a block that will not come (and the group can close).
    The archive replay here and the devnet replay (devnet_replay.py) both use it."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[asyncio.Task[Any]] = []

    def create_task(
        self, coro: Generator[Any, None, T] | Coroutine[Any, Any, T], *,
        name: str | None = None, context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        task = super().create_task(coro, name=name, context=context)
        self.started.append(task)
        return task


class Replay:
    """One replay of [from_block, to_block] of `history` on `fork` (already at from_block-1)."""

    def __init__(
        self, history: History, fork: HttpRpc, keeper: Keeper | None, *, insert: Insert,
        from_block: int, to_block: int, mode: Mode, progress: Progress | None,
    ) -> None:
        self.history = history
        self.fork = fork
        self.keeper = keeper
        self.insert = insert
        self.from_block, self.to_block = from_block, to_block
        self.progress = progress
        self.mode: Mode = mode
        self.keeper_address = keeper.executor.address if keeper and keeper.executor else None
        self.checks: list[BlockCheck] = []
        self.tally = Tally(fork, keeper, insert)
        # The health-factor distribution, sampled on at most HEALTH_SAMPLES blocks.
        self.health_every = max(1, (to_block - from_block + 1) // HEALTH_SAMPLES)

    # -- the fork ----------------------------------------------------------------------------

    async def _set_env(self, block: HistoricalBlock) -> None:
        await self.fork.batch([
            ("anvil_setNextBlockBaseFeePerGas", [hex(block.base_fee)]),
            ("evm_setNextBlockTimestamp", [block.timestamp]),
            ("anvil_setCoinbase", [block.coinbase]),
            ("evm_setBlockGasLimit", [hex(block.gas_limit)]),
        ])

    async def _send(self, raws: Sequence[str]) -> None:
        """Into the pool in this order (`--order fifo` keeps it in the block)."""
        try:
            # One JSON-RPC batch: anvil 1.7 adds its items to the pool in order (seen on
            # every replayed block so far; the per-block check of tx order would show it).
            await self.fork.batch([("eth_sendRawTransaction", [raw]) for raw in raws])
        except RpcError:
            # A refused one fails the whole answer: send the rest one at a time ("already
            # known" for those the batch got in), logging what the fork refuses.
            for raw in raws:
                try:
                    await self.fork.call("eth_sendRawTransaction", [raw])
                except RpcError as exc:
                    if "already" not in exc.message.lower():
                        log.warning("the fork refused a transaction", reason=exc.message)

    async def _keeper_pool(self) -> list[str]:
        """The keeper's transactions waiting in the fork's pool, by nonce, as raw bytes."""
        return await pool_raws(self.fork, self.keeper_address)

    async def _caught_up(self) -> None:
        """Wait until every liquidation the engine has in flight has a transaction in the
        pool, or has ended. Before a step: the sends mined in the new block have seen their
        receipts (as a live keeper would by the next head), so what the engine may send
        again does not depend on timing. After: the next block holds what it decided."""
        assert self.keeper is not None
        if self.keeper.executor is None:
            return
        deadline = time.monotonic() + BROADCAST_TIMEOUT
        while self.keeper.inflight > len(await self._keeper_pool()):
            if time.monotonic() > deadline:
                log.warning("keeper sends still pending; building the block without them",
                            inflight=self.keeper.inflight)
                return
            await asyncio.sleep(0.005)

    # -- the keeper --------------------------------------------------------------------------

    def _oracle_index(self, block: HistoricalBlock) -> int | None:
        """Index of the block's last price-feed update transaction (None: none, or the
        keeper does not insert after it)."""
        found = self._last_feed_update(block)
        if found is not None:
            self.tally.price_blocks.add(block.number)
        if self.insert != "after-oracle" or self.keeper is None or self.keeper.executor is None:
            return None
        return found

    def _last_feed_update(self, block: HistoricalBlock) -> int | None:
        if self.keeper is None:
            return None
        urgent = self.keeper.engine.urgent_filter()
        if urgent is None:
            return None
        addresses, topics = set(urgent.addresses), set(urgent.topics0)
        found = None
        for index, tx in enumerate(block.txs):
            if any(e["address"] in addresses and (not topics or e["topics"][0] in topics)
                   for e in tx.logs if e["topics"]):
                found = index
        return found

    async def _step(self, number: int, tasks: asyncio.TaskGroup, *, trial: bool = False
                    ) -> None:
        keeper = self.keeper
        assert keeper is not None
        await self._caught_up()
        # The engine takes the block as any step from its block source (the follower on the
        # fork); a trial step runs on copies of its state, thrown away afterwards.
        opportunities = await keeper.step(tasks, to=number, trial=trial)
        self.tally.saw(number, opportunities)
        if not trial and (number - self.from_block) % self.health_every == 0:
            assert keeper.engine.last is not None and keeper.engine.last.number == number
            self.tally.sample_health(keeper.engine.last)
        await self._caught_up()

    async def _trial(
        self, block: HistoricalBlock, upto: int, tasks: asyncio.TaskGroup
    ) -> list[str]:
        """The keeper's transactions decided on the state right after the feed update
        (`keeper.backtest.trial`). Leaves the fork at the parent block, pool empty."""
        return await trial_block(
            self.fork, number=block.number, sender=self.keeper_address,
            prefix=lambda: self._send([tx.raw for tx in block.txs[: upto + 1]]),
            step=lambda: self._step(block.number, tasks, trial=True))

    # -- one block ---------------------------------------------------------------------------

    async def _replay_block(self, block: HistoricalBlock, tasks: asyncio.TaskGroup) -> None:
        earlier = await self._keeper_pool()
        await self._set_env(block)
        upto = self._oracle_index(block)
        raws = [tx.raw for tx in block.txs]
        if upto is None:
            await self._send(raws)  # after the keeper's earlier sends, already in the pool
        else:
            decided = await self._trial(block, upto, tasks)
            await self._set_env(block)
            await self._send([*earlier, *raws[: upto + 1], *decided, *raws[upto + 1:]])
        await self.fork.call("evm_mine", [])
        if self.keeper is not None:
            await self._step(block.number, tasks)
        await self._check(block)

    async def _check(self, block: HistoricalBlock) -> None:
        # One batch: the replayed header, the historical txs' receipts, the fingerprint.
        prints_calls = fingerprint_calls(block.number, block.coinbase, block.txs)
        replayed, *answers = await self.fork.batch(
            [("eth_getBlockByNumber", [hex(block.number), False])]
            + [("eth_getTransactionReceipt", [tx.hash]) for tx in block.txs]
            + [(method, params) for _key, method, params in prints_calls])
        receipts, values = answers[: len(block.txs)], answers[len(block.txs):]
        hashes = [h.lower() for h in replayed["transactions"]]
        wanted = [tx.hash.lower() for tx in block.txs]
        known = set(wanted)
        ours = [h for h in hashes if h not in known]
        in_order = [h for h in hashes if h in known] == wanted
        failed = [tx.hash for tx, rc in zip(block.txs, receipts, strict=True)
                  if tx.status == 1 and (rc is None or int(rc["status"], 16) != 1)]
        prints = normalized(prints_calls, values)
        diff = sorted(k for k, v in block.fingerprint.items() if prints.get(k) != v)
        self.checks.append(BlockCheck(
            block.number, in_order and (not ours or self.keeper_address is not None),
            replayed["receiptsRoot"] == block.receipts_root, diff, failed, ours))
        await self.tally.note_block(block, receipts)

    # -- the whole range ---------------------------------------------------------------------

    async def run(self, chain_id: int) -> ReplayResult:
        started = time.monotonic()
        quote = await self.tally.start()
        report = BacktestReport(self.mode, chain_id, self.from_block, self.to_block, quote)
        total = self.to_block - self.from_block + 1
        queue: asyncio.Queue[HistoricalBlock] = asyncio.Queue(PREFETCH)

        async def prefetch() -> None:
            for number in range(self.from_block, self.to_block + 1):
                await queue.put(await self.history.block(number))

        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(prefetch())
            try:
                async with Sends() as sends:
                    for done in range(1, total + 1):
                        await self._replay_block(await queue.get(), sends)
                        report.blocks_replayed = done
                        if self.progress is not None:
                            self.progress(done, total)
                    await self._drain(sends)
            finally:
                reader.cancel()
        report.seconds = time.monotonic() - started
        await self.tally.fill(report, self.checks)
        return ReplayResult(report, self.checks)

    async def _drain(self, sends: Sends) -> None:
        """Let sends mined in the last block settle; cancel those the range never mined."""
        if self.keeper is None or self.keeper.executor is None:
            return
        left = len(await self._keeper_pool())
        deadline = time.monotonic() + BROADCAST_TIMEOUT
        while self.keeper.inflight > left and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for task in sends.started:
            task.cancel()

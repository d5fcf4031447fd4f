"""The chain follower: heads in, one typed `ChainStep` out per step of the engine.

It owns everything between the node and the engine core:

- intake: `newHeads` and the urgent (price-feed) logs over a WebSocket, and HTTP head
  polling whenever there is no socket, it is down, or it has just reconnected (so what
  was missed is backfilled even if no new block comes); with several endpoints, the
  failover pool's stalled-head check on every poll;
- "the newest head wins": heads that arrive while the engine works only replace the
  target, they never queue up; an urgent log starts the work on its block before that
  block's header arrives;
- the fetch of every block's logs since the last processed one with the headers that
  are needed, in one batch (`HttpRpc.logs_and_headers`);
- reorgs: the first new block's parent must be the last block processed; if not, the
  common ancestor is found in a ring of the last `RING_SIZE` processed heads and the
  step says how deep the reorg was (the engine rebuilds its state at the new head).

The engine pulls: `next_step(log_filter, stop)` waits for a new target and returns
its step (the filter is passed each time because a strategy's subscriptions may grow),
and `processed(step)` tells the follower the engine has applied it. A backtest or a
replay is another `BlockSource` (keeper/types.py's `ChainStep` is all the engine sees).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from keeper.chain.failover import FailoverRpc
from keeper.chain.http import HttpRpc
from keeper.chain.ws import WsSubscriptions, heads, logs
from keeper.errors import RetryableError
from keeper.types import BlockRef, ChainStep, Event, LogFilter

log = structlog.get_logger(__name__)

RING_SIZE = 128  # recent processed heads kept to find a reorg's common ancestor
HEAD_GRACE = 0.002  # seconds a step waits after a socket head for its block's urgent logs


def block_ref(raw: Mapping[str, Any]) -> BlockRef:
    """A header as the node gave it (`eth_getBlockByNumber`, `newHeads`) -> `BlockRef`."""
    return BlockRef(
        number=int(raw["number"], 16),
        hash=raw["hash"],
        parent_hash=raw["parentHash"],
        timestamp=int(raw["timestamp"], 16),
        base_fee=int(raw.get("baseFeePerGas", "0x0"), 16),
        gas_used=int(raw.get("gasUsed", "0x0"), 16),
        gas_limit=int(raw.get("gasLimit", "0x0"), 16),
    )


class BlockSource(Protocol):
    """Where the engine's steps come from: the live chain, a fork, a backtest's replay."""

    async def latest(self) -> BlockRef:
        """The current head (the engine cold-starts its strategies there)."""
        ...

    async def follow(self, stop: asyncio.Event, urgent: LogFilter | None) -> None:
        """Intake, run as a task beside the engine's loop until `stop` is set; `urgent`
        logs (price feeds) start the work on their block before its header arrives."""
        ...

    def processed(self, step: ChainStep) -> None:
        """The engine is done with `step` (applied it, unless it is a trial)."""
        ...

    async def next_step(self, log_filter: LogFilter, stop: asyncio.Event) -> ChainStep | None:
        """The next step after the last processed head; None once `stop` is set."""
        ...


@dataclass
class IntakeStats:
    """What the intake saw (the demo's live view and the tests read it)."""

    urgent_logs: int = 0
    urgent_log_at: float = 0.0  # time.perf_counter() when the last urgent log arrived
    reorgs: int = 0


class ChainFollower:
    """Follows one chain over HTTP (and a WebSocket when given); a `BlockSource`."""

    def __init__(
        self, chain: HttpRpc, *, ws: WsSubscriptions | None = None,
        poll_interval: float = 0.05, on_socket: Callable[[bool], None] | None = None,
        on_urgent: Callable[[Mapping[str, Any]], object] | None = None,
        on_head: Callable[[int], None] | None = None,
    ) -> None:
        self.chain = chain
        self.on_head = on_head  # each head number as it is heard (the sends' deadline)
        # Called with each urgent log as it arrives, before its block is fetched (the
        # prepared liquidations send on it).
        self.on_urgent = on_urgent
        self.ws = ws
        self.poll_interval = poll_interval
        self._on_socket = on_socket  # called with the socket's state on every poll
        self.stats = IntakeStats()
        self.last: BlockRef | None = None
        self._ring: dict[int, str] = {}  # block number -> hash of the heads processed
        self._target: tuple[int, Mapping[str, Any] | None] | None = None
        self._wake = asyncio.Event()
        self._urgent_follows = False  # a block's urgent logs come over the socket after its head
        self._poll_now = asyncio.Event()  # a (re)connected socket: read the head once now
        # Awaited before a step is fetched: the loop sets it to "until the sends dispatched
        # so far have left", so a level fired on a feed's log has the node to itself (its
        # block's step used to fetch the block and its logs at the same moment).
        self.hold: Callable[[], Awaitable[None]] | None = None

    # -- what the engine calls -----------------------------------------------------------

    async def latest(self) -> BlockRef:
        return block_ref(await self.chain.call("eth_getBlockByNumber", ["latest", False]))

    def processed(self, step: ChainStep) -> None:
        if not step.trial:
            self.mark(step.head)

    def behind(self) -> bool:
        """A head newer than the last processed one has arrived (its step is waiting)."""
        target, last = self._target, self.last
        return target is not None and last is not None and target[0] > last.number

    def mark(self, head: BlockRef) -> None:
        """Every block up to `head` is applied (the cold start, a step)."""
        self._ring[head.number] = head.hash.lower()
        for number in [n for n in self._ring if n <= head.number - RING_SIZE or n > head.number]:
            del self._ring[number]
        self.last = head

    async def next_step(self, log_filter: LogFilter, stop: asyncio.Event) -> ChainStep | None:
        """Wait for a head newer than the last processed one; fetch its step. A node that
        cannot give the target's header yet is asked again when the next head comes;
        retryable errors are retried here, after a pause, with the target kept."""
        while not stop.is_set():
            target = self._target
            if target is None or self.last is None or target[0] <= self.last.number:
                waking = asyncio.ensure_future(self._wake.wait())
                stopping = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait({waking, stopping}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waking.cancel()
                    stopping.cancel()
                self._wake.clear()
                continue
            if self.hold is not None:
                if self._urgent_follows and target[1] is not None:
                    # A head over the socket: its block's feed logs come right after it
                    # (anvil and geth push newHeads first). Fetched at once, the step's
                    # requests reached the node with a fired level's first send and
                    # delayed its answer; after this pause a log heard meanwhile has its
                    # sends launched, and `hold` waits for them.
                    await asyncio.sleep(HEAD_GRACE)
                await self.hold()
                target = self._target or target  # a newer head may have come meanwhile
            try:
                step = await self.step_to(log_filter, *target)
            except RetryableError as exc:
                log.warning("cannot process block; retrying", block=target[0], reason=str(exc))
                await self._pause(stop)
                continue
            if step is not None:
                return step
            self._target = None  # the node lacks that header yet: its own head will come
        return None

    async def step_to(
        self, log_filter: LogFilter, number: int | None = None,
        raw: Mapping[str, Any] | None = None,
    ) -> ChainStep | None:
        """The step from the last processed block to block `number` (the head when None),
        given its header `raw` when known. None when the node lacks that header yet."""
        assert self.last is not None, "processed(head) first"
        start = self.last.number + 1
        if number is None:
            raw = await self.chain.call("eth_getBlockByNumber", ["latest", False])
            number = int(raw["number"], 16)
        if number < start:
            return None
        # The first new block's header comes in the same batch: its parent must be the
        # last block processed, or the chain reorganized under us.
        wanted = ([] if raw is not None else [number]) + ([start] if number > start else [])
        raws, events = await self.chain.logs_and_headers(log_filter, start, number, wanted)
        found = dict(zip(wanted, raws, strict=True))
        if raw is None:
            raw = found[number]
            if raw is None:
                return None
        head = block_ref(raw)
        first_raw = found.get(start)
        first = block_ref(first_raw) if first_raw is not None else (
            head if number == start else None)
        parent = first.parent_hash if first is not None else head.parent_hash
        if parent.lower() != self.last.hash.lower():
            return await self._reorganized(head)
        headers = {head.number: head}
        if first is not None:
            headers[first.number] = first
        missing = sorted({e.block_number for e in events} - set(headers))
        if missing:
            answers = await self.chain.batch(
                [("eth_getBlockByNumber", [hex(n), False]) for n in missing])
            headers.update({block_ref(r).number: block_ref(r) for r in answers})
        by_block: dict[int, list[Event]] = {}
        for event in events:
            by_block.setdefault(event.block_number, []).append(event)
        blocks = tuple((headers[n], tuple(by_block[n])) for n in sorted(by_block))
        if not blocks or blocks[-1][0].number != head.number:
            blocks = (*blocks, (head, ()))
        return ChainStep(head, blocks, span=number - start + 1)

    async def _reorganized(self, head: BlockRef) -> ChainStep:
        assert self.last is not None
        ancestor = await self._common_ancestor(head)
        depth = self.last.number - ancestor
        log.warning("reorg: the last block processed is no longer on the chain; rebuilding",
                    orphaned=self.last.number, orphan_hash=self.last.hash, head=head.number,
                    ancestor=ancestor, depth=depth)
        self.stats.reorgs += 1
        return ChainStep(head, (), span=1, reorg_depth=depth, ancestor=ancestor)

    async def _common_ancestor(self, head: BlockRef) -> int:
        """The newest processed head still on the chain (one batch of headers); below the
        ring when the reorg is deeper than it (then everything in it counts as orphaned)."""
        numbers = sorted((n for n in self._ring if n <= head.number), reverse=True)
        found = await self.chain.batch(
            [("eth_getBlockByNumber", [hex(n), False]) for n in numbers]) if numbers else []
        for number, raw in zip(numbers, found, strict=True):
            if raw is not None and str(raw["hash"]).lower() == self._ring[number]:
                return number
        return (min(numbers) if numbers else head.number) - 1

    # -- intake --------------------------------------------------------------------------

    async def follow(self, stop: asyncio.Event, urgent: LogFilter | None = None) -> None:
        """Intake until `stop`: the socket's subscriptions and the HTTP head poller."""
        async with asyncio.TaskGroup() as tasks:
            if self.ws is not None:
                subscriptions = [heads(self._heard_head)]
                if urgent is not None:
                    subscriptions.append(logs(urgent, self._heard_log))
                    self._urgent_follows = True
                tasks.create_task(self.ws.run(subscriptions, stop,
                                              on_connect=self._poll_now.set))
            tasks.create_task(self._poll_heads(stop))

    def _heard(self, number: int, raw: Mapping[str, Any] | None) -> None:
        """A head (or an urgent log of block `number`) arrived: the newest one wins."""
        if self.on_head is not None:
            self.on_head(number)
        target = self._target
        if target is None or number > target[0] or (number == target[0] and target[1] is None):
            self._target = (number, raw)
            if self.last is None or number > self.last.number:
                self._wake.set()

    def _heard_head(self, raw: dict[str, Any]) -> None:
        self._heard(int(raw["number"], 16), raw)

    def _heard_log(self, raw: dict[str, Any]) -> None:
        if raw.get("removed") or raw.get("blockNumber") is None:
            return  # reorged out (or still pending): the block intake sees the truth
        self.stats.urgent_logs += 1
        self.stats.urgent_log_at = time.perf_counter()
        if self.on_urgent is not None:
            try:
                self.on_urgent(raw)
            except Exception:
                # Intake must go on: the block's step still sees the log.
                log.exception("acting on an urgent log failed", block=raw.get("blockNumber"))
        self._heard(int(raw["blockNumber"], 16), None)

    async def _poll_heads(self, stop: asyncio.Event) -> None:
        """HTTP head polling: always without a WebSocket, else while it is down or has just
        reconnected (so missed blocks are backfilled even if no new block comes)."""
        ws = self.ws
        seen_connects = -1
        while not stop.is_set():
            if ws is not None and self._on_socket is not None:
                self._on_socket(ws.connected)
            if isinstance(self.chain, FailoverRpc) and await self.chain.check_head():
                seen_connects = -1  # a new endpoint: read its head now, socket or not
            if ws is None or not ws.connected or ws.connects != seen_connects:
                seen_connects = ws.connects if ws is not None and ws.connected else seen_connects
                try:
                    raw = await self.chain.call("eth_getBlockByNumber", ["latest", False])
                except RetryableError as exc:
                    log.warning("head poll failed; retrying", reason=str(exc))
                    seen_connects = -1
                else:
                    self._heard_head(raw)
            await self._pause(stop, self._poll_now)
            self._poll_now.clear()

    async def _pause(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        """Wait `poll_interval`, or less if `stop` (or `wake`) is set meanwhile."""
        waiters = [asyncio.ensure_future(e.wait()) for e in (stop, wake) if e is not None]
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait(waiters, timeout=self.poll_interval,
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

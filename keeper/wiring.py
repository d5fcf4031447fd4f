"""One keeper, wired once at start-up: chain follower → engine core → dispatcher → executor.

`assemble` takes the parts the caller built (the RPC client, the strategies, the DEX
book, and, when sending, the executor and the `LivePositions` it was given) and
connects them; nothing writes into another stage's fields afterwards. `keeper run`,
`keeper scan`, the demo, the backtests and the tests all build their keeper here, so
the stages are the same in every mode: only the block source and the executor differ.

    follower (keeper/chain/follower.py)   heads and logs in; one ChainStep per step
    engine   (keeper/engine.py)           strategies, candidates, ranking
    dispatcher (keeper/execution/dispatch.py)  sizing, intents, batching, outcomes
    executor (keeper/execution/executor.py)    claim, simulate, sign, send, settle
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from keeper.bids import BidPolicy
from keeper.chain.follower import ChainFollower
from keeper.chain.http import HttpRpc
from keeper.chain.ws import WsSubscriptions
from keeper.dex.uniswap_v2 import PairBook
from keeper.dex.venue import Venue
from keeper.engine import Engine
from keeper.execution.dispatch import Dispatcher, LivePositions
from keeper.execution.executor import Executor
from keeper.execution.flash_route import FlashRoute
from keeper.execution.intents import IntentBuilder
from keeper.execution.outcomes import DEFAULT_KEEP, OutcomeLog
from keeper.execution.volley import Volley
from keeper.loop import drive
from keeper.monitor import Monitor
from keeper.prepared import DEFAULT_LEVELS, FeedRule, PreparedLiquidations
from keeper.routes import check_routes
from keeper.strategy import Capabilities, Strategy
from keeper.types import BlockRef, Opportunity


class Replication(Protocol):
    """With `[ha]`: the keeper is one replica of its account, leader or standby by a lease
    (keeper/ha/replica.py). `sending` gates the dispatcher; `run` runs the loop as it."""

    def sending(self) -> bool: ...

    async def run(self, keeper: Keeper, loop: Coroutine[Any, Any, None],
                  stop: asyncio.Event) -> None: ...


@dataclass
class Keeper:
    """The stages of one keeper, and the few calls the commands and tests make on them."""

    chain: HttpRpc
    follower: ChainFollower
    engine: Engine
    dispatcher: Dispatcher | None
    executor: Executor | None
    prepared: PreparedLiquidations | None = None
    replica: Replication | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the chain until `stop`; the daemon's loop (as a replica with `[ha]`)."""
        loop = drive(self.engine, self.follower, stop, self.prepared)
        if self.replica is not None:
            await self.replica.run(self, loop, stop)
        else:
            await loop

    async def sync(self) -> BlockRef:
        """Cold start every strategy at the current head."""
        head = await self.follower.latest()
        await self.engine.sync(head)
        check_routes(self.engine.strategies, self.engine.dex, self.engine.quote_token)
        self.follower.mark(head)
        return head

    async def step(
        self, tasks: asyncio.TaskGroup | None = None, *, to: int | None = None,
        trial: bool = False,
    ) -> list[Opportunity]:
        """One step to block `to` (the current head when None), as the daemon's loop takes
        it: apply, rank, and, with `tasks`, dispatch. Empty when there is nothing new.
        `trial`: on copies of the state, forgotten afterwards (a backtest's trial block)."""
        step = await self.follower.step_to(self.engine.log_filter(), to)
        if step is None:
            return []
        if trial:
            step = dataclasses.replace(step, trial=True)
        opportunities = await self.engine.advance(step, tasks)
        self.follower.processed(step)
        if not trial:
            self.engine.stats.processed = step.head.number
        return opportunities

    def head(self) -> BlockRef:
        """The last head the engine applied."""
        assert self.engine.last is not None, "sync() first"
        return self.engine.last

    def dispatch(self, opportunities: Sequence[Opportunity], tasks: asyncio.TaskGroup) -> int:
        """Hand ranked opportunities to the dispatcher (a keeper that sends)."""
        assert self.dispatcher is not None, "this keeper only observes"
        return self.dispatcher.dispatch(opportunities, tasks)

    @property
    def inflight(self) -> int:
        return self.dispatcher.inflight if self.dispatcher is not None else 0

    @property
    def volley(self) -> Volley | None:
        """The executor's racing send path (None: observing only, or sending bundles)."""
        executor = self.dispatcher.executor if self.dispatcher is not None else None
        volley = getattr(executor, "volley", None)
        return volley if isinstance(volley, Volley) else None

    @property
    def outcomes(self) -> OutcomeLog:
        """What the dispatcher recorded (empty when observing only)."""
        return self.dispatcher.outcomes if self.dispatcher is not None else OutcomeLog(0)

    async def aclose(self) -> None:
        executor = self.dispatcher.executor if self.dispatcher is not None else None
        bundles = getattr(executor, "bundles", None)  # bundle mode: its builder client
        if bundles is not None:
            await bundles.client.close()
        await self.chain.aclose()


def assemble(
    chain: HttpRpc, strategies: Sequence[Strategy], dex: PairBook, *, quote_token: str,
    min_profit: int, priority_fee: int, executor: Executor | None = None,
    live: LivePositions | None = None, flash: FlashRoute | None = None, batch_max: int = 5,
    monitor: Monitor | None = None, ws: WsSubscriptions | None = None,
    poll_interval: float = 0.05, keep_outcomes: int | None = DEFAULT_KEEP,
    bids: BidPolicy | None = None, exits: Venue | None = None,
    feed_rules: Mapping[str, FeedRule] | None = None, prepared_levels: int = DEFAULT_LEVELS,
    replica: Replication | None = None, send_deadline: float | None = None,
    block_time: float | None = None,
) -> Keeper:
    """The stages connected. With `executor`, `live` must be the `LivePositions` the
    executor was built with (its `still_there`). `exits`: where ranking prices and routes
    the exit swaps (`keeper.dex.venue`), the V2 pairs `dex` when not given. `feed_rules`:
    when each price feed posts; with them (and an executor), liquidations are prepared for
    the feeds' next answers, `prepared_levels` thresholds each way (keeper/prepared.py).
    `replica`: this keeper is one replica of its account (`[ha]`): it sends only as leader.
    `send_deadline`: seconds after a head was sealed past which a public send valued at it
    is not issued (keeper/execution/staleness.py; `block_time`: the chain's, from whose
    rhythm the seal is read); None: no deadline."""
    dispatcher: Dispatcher | None = None
    if bids is not None and flash is not None and getattr(executor, "bundles", None):
        # Bundles through the flash executor: the bid is paid to block.coinbase.
        bids = dataclasses.replace(bids, to_coinbase=True)
    if executor is not None:
        intents = IntentBuilder(
            strategies, Capabilities.of(strategies).flash, dex, quote_token=quote_token,
            min_profit=min_profit, flash=flash, batch_max=batch_max, exits=exits, bids=bids)
        dispatcher = Dispatcher(executor, intents, live or LivePositions(), monitor=monitor,
                                outcomes=OutcomeLog(keep_outcomes), gate=replica)
        if not getattr(executor, "bundles", None):  # a builder drops what would revert
            dispatcher.staleness.deadline = send_deadline
            dispatcher.staleness.block_time = block_time
    engine = Engine(chain, strategies, exits or dex, dispatcher, quote_token=quote_token,
                    min_profit=min_profit, priority_fee=priority_fee, monitor=monitor,
                    bids=bids)
    # A keeper that sends tells what it passed over (the missed-opportunity report).
    engine.passed_over.enabled = dispatcher is not None
    prepared = None
    if dispatcher is not None and feed_rules and prepared_levels > 0:
        prepared = PreparedLiquidations(engine, feed_rules, levels=prepared_levels)
    if executor is not None and ws is not None:
        executor.sender.fast = ws.request  # a volley's first send: one frame, socket open
    follower = ChainFollower(
        chain, ws=ws, poll_interval=poll_interval,
        on_socket=monitor.socket if monitor is not None else None,
        on_urgent=prepared.heard if prepared is not None else None,
        on_head=dispatcher.staleness.heard_head if dispatcher is not None else None)
    return Keeper(chain, follower, engine, dispatcher, executor, prepared, replica)

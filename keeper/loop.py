"""The daemon's loop: an engine driven by a block source until stopped.

`drive` cold-starts the engine at the source's head (retried with backoff: a slow or
failing node must not end the daemon), runs the source's intake beside it, and takes
one `ChainStep` at a time: the engine applies it, ranks, and dispatches, with every
send a task of the loop's TaskGroup (so stopping waits for what is in flight). When the
node fails after a step's blocks were applied (a refresh, the capital read), ranking is
tried again a few times before the next head; a rebuild after a reorg that failed is
stepped to again.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from collections.abc import Callable

import structlog

from keeper.chain.follower import BlockSource, ChainFollower
from keeper.engine import Engine
from keeper.errors import RetryableError
from keeper.prepared import PreparedLiquidations
from keeper.routes import check_routes
from keeper.types import ChainStep

log = structlog.get_logger(__name__)

EVALUATION_RETRIES = (0.05, 0.2, 0.5)  # pauses before ranking a block again after a node error
# The interpreter's thread switch interval while the loop runs (the default is 5 ms): when a
# ranking or a preparation runs in a worker thread and a feed's log arrives, the event loop
# waits up to this long for the GIL before it can send the level the log fires (measured:
# about 4 ms of the ~11 ms from the log to the first send).
SWITCH_INTERVAL = 0.0005


async def _advance_retrying(
    engine: Engine, step: ChainStep, tasks: asyncio.TaskGroup, stop: asyncio.Event
) -> bool:
    """`advance`; when the node fails after the blocks were applied (a refresh, the
    capital read), ranking is tried again a few times before the next head. False when
    the step was not applied (a rebuild after a reorg failed)."""
    try:
        await engine.advance(step, tasks)
        return True
    except RetryableError as exc:
        log.warning("cannot evaluate block; retrying", reason=str(exc))
    if step.trial:
        return True  # a trial's state is thrown away anyway
    if engine.last is None or engine.last.number != step.head.number:
        return False
    for pause in EVALUATION_RETRIES:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pause)
        if stop.is_set():
            break
        try:
            opportunities = await engine.evaluate(step.head, tasks)
        except RetryableError as exc:
            log.warning("cannot evaluate block; retrying", reason=str(exc))
            continue
        if engine.dispatcher is not None:
            engine.dispatcher.dispatch(opportunities, tasks)
        break
    return True


def settle_heap() -> None:
    """Collect once, then exempt every object alive now (the synced books, the ABIs, the
    clients: hundreds of thousands) from the collector's full passes (`gc.freeze`).

    A full pass walks every tracked object: on the devnet's 1,001 accounts it paused the
    loop for 65 ms (median of 22; 85 ms at most), at any point, a race's send path
    included. Frozen, a pass walks only what was made since; nothing frozen is garbage
    (the collection just before found it all reachable)."""
    gc.collect()
    gc.freeze()


def _idle(engine: Engine, source: BlockSource) -> bool:
    """No newer head waits at `source` (only the chain follower can tell) and none of our
    liquidations is in flight; with bundles, none is being launched (a bundle is followed
    for blocks by polls that need no CPU: waiting for all of them left the levels of a
    fired feed unprepared through a crash, and its next hinted answer was valued on the
    spot, ~20 ms, instead of sent from a level)."""
    behind = isinstance(source, ChainFollower) and source.behind()
    dispatcher = engine.dispatcher
    if dispatcher is None:
        return not behind
    if getattr(dispatcher.executor, "bundles", None) is not None:
        return not behind and not dispatcher._launching
    return not behind and dispatcher.inflight == 0


async def _prepare(
    prepared: PreparedLiquidations, step: ChainStep,
    abandon: Callable[[], bool] = lambda: False,
) -> None:
    """Prepare for the feeds' next answers; a node error only costs this step's levels."""
    try:
        await prepared.prepare(step.head, abandon=abandon,
                               changed=bool(step.events) or step.reorg_depth is not None)
    except RetryableError as exc:
        log.warning("cannot prepare liquidations for the next answers", reason=str(exc))


async def start(engine: Engine, source: BlockSource, stop: asyncio.Event) -> bool:
    """Cold start at the source's head, retried with backoff (a slow or failing node must
    not end the daemon); False if `stop` came first."""
    delay = 0.5
    while engine.last is None:
        try:
            head = await source.latest()
            await engine.sync(head)
        except RetryableError as exc:
            log.warning("cold start failed; retrying", reason=str(exc), retry_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return False
            delay = min(delay * 2, 30.0)
        else:
            # A debt asset without any route to the quote token is a configuration error.
            check_routes(engine.strategies, engine.dex, engine.quote_token)
            source.processed(ChainStep(head))
    return True


async def drive(
    engine: Engine, source: BlockSource, stop: asyncio.Event,
    prepared: PreparedLiquidations | None = None,
) -> None:
    """Follow `source` until `stop` is set; sends run as tasks of this TaskGroup.
    `prepared`: liquidations made ready after each step for the feeds' next answers, sent
    when a feed's log arrives (keeper/prepared.py)."""
    if not await start(engine, source, stop):
        return
    sys.setswitchinterval(SWITCH_INTERVAL)
    settle_heap()
    try:
        await _steps(engine, source, stop, prepared)
    finally:  # a process that goes on (tests, a backtest's trials) collects everything again
        gc.unfreeze()


async def _steps(
    engine: Engine, source: BlockSource, stop: asyncio.Event,
    prepared: PreparedLiquidations | None,
) -> None:
    """`drive`'s loop, once started: the sends are tasks of its TaskGroup."""
    async with asyncio.TaskGroup() as tasks:
        if prepared is not None:
            prepared.tasks = tasks
            if prepared.enabled and engine.last is not None:
                await _prepare(prepared, ChainStep(engine.last))
        if engine.dispatcher is not None:
            engine.dispatcher.recover(tasks)
            if isinstance(source, ChainFollower):
                source.hold = engine.dispatcher.launched
        intake = tasks.create_task(source.follow(stop, engine.urgent_filter()))
        while not stop.is_set():
            step = await source.next_step(engine.log_filter(), stop)
            if step is None:
                break
            structlog.contextvars.bind_contextvars(block=step.head.number)
            if prepared is not None and not step.trial:
                # Before the step is applied: from then on the dispatcher forgets our own
                # liquidations the book holds, and a feed log may fire a level meanwhile.
                prepared.applied(step)
                prepared.heard_step(step)  # a feed log the socket did not bring first
            if engine.dispatcher is not None:
                # A level fired on the feed's log: its sends leave before this step's work
                # takes the event loop (applying and ranking hold it for milliseconds).
                await engine.dispatcher.launched()
            applied = await _advance_retrying(engine, step, tasks, stop)
            if applied:
                source.processed(step)
                if not step.trial:
                    engine.stats.processed = step.head.number
                    # A newer head's step goes first (the levels are for the head they were
                    # prepared at, and a waiting step may hold the next answer itself), and
                    # sends in flight too: preparing is for when the keeper is idle.
                    if prepared is not None and prepared.enabled and _idle(engine, source):
                        await _prepare(prepared, step, lambda: not _idle(engine, source))
            else:  # the rebuild after a reorg failed: the source steps here again
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), EVALUATION_RETRIES[-1])
        intake.cancel()
        if engine.dispatcher is not None and engine.dispatcher.inflight:
            log.info("stopping: waiting for in-flight liquidations",
                     count=engine.dispatcher.inflight)

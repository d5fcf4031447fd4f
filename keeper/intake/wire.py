"""The intake in the daemon: built from `[intake]`, run beside the keeper's loop.

It needs prepared liquidations (`[[execution.feeds]]` and `prepared_levels` > 0): the
feeds it watches are the prepared ones (the addresses that emit `AnswerUpdated`, which
are also the `to` of their `transmit`), and what it sends is what those levels hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time

import structlog

from keeper.config import KeeperConfig
from keeper.errors import ConfigError
from keeper.execution.armed import at_block
from keeper.execution.bundles import Backrun
from keeper.intake.answers import PendingAnswer
from keeper.intake.evaluate import evaluated
from keeper.intake.react import Intake, later
from keeper.intake.sources import AnswerSource, HintStream, PendingSubscription, PoolPoller
from keeper.prepared import PreparedLiquidations
from keeper.secrets import redact_url
from keeper.types import BlockRef
from keeper.wiring import Keeper

log = structlog.get_logger(__name__)


class EarlyFire:
    """Fire for a pending answer, each liquidation a backrun of the oracle transaction,
    valued at the head so its bundle targets the next block (the one the oracle transaction
    is expected in): the deepest prepared level the answer reaches, at once and armed (its
    intents built, its first transactions signed ahead), as a mined log fires it; when
    none is ready (levels are rebuilt only while the loop is idle), what
    the answer opens is valued on its own (keeper/intake/evaluate.py) and sent when ranked;
    past the level it reached, so is the rest, once the level's bundles are out.

    The level is read (`PreparedLiquidations.ready`), not used up: the mined log may fire
    it again, and the dispatcher skips every account with a send in flight."""

    def __init__(self, prepared: PreparedLiquidations) -> None:
        self.prepared = prepared
        self.levels = 0  # answers that fired a prepared level
        self.evaluated = 0  # answers valued on their own
        self.sent = 0  # liquidations handed to the dispatcher
        self.seconds: list[float] = []  # answer read -> its liquidations dispatched

    def __call__(self, answer: PendingAnswer, head: BlockRef) -> int:
        prepared = self.prepared
        dispatcher, tasks = prepared.engine.dispatcher, prepared.tasks
        if dispatcher is None or tasks is None:
            return 0
        reached = [lv for lv in prepared.ready(answer.feed) if lv.reached_by(answer.answer)]
        if reached:  # the deepest one reached is the nearest to the answer
            level = min(reached, key=lambda lv: abs(lv.answer - answer.answer))
            # Stamped by copying slots (`at_block`, ~5 us each; `dataclasses.replace` took
            # ~13 us, ahead of the first bundle).
            ready = at_block((o for o in level.opportunities
                              if not dispatcher.touched_after(o.strategy, o.account, o.block)),
                             head.number)
            # Armed: its sends built and the first ones signed ahead on the nonce lanes
            # (keeper/execution/bundles_presign.py), used where they still fit.
            sent = dispatcher.dispatch(ready, tasks, armed=level.armed,
                                       backrun=Backrun(answer.tx_hash))
            if sent:
                self.levels += 1
                self._sent(answer, sent, head)
                if level.answer != answer.answer:
                    # Past the level: what opened between it and the answer is valued once
                    # the level's bundles are out, and joins them behind the same target.
                    tasks.create_task(self._evaluate(answer, head, tasks, rest=True))
                return sent
        tasks.create_task(self._evaluate(answer, head, tasks))
        return 0

    def _sent(self, answer: PendingAnswer, sent: int, head: BlockRef, *,
              timed: bool = True) -> None:
        self.sent += sent
        if timed:  # the answer's first dispatch (not the rest after a level)
            self.seconds = [*self.seconds[-4095:], time.time() - answer.seen]
        later(functools.partial(log.info, "early answer's liquidations sent", feed=answer.feed,
                                answer=answer.answer, tx=answer.tx_hash, sent=sent,
                                block=head.number + 1))

    async def _evaluate(self, answer: PendingAnswer, head: BlockRef,
                        tasks: asyncio.TaskGroup, *, rest: bool = False) -> None:
        """`rest`: a level was sent; this values the rest once its bundles are out (the
        dispatcher leaves out every account the level holds)."""
        dispatcher = self.prepared.engine.dispatcher
        if rest and dispatcher is not None:
            await dispatcher.launched()
        try:
            ranked = await evaluated(self.prepared.engine, answer, head)
            self.evaluated += 1
            if ranked and dispatcher is not None:
                sent = dispatcher.dispatch(ranked, tasks, backrun=Backrun(answer.tx_hash))
                if sent:
                    self._sent(answer, sent, head, timed=not rest)
        except Exception as exc:  # an early answer only saves time: the log still comes
            log.warning("cannot value an early answer", tx=answer.tx_hash, reason=str(exc))


def build_intake(keeper: Keeper, config: KeeperConfig) -> Intake | None:
    """The configured intake, or None when `[intake]` is off."""
    settings = config.intake
    if not settings.enabled:
        return None
    if config.execution.submitter != "bundle":
        # A public send before the oracle transaction is mined is ordered by its tip and
        # lands in front of the update, reverting: an early answer needs a backrun bundle.
        raise ConfigError('[intake] needs execution.submitter = "bundle" (the liquidations '
                          "an early answer opens go as backruns of its oracle transaction)")
    prepared = keeper.prepared
    if prepared is None or not prepared.enabled:
        raise ConfigError("[intake] needs prepared liquidations: list the feeds as "
                          "[[execution.feeds]] and keep execution.prepared_levels above 0")
    engine = keeper.engine
    intake = Intake([], EarlyFire(prepared), lambda: engine.last)
    feeds = sorted(prepared.rules)
    sources: list[AnswerSource] = []
    if settings.pending == "subscribe":
        url = settings.pending_url or config.chain.ws_url
        if url is None:
            raise ConfigError('[intake] pending = "subscribe" needs pending_url or chain.ws_url')
        sources.append(PendingSubscription(url, feeds, intake.heard))
    elif settings.pending == "poll":
        url = settings.pending_url or config.chain.http_urls[0].url
        sources.append(PoolPoller(url, feeds, intake.heard,
                                  interval=settings.poll_interval_ms / 1000))
    sources += [HintStream(url, feeds, intake.heard) for url in settings.hint_urls]
    intake.sources = sources
    log.info("intake before the block", pending=settings.pending, feeds=len(feeds),
             hints=[redact_url(u) for u in settings.hint_urls])
    return intake


async def run_with_intake(keeper: Keeper, config: KeeperConfig, stop: asyncio.Event) -> None:
    """`keeper.run(stop)`, with the configured intake beside it (stopped with it)."""
    intake = build_intake(keeper, config)
    if intake is None:
        await keeper.run(stop)
        return
    beside = asyncio.ensure_future(intake.run(stop))
    try:
        await keeper.run(stop)
    finally:
        beside.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beside

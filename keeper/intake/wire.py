"""The intake in the daemon: built from `[intake]`, run beside the keeper's loop.

It needs prepared liquidations (`[[execution.feeds]]` and `prepared_levels` > 0): the
feeds it watches are the prepared ones (the addresses that emit `AnswerUpdated`, which
are also the `to` of their `transmit`), and what it sends is what those levels hold.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from keeper.config import KeeperConfig
from keeper.errors import ConfigError
from keeper.intake.answers import PendingAnswer
from keeper.intake.react import Fire, Intake
from keeper.intake.sources import AnswerSource, HintStream, PendingSubscription, PoolPoller
from keeper.prepared import PreparedLiquidations
from keeper.secrets import redact_url
from keeper.wiring import Keeper

log = structlog.get_logger(__name__)


def prepared_fire(prepared: PreparedLiquidations) -> Fire:
    """Fire the deepest prepared level the pending answer reaches, for `block`."""

    def fire(answer: PendingAnswer, block: int) -> int:
        return prepared.fire(answer.feed, answer.answer, block)

    return fire


def build_intake(keeper: Keeper, config: KeeperConfig) -> Intake | None:
    """The configured intake, or None when `[intake]` is off."""
    settings = config.intake
    if not settings.enabled:
        return None
    prepared = keeper.prepared
    if prepared is None or not prepared.enabled:
        raise ConfigError("[intake] needs prepared liquidations: list the feeds as "
                          "[[execution.feeds]] and keep execution.prepared_levels above 0")
    engine = keeper.engine
    intake = Intake([], prepared_fire(prepared), lambda: engine.last)
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

"""A fired level's first transaction before anything else of it: the lead, then the rest.

When a feed's log reaches a prepared level (keeper/prepared.py), each of its liquidations is
stamped with the block that posted the answer (`at_block`), checked free by the dispatcher,
grouped into sends, and each send's intent taken from the arming: per liquidation work,
about 1 ms for a level of 50 on the devnet's 2 cores, all of it ahead of the first
transaction when the level went as one dispatch (the feed-to-send trace,
tests/bench/trace_first_send.py). Only the lead needs it before it leaves: the send signed
ahead with the level's first nonce (`Armed.lead`). So the lead is dispatched alone, and
the rest once the lead's dispatch has broadcast it (`Dispatcher.launched`), in rank order
behind it: their transactions were signed for the nonces after the lead's, which the
stream hands out next. The step of the block waits for both (`launched` waits for what is
dispatched meanwhile too), so its requests do not reach the node before the rest.

A level whose lead is not among the liquidations still free (our own liquidation touched
its account) or was not signed ahead goes as one dispatch, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from keeper.execution.armed import Armed, at_block
from keeper.execution.dispatch import Dispatcher
from keeper.types import Opportunity

log = structlog.get_logger(__name__)


def split_lead(armed: Armed | None, kept: Sequence[Opportunity],
               ) -> tuple[list[Opportunity], list[Opportunity]]:
    """(the lead send's liquidations, the others) of `kept`, in their order; ([], kept)
    when the lead is not all there."""
    keys = set(armed.lead) if armed is not None else set()
    lead = [o for o in kept if o.key in keys]
    if not keys or len(lead) != len(keys):
        return [], list(kept)
    return lead, [o for o in kept if o.key not in keys]


def dispatch_level(dispatcher: Dispatcher, tasks: asyncio.TaskGroup,
                   kept: Sequence[Opportunity], block: int, armed: Armed | None) -> int:
    """Dispatch a fired level's liquidations `kept` (valued anew at `block`): the lead
    first, the rest right after it has left. Returns how many were handed over (the rest
    counted as handed: the dispatcher may still hold some back, as it would have)."""
    lead, rest = split_lead(armed, kept)
    if not lead or not rest:
        return dispatcher.dispatch(at_block(kept, block), tasks, armed=armed)
    sent = dispatcher.dispatch(at_block(lead, block), tasks, armed=armed)
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # called outside the loop (tests): the rest at once
        return sent + dispatcher.dispatch(at_block(rest, block), tasks, armed=armed)
    if not sent:  # held back (in flight, a breaker): nothing to wait for
        return dispatcher.dispatch(at_block(rest, block), tasks, armed=armed)
    tasks.create_task(_after_lead(dispatcher, tasks, rest, block, armed))
    return sent + len(rest)


async def _after_lead(dispatcher: Dispatcher, tasks: asyncio.TaskGroup,
                      rest: Sequence[Opportunity], block: int, armed: Armed | None) -> None:
    await dispatcher.launched()
    try:
        dispatcher.dispatch(at_block(rest, block), tasks, armed=armed)
    except RuntimeError:  # the task group is shutting down: the rest is not sent
        log.info("a fired level's rest was not dispatched: stopping", count=len(rest))

"""An early answer valued as a prepared level is, at that very answer.

The strategies are asked what the answer opens (`Foreseeing.candidates_if(head, feed,
[answer])`, the question a prepared level asks of its own answer), the candidates are
sized within the capital (`Dispatcher.size`, as a scenario: it reads the flash lenders'
liquidity, one round trip, 15-20 ms on the loaded devnet; the flash plan picks its lender
from that read, so it is not skipped) and the most promising accounts ranked at the head
after the exit swaps still pending (`Engine.rank_at`, a level's budget). Nothing of the
book changes; the block's own step follows once the oracle transaction is mined, as after
a prepared level.
"""

from __future__ import annotations

import time

import structlog

from keeper.engine import Engine
from keeper.intake.answers import PendingAnswer
from keeper.prepared import PER_LEVEL, PREPARE_BUDGET
from keeper.ranking import head_start
from keeper.types import BlockRef, Candidate, Opportunity

log = structlog.get_logger(__name__)


def foreseen(engine: Engine, answer: PendingAnswer, head: BlockRef) -> list[Candidate]:
    """The candidates `answer` would open at `head` (none if the strategies do not follow
    that feed)."""
    found: list[Candidate] = []
    for strategy in engine.capabilities.foreseeing:
        if answer.feed in {f.lower() for f in strategy.feed_answers()}:
            found += strategy.candidates_if(head, answer.feed, [answer.answer])[0]
    return found


async def evaluated(engine: Engine, answer: PendingAnswer, head: BlockRef) -> list[Opportunity]:
    """The ranked liquidations `answer` opens, valued at `head` (not dispatched)."""
    dispatcher = engine.dispatcher
    if dispatcher is None:
        return []
    started = time.perf_counter()
    # On the loop, not in a thread: the loop applies steps to the same books.
    candidates = foreseen(engine, answer, head)
    if not candidates:
        return []
    sized = await dispatcher.size(candidates, head, scenario=True)
    # As a prepared level: the most promising accounts, valued with a level's budget.
    first, _rest = head_start(sized, dex=engine.dex, quote_token=engine.quote_token,
                              accounts=PER_LEVEL)
    ranked = engine.rank_at(first, head, budget=PREPARE_BUDGET)
    log.debug("early answer evaluated", feed=answer.feed, answer=answer.answer,
              candidates=len(candidates), ranked=len(ranked),
              seconds=round(time.perf_counter() - started, 4))
    return ranked

"""Prepared liquidations: ready before the price moves, sent when the feed's log arrives.

A Chainlink-style feed posts a new answer when the price has moved by its deviation
threshold since the last one (or a heartbeat passed). Neither is readable on chain: they
are per-feed configuration (`[[execution.feeds]]`; the devnet publishes its own in
devnet.json). So the next answer of a feed is, most of the time, at least one threshold
away from the current one, up or down. After each step, for every feed with a rule and
for answers on each side 1, 1.25, 1.5, 1.75, 2, 3, ... `levels` thresholds away
(`level_quarters`: finer where most answers land), the keeper asks
the strategies which positions that answer would open (`Foreseeing.candidates_if`),
sizes them within the capital on hand (one read for all), and ranks them as the engine
would. When the feed's `AnswerUpdated` log arrives (over the WebSocket, before the block
is even fetched; or in the step's logs when polling), the only work left is to check the
real answer: the deepest prepared level the answer reaches is handed to the dispatcher
at once. Every position liquidatable at that level is liquidatable at the real answer
(health is monotonic in one price; the move is further in the same direction) and the
repay sized there stays valid (a deeper move only lets the pool clamp more), so nothing
is re-ranked on the critical path. Positions opened between the level and the real
answer are found by the block's normal step right after, as before.

A level is used once and only against the block after the head it was prepared at or
later; a new step prepares everything again. Cost per step: the screen's bound picks the
accounts a move could reach (see strategies' `candidates_if`), exact health at each
level for those, one capital read, and one ranking per non-empty level.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from keeper.engine import Engine
from keeper.execution.armed import PRESIGNED_PER_LEVEL, Armed
from keeper.prepared_lead import dispatch_level
from keeper.ranking import LADDER_STEPS, head_start, swaps_of
from keeper.types import BlockRef, Candidate, ChainStep, Opportunity

log = structlog.get_logger(__name__)

# keccak("AnswerUpdated(int256,uint256,uint256)"): the answer is its first indexed topic.
TOPIC_ANSWER_UPDATED = "0x0559884fd3a460db3073b7fc896cc77986f16e378210ded43186175bf646fc5f"
BPS = 10_000
_ADDRESS_WORD = "0x" + "00" * 12  # an indexed address is a word with 12 leading zero bytes
DEFAULT_LEVELS = 8
QUARTERS = 4  # levels between the first and the second threshold: a quarter apart
# Valuations per candidate when sizing a prepared liquidation: the fewest the size search
# takes (the step's own ranking uses more). Preparing runs every step, for every level.
PREPARE_BUDGET = LADDER_STEPS + 5
# A step that changed nothing the strategies or pools hear keeps the levels this many
# blocks: only interest moved, which makes prepared positions less healthy, not more.
REUSE_BLOCKS = 10
# The most promising accounts each level adds (by `head_start`'s cheap estimate): the
# prepared path is for the first sends; the rest of a big move is the step's.
PER_LEVEL = 48


@dataclass(frozen=True)
class FeedRule:
    """When a feed posts: on a deviation of `deviation_bps` or after `heartbeat` seconds."""

    deviation_bps: int
    heartbeat: int = 3600


@dataclass(frozen=True)
class Level:
    """The liquidations ready for one answer of one feed: `direction` -1 for a fall, +1
    for a rise; they are sent when the posted answer reaches `answer` in that direction."""

    feed: str
    answer: int
    direction: int
    opportunities: tuple[Opportunity, ...]
    armed: Armed | None = None  # its sends built and the first ones signed (`arm`)

    def reached_by(self, answer: int) -> bool:
        return answer <= self.answer if self.direction < 0 else answer >= self.answer


@dataclass
class PreparedStats:
    """What the prepared liquidations did (metrics and benchmarks read it)."""

    prepared: int = 0  # steps prepared
    levels: int = 0  # non-empty levels ready after the last step
    opportunities: int = 0  # liquidations ready after the last step
    fired: int = 0  # levels sent
    sent: int = 0  # liquidations handed to the dispatcher from a level
    last_seconds: float = 0.0  # how long the last preparation took
    presigned: int = 0  # transactions signed ahead after the last step (all levels)
    arm_seconds: float = 0.0  # of `last_seconds`, building and signing them
    seconds: list[float] = field(default_factory=list)  # the last few preparation times
    running: bool = False  # a preparation is under way (valuing in a worker thread, signing)


def decode_answer(topic: str) -> int:
    """The int256 `current` of an `AnswerUpdated` log's first indexed topic."""
    value = int(topic, 16)
    return value - (1 << 256) if value >= 1 << 255 else value


class PreparedLiquidations:
    """Keeps, per feed, the liquidations its next answer would open; sends them on the log."""

    def __init__(
        self, engine: Engine, rules: Mapping[str, FeedRule], *, levels: int = DEFAULT_LEVELS,
        presign: int = PRESIGNED_PER_LEVEL,
    ) -> None:
        self.engine = engine
        self.rules = {a.lower(): r for a, r in rules.items()}
        self.levels = levels
        self.presign = presign  # transactions signed ahead per level (0: none)
        self.tasks: asyncio.TaskGroup | None = None  # the loop's, where sends run
        self.stats = PreparedStats()
        self._at: BlockRef | None = None  # the head the levels were prepared at
        # Accounts named by a log of a step applied after that head (a liquidation, ours
        # or a rival's, a repay): the levels do not know what happened to them.
        self._touched: set[str] = set()
        # A step with logs was applied after that head while no preparation ran (sends were
        # in flight): the next one values anew, even after a step without logs.
        self._moved = False
        self._ready: dict[str, list[Level]] = {}  # by feed, shallowest first per direction
        self._posted: dict[str, tuple[int, int]] = {}  # by feed: (block, answer) heard last
        self._spent: list[list[Level]] = []  # fired feeds' levels, freed by the next prepare

    @property
    def enabled(self) -> bool:
        """Configured, and this keeper sends (an `[ha]` standby does not: preparing would
        only take CPU from the replica that leads)."""
        dispatcher = self.engine.dispatcher
        return bool(self.rules) and self.levels > 0 and dispatcher is not None and (
            dispatcher.gate is None or dispatcher.gate.sending())

    def ready(self, feed: str) -> list[Level]:
        """The levels prepared for `feed` (tests and benchmarks read them)."""
        return list(self._ready.get(feed.lower(), ()))

    # -- after each step -----------------------------------------------------------------

    async def prepare(
        self, head: BlockRef, *, changed: bool = True,
        abandon: Callable[[], bool] = lambda: False,
    ) -> None:
        """Make ready the liquidations each feed's next answer would open at `head`.
        `changed`: the step brought logs (or a reorg); if not, recent levels are kept.

        The valuations run in a worker thread, so the event loop still hears a feed's log
        (and sends what is ready) meanwhile; `abandon` is asked between them and, when
        true (a newer head waits), the work stops and the levels ready before are kept.
        The loop applies no step while this runs (it awaits it), so the books hold still.
        """
        self.stats.running = True
        self._spent.clear()
        try:
            await self._prepare(head, changed=changed, abandon=abandon)
        finally:
            self.stats.running = False

    async def _prepare(self, head: BlockRef, *, changed: bool,
                       abandon: Callable[[], bool]) -> None:
        dispatcher = self.engine.dispatcher
        if not self.enabled or dispatcher is None:
            return
        # The next block's base fee, as a step's evaluation sets it: the first preparation,
        # at start, comes before any step, and levels signed for a base fee of 0 never fit
        # (every first send of a fired level was signed on the spot, ~1 ms).
        dispatcher.base_fee = self.engine.next_base_fee
        at = self._at
        if not changed and not self._moved and at is not None and \
                0 <= head.number - at.number < REUSE_BLOCKS:
            # Kept; their signatures are for a nonce and a base fee: sign again if those moved.
            self._ready = await self._arm(self._ready, abandon, stale_only=True)
            return
        started = time.perf_counter()
        wanted: dict[tuple[str, int, int], list[Candidate]] = {}
        for strategy in self.engine.capabilities.foreseeing:
            for feed, current in strategy.feed_answers().items():
                rule = self.rules.get(feed.lower())
                if rule is None or current <= 0:
                    continue
                for direction in (-1, 1):
                    answers = [current * (QUARTERS * BPS + direction * q * rule.deviation_bps)
                               // (QUARTERS * BPS) for q in level_quarters(self.levels)]
                    answers = [a for a in answers if a > 0]
                    if abandon():
                        return
                    found = await asyncio.to_thread(strategy.candidates_if, head, feed, answers)
                    for answer, candidates in zip(answers, found, strict=True):
                        if candidates:
                            wanted.setdefault((feed.lower(), direction, answer), []).extend(
                                candidates)
        ready: dict[str, list[Level]] = {}
        if wanted:
            every = [c for cs in wanted.values() for c in cs]
            # One capital read for every level: sizing is per candidate.
            sized = {c.key: c for c in await dispatcher.size(every, head, scenario=True)}
            # A level holds what the levels before it opened (still liquidatable further
            # on, with the repay sized there still valid) and what it opens, ranked after
            # their exit swaps.
            for (feed, direction), answers in _by_side(wanted).items():
                held: list[Opportunity] = []
                for answer in answers:
                    opened = [sized[c.key] for c in wanted[(feed, direction, answer)]
                              if c.key in sized]
                    opened, _ = head_start(opened, dex=self.engine.dex,
                                           quote_token=self.engine.quote_token,
                                           accounts=PER_LEVEL)
                    if opened:
                        if abandon():
                            return
                        legs = [leg for o in held for leg in swaps_of(o)]
                        held = held + await asyncio.to_thread(
                            self.engine.rank_at, opened, head, legs, budget=PREPARE_BUDGET)
                    if held:
                        ready.setdefault(feed, []).append(
                            Level(feed, answer, direction, tuple(held)))
        armed_at = time.perf_counter()
        self._ready, self._at, self._touched, self._moved = ready, head, set(), False
        self._ready = await self._arm(ready, abandon)
        elapsed = time.perf_counter() - started
        stats = self.stats
        stats.arm_seconds = time.perf_counter() - armed_at
        stats.prepared += 1
        stats.levels = sum(len(v) for v in ready.values())
        stats.opportunities = sum(len(lv.opportunities) for v in ready.values() for lv in v)
        stats.last_seconds = elapsed
        stats.seconds = [*stats.seconds[-255:], elapsed]

    async def _arm(self, ready: dict[str, list[Level]], abandon: Callable[[], bool], *,
                   stale_only: bool = False) -> dict[str, list[Level]]:
        """Each level with its sends built and its first `presign` transactions signed
        (`Dispatcher.arm`), shallowest first; a level holds the ones before it, so their
        intents and signatures are reused. Stops arming (the rest go unarmed: they sign when
        sent) when `abandon` says a newer head waits. `stale_only`: only the levels whose
        signatures are for another nonce or base fee."""
        dispatcher = self.engine.dispatcher
        if dispatcher is None or self.presign <= 0:
            return ready
        nonce, base_fee = dispatcher.executor.nonces.next_nonce, dispatcher.base_fee
        out: dict[str, list[Level]] = {}
        # `ready` is the live `_ready`: a feed's log heard while this awaits fires a level and
        # deletes its feed from it, so iterate a copy and leave the fired feeds out below.
        for feed, levels in list(ready.items()):
            known: dict[int, Armed] = {}  # by direction: the level before's arming
            for level in levels:
                armed = level.armed
                if abandon() or (stale_only and armed is not None
                                 and not armed.stale(nonce, base_fee)):
                    out.setdefault(feed, []).append(level)
                    continue
                armed = await dispatcher.arm(level.opportunities, signed=self.presign,
                                             known=known.get(level.direction, armed))
                known[level.direction] = armed
                out.setdefault(feed, []).append(dataclasses.replace(level, armed=armed))
        self.stats.presigned = len({(p.nonce, p.tx_hash) for v in out.values() for lv in v
                                    if lv.armed is not None for p in lv.armed.presigned.values()})
        return {feed: levels for feed, levels in out.items() if feed in ready}

    # -- when the answer arrives ---------------------------------------------------------

    def heard(self, raw: Mapping[str, Any]) -> int:
        """A feed's log as the node sent it (the WebSocket's `logs` subscription): send the
        deepest level its answer reaches. Returns how many liquidations were handed over."""
        topics: Sequence[str] = raw.get("topics") or ()
        if raw.get("removed") or len(topics) < 2 or str(topics[0]).lower() != TOPIC_ANSWER_UPDATED:
            return 0
        number = raw.get("blockNumber")
        if number is None:
            return 0
        return self.fire(str(raw.get("address", "")), decode_answer(str(topics[1])),
                         int(str(number), 16))

    def applied(self, step: ChainStep) -> None:
        """A step the engine applied after the levels' head: remember every account its logs
        name in an indexed topic (lending protocols index the borrower in liquidations,
        repays and withdrawals), so a level never sends on what it did not see."""
        at = self._at
        if at is None or step.trial or step.head.number <= at.number:
            return
        self._moved = self._moved or bool(step.events)
        for event in step.events:
            for topic in event.topics[1:]:
                if topic.startswith(_ADDRESS_WORD):
                    self._touched.add("0x" + topic[len(_ADDRESS_WORD):].lower())

    def heard_step(self, step: ChainStep) -> int:
        """The step's feed logs (polling, or a log the socket missed), before it is applied."""
        sent = 0
        for event in step.events:
            if event.topic0.lower() == TOPIC_ANSWER_UPDATED and len(event.topics) > 1:
                sent += self.fire(event.address, decode_answer(event.topics[1]),
                                  event.block_number)
        return sent

    def fire(self, feed: str, answer: int, block: int) -> int:
        """Send the deepest level of `feed` that `answer` (posted in `block`) reaches."""
        feed = feed.lower()
        try:
            return self._fire(feed, answer, block)
        finally:  # after the sends are handed over: they do not wait for this
            self._note_rise(feed, answer, block)

    def _fire(self, feed: str, answer: int, block: int) -> int:
        dispatcher, tasks, at = self.engine.dispatcher, self.tasks, self._at
        if dispatcher is None or tasks is None or at is None or block <= at.number:
            return 0
        levels = self._ready.get(feed)
        if not levels:
            return 0
        reached = [lv for lv in levels if lv.reached_by(answer)]
        if not reached:
            return 0
        # The deepest one reached is the nearest to the answer (all lie between it and now).
        level = min(reached, key=lambda lv: abs(lv.answer - answer))
        # Used once: the next step prepares again. Its levels are freed by that preparation,
        # not on return from here: freeing them (every level of the feed, with its built
        # intents and signed transactions) took 0.6-0.8 ms ahead of the first send.
        self._spent.append(self._ready.pop(feed))
        # Valid from the block that posted the answer: simulated there (at the head they
        # were prepared at, the positions were still healthy); none whose account our own
        # liquidation touched after that head (the level does not hold it). The lead is
        # stamped and sent before the rest (keeper/prepared_lead.py).
        kept = [o for o in level.opportunities if o.account.lower() not in self._touched
                and not dispatcher.touched_after(o.strategy, o.account, o.block)]
        sent = dispatch_level(dispatcher, tasks, kept, block, level.armed)
        if not sent:
            return 0  # a standby's gate, a tripped breaker, or all of them held by sends
        self.stats.fired += 1
        self.stats.sent += sent
        # Logged once the sends' task has had its turn (it was scheduled first): formatting
        # and writing the line took up to a few milliseconds ahead of the first send.
        line = functools.partial(log.info, "prepared liquidations sent on the feed's answer",
                                 feed=feed, answer=answer, prepared_at=level.answer, sent=sent,
                                 block=block)
        try:
            asyncio.get_running_loop().call_soon(line)
        except RuntimeError:  # called outside the loop (tests): now
            line()
        return sent


    def _note_rise(self, feed: str, answer: int, block: int) -> None:
        """Tell the dispatcher when `answer` is above what the books hold for `feed`: what
        was ranked before `block` may no longer be liquidatable (in a crash, the price
        moving back up between a ranking and its send was the keeper's one remaining cause
        of reverts when alone). A fall is not told: it only makes positions less healthy."""
        dispatcher = self.engine.dispatcher
        if dispatcher is None:
            return
        last = self._posted.get(feed)
        if last is not None and block <= last[0]:
            return  # heard already (the socket first, then the step), or older
        self._posted[feed] = (block, answer)
        # Against the answer heard last (the books may not hold it yet: a fall, then a
        # partial rise before the fall's step was applied), else what the books hold.
        current = last[1] if last is not None else next(
            (a for strategy in self.engine.capabilities.foreseeing
             for f, a in strategy.feed_answers().items() if f.lower() == feed), None)
        if current is not None and answer > current:
            dispatcher.price_rose(block)


def level_quarters(levels: int) -> list[int]:
    """How far each prepared answer is from the current one, in quarters of the feed's
    deviation threshold: a quarter apart from one threshold to two (a feed posts once the
    price crossed its threshold, so most answers land there: one at 1.5 thresholds reached
    only the 1-threshold level, and whatever opened between waited to be valued, ~20 ms
    behind a hint in the auction benchmark), then one threshold apart up to `levels`."""
    if levels <= 0:
        return []
    fine = range(QUARTERS, 2 * QUARTERS) if levels > 1 else range(QUARTERS, QUARTERS + 1)
    return [*fine, *(QUARTERS * k for k in range(2, levels + 1))]


def _by_side(
    wanted: Mapping[tuple[str, int, int], object],
) -> dict[tuple[str, int], list[int]]:
    """The answers of each (feed, direction), nearest to the current answer first."""
    sides: dict[tuple[str, int], list[int]] = {}
    for feed, direction, answer in wanted:
        sides.setdefault((feed, direction), []).append(answer)
    for (_, direction), answers in sides.items():
        answers.sort(reverse=direction < 0)  # a fall: the highest answer is the nearest
    return sides


def feed_rules(entries: Sequence[tuple[str, int, int]]) -> dict[str, FeedRule]:
    """(address, deviation_bps, heartbeat) triples as rules by lower-case address."""
    return {a.lower(): FeedRule(d, h) for a, d, h in entries}

"""When each bot sent, relative to the price step: the race's timing table (not the verdict).

The verdict (verdict.py) reads only the chain. This table explains it: for every crash step
(a block with an `AnswerUpdated` of the WETH feed), t0 is when that block's `newHeads`
notification reached the harness; each bot's sends in the step (until the next step's
block) are timed by the bot's own wall clock after its `eth_sendRawTransaction` answered:
the keeper's journal `sent_at` (its SQLite file, or with `[ha]` the PostgreSQL journal its
replicas share: `sent_rows`), the competitor's report. All processes run on one machine,
so the clocks agree.
"""

from __future__ import annotations

import itertools
import sqlite3
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BotTiming:
    """One bot's sends against the steps."""

    steps_with_sends: int = 0
    first_ms: list[float] = field(default_factory=list)  # per step: t0 -> its first send
    head_to_send_ms: list[float] = field(default_factory=list)  # decided block seen -> sent
    gaps_ms: list[float] = field(default_factory=list)  # consecutive sends within a step
    sends: int = 0

    def summary(self) -> dict[str, float | int | None]:
        return {"steps_with_sends": self.steps_with_sends, "sends": self.sends,
                "first_send_p50_ms": _p(self.first_ms, 50),
                "first_send_min_ms": min(self.first_ms) if self.first_ms else None,
                "next_send_gap_p50_ms": _p(self.gaps_ms, 50),
                "head_to_send_p50_ms": _p(self.head_to_send_ms, 50),
                "head_to_send_p90_ms": _p(self.head_to_send_ms, 90),
                "head_to_send_max_ms": max(self.head_to_send_ms, default=None)}


@dataclass
class Timing:
    """Per bot, and how often the keeper's first send of a step came first."""

    steps: int = 0
    bots: dict[str, BotTiming] = field(default_factory=dict)
    keeper_sent_first: int = 0
    both_sent: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "both_sent": self.both_sent,
                "keeper_sent_first": self.keeper_sent_first,
                "bots": {n: b.summary() for n, b in self.bots.items()}}

    def lines(self) -> list[str]:
        out = []
        for name, bot in self.bots.items():
            s = bot.summary()
            out.append(f"  {name:<10} sent in {s['steps_with_sends']}/{self.steps} steps, "
                       f"{s['sends']} sends; step block -> first send p50 "
                       f"{_ms(s['first_send_p50_ms'])} (min {_ms(s['first_send_min_ms'])}), "
                       f"next send +{_ms(s['next_send_gap_p50_ms'])} p50; the head it "
                       f"decided at -> sent p50 {_ms(s['head_to_send_p50_ms'])}, p90 "
                       f"{_ms(s['head_to_send_p90_ms'])}, max {_ms(s['head_to_send_max_ms'])}")
        if self.both_sent:
            out.append(f"  the keeper's first send came first in {self.keeper_sent_first}"
                       f"/{self.both_sent} steps where both sent")
        return out


def _p(values: Sequence[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _ms(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


@dataclass(frozen=True)
class BotSend:
    """One transaction a bot sent: when (its clock, after the node answered) and the block
    it decided at (the keeper's intent block, the competitor's round head)."""

    tx_hash: str
    sent_at: float
    decided_at: int


@dataclass(frozen=True)
class PgJournalAt:
    """A keeper journal in PostgreSQL (`[ha]`): the server's libpq DSN and the journal's
    schema (`ha.journal_schema`)."""

    dsn: str
    schema: str


_SENT = ("SELECT t.tx_hash, t.sent_at, i.block FROM transactions t"
         " JOIN intents i ON i.key = t.intent_key WHERE t.sent_at IS NOT NULL")


def sent_rows(journal: Path | PgJournalAt) -> Iterator[tuple[Any, ...]]:
    """(tx hash, sent_at, the intent's block) of every sent transaction of a keeper journal:
    its SQLite file, or the PostgreSQL schema `[ha]` replicas share (the same tables, so
    the same query)."""
    if isinstance(journal, PgJournalAt):
        import psycopg  # noqa: PLC0415 (the ha extra)
        from psycopg import sql  # noqa: PLC0415

        with psycopg.connect(journal.dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(journal.schema)))
            yield from conn.execute(_SENT).fetchall()
        return
    if not journal.is_file():
        return
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        yield from db.execute(_SENT).fetchall()
    finally:
        db.close()


def keeper_sends(journal: Path | PgJournalAt) -> list[BotSend]:
    """Every transaction in the keeper's journal that was sent."""
    return [BotSend(str(h), float(t), int(b)) for h, t, b in sent_rows(journal)]


@dataclass
class LostRaces:
    """A bot's reverts of one cause (lost / self) that came after an earlier liquidation of
    the same account, by when the bot acted: it decided at or after the earlier one's block
    (`stale`: the state it read already had it), it decided before but sent after that
    block arrived (`queued`: its send came too late), or it sent before it (`raced`: both
    in flight, the order decided)."""

    stale: int = 0
    queued: int = 0
    raced: int = 0
    unknown: int = 0

    @property
    def total(self) -> int:
        return self.stale + self.queued + self.raced + self.unknown

    def line(self, name: str, cause: str) -> str:
        return (f"  {name:<10} {cause} {self.total}: decided on a state that already had the "
                f"earlier liquidation {self.stale}, decided before it but sent after it landed "
                f"{self.queued}, sent before it landed {self.raced}"
                + (f", no send record {self.unknown}" if self.unknown else ""))


def lost_races(reverts: Sequence[tuple[str, int, str]], sends: Sequence[BotSend],
               seen: Mapping[int, float], *, arrival_order: bool) -> dict[str, LostRaces]:
    """`reverts`: (tx hash, the earlier liquidation's block, cause) of one bot's reverts
    that had one; by cause. With `arrival_order` (automine) a transaction is mined when it
    arrives, so one that landed after the earlier liquidation was sent after it landed:
    it is `queued` unless stale (the harness's own notice of a block lags the mining by
    more than the gaps between sends there, so the clocks cannot split it)."""
    by_hash = {s.tx_hash: s for s in sends}
    out: dict[str, LostRaces] = {}
    for tx_hash, winner_block, cause in reverts:
        row = out.setdefault(cause, LostRaces())
        send = by_hash.get(tx_hash)
        if send is None:
            row.unknown += 1
        elif send.decided_at >= winner_block:
            row.stale += 1
        elif arrival_order or (winner_block in seen and send.sent_at >= seen[winner_block]):
            row.queued += 1
        else:
            row.raced += 1
    return out


def timing(step_blocks: Sequence[int], seen: Mapping[int, float],
           sends: Mapping[str, Sequence[BotSend]]) -> Timing:
    """The table from the step blocks, when the harness saw them, and each bot's sends."""
    starts = [seen[b] for b in step_blocks if b in seen]
    out = Timing(steps=len(starts), bots={n: BotTiming() for n in sends})
    for name, bot_sends in sends.items():
        out.bots[name].head_to_send_ms = [(s.sent_at - seen[s.decided_at]) * 1000
                                          for s in bot_sends if s.decided_at in seen]
    for k, t0 in enumerate(starts):
        t1 = starts[k + 1] if k + 1 < len(starts) else float("inf")
        firsts: dict[str, float] = {}
        for name, bot_sends in sends.items():
            times = sorted(s.sent_at for s in bot_sends if t0 <= s.sent_at < t1)
            bot = out.bots[name]
            bot.sends += len(times)
            if not times:
                continue
            bot.steps_with_sends += 1
            bot.first_ms.append((times[0] - t0) * 1000)
            bot.gaps_ms += [(b - a) * 1000 for a, b in itertools.pairwise(times)]
            firsts[name] = times[0]
        if "keeper" in firsts and len(firsts) > 1:
            out.both_sent += 1
            out.keeper_sent_first += firsts["keeper"] <= min(firsts.values())
    return out

"""Opportunities as episodes: when each position was liquidatable, what it was worth, its fate.

A replay samples the books at every block it steps (`Episodes.sample`): which positions
are liquidatable there, and, at the blocks it values, what liquidating each would have
paid on its own at that block (`keeper.ranking.rank` on the unsized candidate, net of gas
and slippage, whatever the capital on hand) and whether the keeper's ranking held it.

An *opportunity* is one episode of one position: it opens at the first sampled block the
position is liquidatable, and closes when the keeper's liquidation of it is mined (taken:
if the position is still liquidatable at that block, a new episode opens there, else at
the next block it is) or at the end of the replay (missed). A position that recovers and
falls back before anyone liquidates it stays one opportunity (prices that swing around
its threshold do not multiply what was available). So a position the keeper liquidates
in three pieces is three opportunities, each with its liquidation, and the latency of a
taken one (mined block minus the episode's first block) is never negative. A missed
episode is valued (`valued_at`) at the first sampled block it was worth the minimum
profit, when a liquidator with the capital would have taken it (never worth that: at its
best sampled block), and its
reason is, in order: the keeper's last attempt within it (its outcome status, e.g.
`no-capital`, `reverted`), `not-sent` (ranked, never sent), `no-capital` (worth the
minimum profit on its own, but the debt asset on hand could not repay it), `crowded-out`
(worth it on its own, not after the block's other liquidations' swaps), `below-min-profit`
(worth something, less than the minimum) or `unprofitable` (worth nothing after gas and
slippage).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from keeper.backtest.model import Opportunity

Position = tuple[str, str]  # (strategy, account lower-case)

# The reasons a missed opportunity gets when the keeper made no attempt within it.
NOT_SENT = "not-sent"
NO_CAPITAL = "no-capital"
CROWDED_OUT = "crowded-out"
BELOW_MIN_PROFIT = "below-min-profit"
UNPROFITABLE = "unprofitable"
DETAILS = {
    NOT_SENT: "ranked profitable, never sent",
    NO_CAPITAL: "worth the minimum profit on its own; the debt asset on hand could not repay it",
    CROWDED_OUT: "worth the minimum profit on its own, not after the swaps of the block's "
                 "other liquidations",
    BELOW_MIN_PROFIT: "worth something after gas and slippage, less than the minimum profit",
    UNPROFITABLE: "worth nothing after gas and slippage",
}


@dataclass(frozen=True)
class Sighting:
    """A position liquidatable at one sampled block.

    `value_wei`: what liquidating it alone would have paid there, quote wei net of gas and
    slippage (None: not valued at this block, or the book cannot value it); `short`: the
    debt asset on hand was less than that liquidation's repay; `ranked`: the keeper's
    ranking of this block held it.
    """

    collateral: str
    debt: str
    value_wei: int | None = None
    short: bool = False
    ranked: bool = False


@dataclass(frozen=True)
class Taken:
    """One of the keeper's liquidations of a position: mined block, ranked block, profit."""

    block: int
    ranked_at: int
    profit_wei: int
    collateral: str
    debt: str


@dataclass(frozen=True)
class Attempt:
    """An outcome of the keeper's that did not liquidate: ranked block, status, reason."""

    ranked_at: int
    status: str
    reason: str


@dataclass
class _Open:
    first: int
    last: int
    sightings: list[tuple[int, Sighting]] = field(default_factory=list)
    taken: list[Taken] = field(default_factory=list)


class Episodes:
    """What a replay sampled, block by block, and the opportunities it makes."""

    def __init__(self) -> None:
        self.blocks: list[int] = []
        self.seen: dict[Position, dict[int, Sighting]] = {}

    def sample(self, block: int, sightings: Mapping[Position, Sighting]) -> None:
        """The positions liquidatable at `block` (sampled in increasing block order)."""
        if self.blocks and block <= self.blocks[-1]:
            raise ValueError(f"block {block} sampled after {self.blocks[-1]}")
        self.blocks.append(block)
        for position, sighting in sightings.items():
            self.seen.setdefault(position, {})[block] = sighting

    def build(
        self, taken: Mapping[Position, Sequence[Taken]],
        attempts: Mapping[Position, Sequence[Attempt]], *, quote_unit: float,
        min_profit_wei: int, symbol: Mapping[str, str],
    ) -> list[Opportunity]:
        """Every episode of every position, ordered by first block then position."""
        out: list[tuple[int, Position, Opportunity]] = []
        for position in sorted({*self.seen, *taken}):
            for episode in self._episodes(self.seen.get(position, {}), taken.get(position, ())):
                opp = _opportunity(position, episode, attempts.get(position, ()),
                                   quote_unit=quote_unit, min_profit_wei=min_profit_wei,
                                   symbol=symbol)
                out.append((episode.first, position, opp))
        out.sort(key=lambda item: item[:2])
        return [opp for _first, _position, opp in out]

    def _episodes(self, seen: Mapping[int, Sighting], taken: Iterable[Taken]) -> list[_Open]:
        by_block: dict[int, list[Taken]] = {}
        for liquidation in taken:
            by_block.setdefault(liquidation.block, []).append(liquidation)
        blocks = sorted({*self.blocks, *by_block})
        done: list[_Open] = []
        current: _Open | None = None
        for block in blocks:
            mined = by_block.get(block, [])
            if mined:
                if current is None:  # ranked at a block the samples did not hold it
                    first = min(x.ranked_at for x in mined)
                    current = _Open(first, first)
                current.taken += mined
                current.last = block
                done.append(current)
                current = None
            sighting = seen.get(block)
            if sighting is None:
                continue  # recovered for now: the same opportunity if it falls back
            if current is None:
                current = _Open(block, block)
            current.last = block
            current.sightings.append((block, sighting))
        if current is not None:
            done.append(current)
        return done


def _opportunity(
    position: Position, episode: _Open, attempts: Sequence[Attempt], *, quote_unit: float,
    min_profit_wei: int, symbol: Mapping[str, str],
) -> Opportunity:
    strategy, account = position
    pair = (episode.sightings[0][1].collateral, episode.sightings[0][1].debt) if (
        episode.sightings) else (episode.taken[0].collateral, episode.taken[0].debt)
    collateral, debt = (symbol.get(token.lower(), token) for token in pair)
    if episode.taken:
        mined = min(x.block for x in episode.taken)
        return Opportunity(
            first_block=episode.first, protocol=strategy, account=account,
            collateral=collateral, debt=debt,
            profit_quote=sum(x.profit_wei for x in episode.taken) / quote_unit,
            taken_by="keeper", latency_blocks=max(0, mined - episode.first),
            last_block=episode.last, liquidations=len(episode.taken),
            value_wei=sum(x.profit_wei for x in episode.taken), valued_at=mined)
    valued = [(s.value_wei, block, s) for block, s in episode.sightings if s.value_wei is not None]
    # Valued when a liquidator with capital would have taken it: the first block it was worth
    # the minimum profit; never worth that, at its best block.
    worth = [v for v in valued if v[0] >= min_profit_wei]
    best_value, best_block, best = worth[0] if worth else max(
        valued, key=lambda v: (v[0], -v[1])) if valued else (None, None, None)
    within = [a for a in attempts if episode.first <= a.ranked_at <= episode.last]
    if within:
        last = within[-1]
        why, detail = last.status, last.reason or last.status
    elif any(s.ranked for _block, s in episode.sightings):
        why, detail = NOT_SENT, DETAILS[NOT_SENT]
    elif best is not None and best_value is not None and best_value >= min_profit_wei:
        why = NO_CAPITAL if best.short else CROWDED_OUT
        detail = DETAILS[why]
    elif best_value is not None and best_value > 0:
        why, detail = BELOW_MIN_PROFIT, DETAILS[BELOW_MIN_PROFIT]
    else:
        why, detail = UNPROFITABLE, DETAILS[UNPROFITABLE]
    value = max(best_value or 0, 0)
    return Opportunity(
        first_block=episode.first, protocol=strategy, account=account, collateral=collateral,
        debt=debt, profit_quote=value / quote_unit, taken_by=None, missed_because=why,
        last_block=episode.last, missed_detail=detail, value_wei=value, valued_at=best_block)

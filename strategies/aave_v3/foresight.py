"""Aave V3 positions a feed's next answer would open, before it is posted.

The prepared liquidations (keeper/prepared.py) ask, for a price feed and a few answers it
may post next, which accounts would then have HF < 1. Each answer is valued exactly: the
market with that feed's reserves at the answer (AaveOracle.getAssetPrice returns the
source's `latestAnswer`, so the answer is the price), then `market.account_data` (the
mirror of Pool.getUserAccountData) per account, as the risk view's curve does.

Only accounts the float screen cannot rule out are valued: a copy of the step's screen
re-priced at the furthest answer flags a superset of the accounts with HF < 1 there (the
screen's own guarantee), and health moves one way with one price, so no account opened
by a nearer answer is missed. Accounts that no reserve priced by the feed touches are
skipped, and the first answer that opens an account is found by bisection.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from keeper.types import BlockRef, Candidate
from strategies.aave_v3 import math
from strategies.aave_v3.book import PositionBook
from strategies.aave_v3.market import Account, Market, account_data
from strategies.aave_v3.screen import HealthScreen, ScreenError

Pairs = Callable[[Market, Account, int, int], Iterable[Candidate]]


def priced_at(market: Market, feed: str, answer: int) -> Market:
    """`market` with every reserve priced by `feed` at `answer`."""
    feed = feed.lower()
    reserves = tuple(replace(r, price=answer) if r.feed.lower() == feed else r
                     for r in market.reserves)
    return replace(market, reserves=reserves)


def exposed(
    screen: HealthScreen | None, users: Sequence[str], market: Market, timestamp: int,
) -> list[str]:
    """The users the screen cannot rule out at `market`'s prices (a copy of the screen is
    re-priced there: its flags are a superset of HF < 1), with those it has not loaded."""
    if screen is None:
        return list(users)
    moved = copy.deepcopy(screen)
    try:
        moved.update(market, timestamp)
    except ScreenError:  # the reserve list changed under the screen: value everyone
        return list(users)
    kept = set(moved.flagged())
    return [u for u in users if u in kept or u not in screen.index]


def feed_answers(market: Market) -> dict[str, int]:
    """Each price feed of the market with the price its reserves hold now: the answer
    (AaveOracle returns the source's latest answer)."""
    return {r.feed.lower(): r.price for r in market.reserves if int(r.feed, 16) and r.price > 0}


class HealthyNow:
    """Per account at the book's block: None when it has no debt or is liquidatable
    already, else the reserve ids it supplies as collateral or borrows (a feed that prices
    none of them cannot open it). Computed once per block, for every feed and side."""

    def __init__(self) -> None:
        self._at: tuple[int, int] = (-1, -1)  # (block number, timestamp)
        self._uses: dict[str, frozenset[int] | None] = {}

    def __call__(
        self, book: PositionBook, user: str, block: int, now: int
    ) -> frozenset[int] | None:
        if self._at != (block, now):
            self._at, self._uses = (block, now), {}
        if user in self._uses:
            return self._uses[user]
        account = book.account(user)
        data = account_data(book.market, account, now)
        uses: frozenset[int] | None = None
        if data.total_debt_base and not math.is_liquidatable(data.health_factor):
            uses = frozenset((*account.config.collateral_indices,
                              *account.config.borrowing_indices))
        self._uses[user] = uses
        return uses


def candidates_if(  # noqa: PLR0917 (the strategy's parts, passed through)
    book: PositionBook, screen: HealthScreen | None, block: BlockRef, feed: str,
    answers: Sequence[int], pairs: Pairs, healthy: HealthyNow,
) -> list[list[Candidate]]:
    """Per answer (ordered by a growing move in one direction), the candidates of the
    book's accounts healthy now that this answer opens and the answers before it did not.

    Health is monotonic in one price, so an account not liquidatable at the last answer is
    liquidatable at none (one valuation rules most out), and the first answer that opens
    an account is found by bisection."""
    market, now = book.market, block.timestamp
    out: list[list[Candidate]] = [[] for _ in answers]
    feed = feed.lower()
    if not answers or not any(r.feed.lower() == feed for r in market.reserves):
        return out
    priced = {r.id for r in market.reserves if r.feed.lower() == feed}
    moved = [priced_at(market, feed, a) for a in answers]
    skip = book.needs_read
    for user in exposed(screen, book.users, moved[-1], now):
        if user in skip:
            continue  # the book could not mirror it: no candidates until a re-read
        uses = healthy(book, user, block.number, now)
        if uses is None or uses.isdisjoint(priced):
            continue  # no debt, liquidatable already (the step's), or not priced by `feed`
        account = book.account(user)
        if not math.is_liquidatable(account_data(moved[-1], account, now).health_factor):
            continue
        lo, hi = 0, len(answers) - 1  # the first opening answer is in [lo, hi]
        while lo < hi:
            mid = (lo + hi) // 2
            if math.is_liquidatable(account_data(moved[mid], account, now).health_factor):
                hi = mid
            else:
                lo = mid + 1
        hf = account_data(moved[lo], account, now).health_factor
        out[lo].extend(pairs(moved[lo], account, hf, now))
    return out

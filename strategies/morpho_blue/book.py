"""The event-sourced Morpho Blue book: markets, borrow positions, feed answers, from logs alone.

Seeded from a `Snapshot` (market.py), `apply` mirrors Morpho 1.0.0's storage writes from the
logs of later blocks, with no I/O:

- AccrueInterest: totalBorrowAssets and totalSupplyAssets += interest, totalSupplyShares +=
  feeShares, lastUpdate = the block's timestamp (the event carries the exact amounts);
- every call that runs `_accrueInterest` (Supply, Withdraw, Borrow, Repay, Liquidate,
  WithdrawCollateral, SetFee) leaves lastUpdate = the block's timestamp (also when the IRM is
  address(0) and no AccrueInterest is emitted); SupplyCollateral does not accrue;
- Supply / Withdraw: totalSupply{Assets,Shares} +/-; Borrow: totalBorrow{Assets,Shares} and
  the position's borrowShares +; Repay: shares -, totalBorrowAssets = zeroFloorSub(., assets);
- SupplyCollateral / WithdrawCollateral: the position's collateral +/-;
- Liquidate: as Morpho.liquidate, including the bad debt realized when the collateral left is
  0 (badDebtAssets off both totals, badDebtShares off totalBorrowShares, borrowShares = 0);
- SetFee: fee; CreateMarket: a new market (lastUpdate = the block's timestamp);
- a feed's AnswerUpdated: that feed's latest answer (FeedOracle reads latestRoundData).

Supply positions are not kept (they cannot be liquidated). Reorgs (`removed` logs) raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from keeper.errors import StrategyError
from keeper.types import BlockRef, Event
from strategies.morpho_blue import events as ev
from strategies.morpho_blue import math
from strategies.morpho_blue.market import IrmModel, OracleModel, Snapshot
from strategies.morpho_blue.math import MarketParams, MarketState, PositionState

_EMPTY = PositionState()


class BookError(StrategyError):
    """The logs cannot be applied to the book (a reorg, or a log out of place)."""


class MorphoBook:
    """Markets and borrow positions of one Morpho singleton, updated purely from logs."""

    def __init__(self, morpho: str, snapshot: Snapshot, allow: set[str] | None = None) -> None:
        self.morpho = morpho.lower()
        self.allow = allow
        self.params: dict[str, MarketParams] = dict(snapshot.params)
        self.markets: dict[str, MarketState] = dict(snapshot.markets)
        self.positions: dict[str, dict[str, PositionState]] = {
            i: dict(p) for i, p in snapshot.positions.items()
        }
        self.oracles: dict[str, OracleModel] = dict(snapshot.oracles)
        self.irms: dict[str, IrmModel] = dict(snapshot.irms)
        self.answers: dict[str, int] = dict(snapshot.answers)
        self.block: BlockRef | None = None
        self.touched: set[tuple[str, str]] = set()  # (market id, borrower)
        self.changed_markets: set[str] = set()  # markets whose stored struct moved

    # ------------------------------------------------------------------ views

    @property
    def feeds(self) -> tuple[str, ...]:
        """Every feed a mirrored oracle follows."""
        return tuple(sorted({
            f for o in self.oracles.values() if o.feed_oracle is not None
            for f in (o.feed_oracle.collateral_feed, o.feed_oracle.loan_feed)
        }))

    def mirrored_price(self, market_id: str) -> int | None:
        """FeedOracle.price of the market's oracle from the feeds' answers (None: not mirrored,
        or the oracle would revert)."""
        oracle = self.oracles.get(self.params[market_id].oracle)
        if oracle is None or oracle.feed_oracle is None:
            return None
        model = oracle.feed_oracle
        try:
            return math.feed_oracle_price(
                model.scale_factor, self.answers.get(model.collateral_feed, 0),
                self.answers.get(model.loan_feed, 0),
            )
        except math.MorphoMathError:
            return None

    def irm_kind(self, market_id: str) -> str:
        model = self.irms.get(self.params[market_id].irm)
        return model.kind if model is not None else "read"

    def position(self, market_id: str, user: str) -> PositionState:
        return self.positions.get(market_id, {}).get(user.lower(), _EMPTY)

    def drain_touched(self) -> set[tuple[str, str]]:
        """The (market, borrower) pairs changed since the last call (and forget them)."""
        touched, self.touched = self.touched, set()
        return touched

    # ------------------------------------------------------------------ updates

    def apply(self, events: Sequence[Event], block: BlockRef) -> None:
        """Apply one block's logs (applied by log index). No I/O."""
        feeds = set(self.feeds)
        for event in sorted(events, key=lambda e: e.log_index):
            if event.removed:
                raise BookError(f"removed log at block {event.block_number}: resync the book")
            if event.block_number != block.number:
                raise BookError(f"log of block {event.block_number} applied as {block.number}")
            address = event.address.lower()
            if address == self.morpho:
                self._morpho_event(ev.decode(event), block.timestamp)
            elif address in feeds:
                record = ev.decode(event)
                if isinstance(record, ev.AnswerUpdated):
                    self.answers[address] = record.current
        self.block = block

    def _set(self, market_id: str, **changes: int) -> None:
        self.markets[market_id] = replace(self.markets[market_id], **changes)
        self.changed_markets.add(market_id)

    def _move(self, market_id: str, user: str, borrow_shares: int = 0, collateral: int = 0) -> None:
        user = user.lower()
        book = self.positions.setdefault(market_id, {})
        p = book.get(user, _EMPTY)
        book[user] = replace(p, borrow_shares=p.borrow_shares + borrow_shares,
                             collateral=p.collateral + collateral)
        if book[user].borrow_shares < 0 or book[user].collateral < 0:
            raise BookError(f"{user} in {market_id} went negative: the book missed a log")
        self.touched.add((market_id, user))

    def _morpho_event(self, record: ev.MorphoEvent | None, now: int) -> None:
        if record is None or isinstance(record, ev.AnswerUpdated):
            return
        if isinstance(record, ev.CreateMarket):
            if self.allow is None or record.id in self.allow:
                self.params[record.id] = record.params
                self.markets[record.id] = MarketState(last_update=now)
                self.positions.setdefault(record.id, {})
                self.changed_markets.add(record.id)
            return
        if record.id not in self.markets:
            return  # a market outside the allow-list
        m = self.markets[record.id]
        match record:
            case ev.AccrueInterest():
                self._set(record.id,
                          total_borrow_assets=m.total_borrow_assets + record.interest,
                          total_supply_assets=m.total_supply_assets + record.interest,
                          total_supply_shares=m.total_supply_shares + record.fee_shares,
                          last_update=now)
            case ev.SetFee():
                self._set(record.id, fee=record.new_fee, last_update=now)
            case ev.Supply():
                self._set(record.id,
                          total_supply_assets=m.total_supply_assets + record.assets,
                          total_supply_shares=m.total_supply_shares + record.shares,
                          last_update=now)
            case ev.Withdraw():
                self._set(record.id,
                          total_supply_assets=m.total_supply_assets - record.assets,
                          total_supply_shares=m.total_supply_shares - record.shares,
                          last_update=now)
            case ev.Borrow():
                self._set(record.id,
                          total_borrow_assets=m.total_borrow_assets + record.assets,
                          total_borrow_shares=m.total_borrow_shares + record.shares,
                          last_update=now)
                self._move(record.id, record.on_behalf, borrow_shares=record.shares)
            case ev.Repay():
                self._set(record.id,
                          total_borrow_assets=math.zero_floor_sub(m.total_borrow_assets,
                                                                  record.assets),
                          total_borrow_shares=m.total_borrow_shares - record.shares,
                          last_update=now)
                self._move(record.id, record.on_behalf, borrow_shares=-record.shares)
            case ev.SupplyCollateral():
                self._move(record.id, record.on_behalf, collateral=record.assets)
            case ev.WithdrawCollateral():
                self._set(record.id, last_update=now)
                self._move(record.id, record.on_behalf, collateral=-record.assets)
            case ev.Liquidate():
                self._liquidate(record, m, now)

    def _liquidate(self, record: ev.Liquidate, m: MarketState, now: int) -> None:
        tba = math.zero_floor_sub(m.total_borrow_assets, record.repaid_assets)
        self._set(record.id,
                  total_borrow_assets=tba - record.bad_debt_assets,
                  total_supply_assets=m.total_supply_assets - record.bad_debt_assets,
                  total_borrow_shares=(m.total_borrow_shares - record.repaid_shares
                                       - record.bad_debt_shares),
                  last_update=now)
        self._move(record.id, record.borrower,
                   borrow_shares=-record.repaid_shares, collateral=-record.seized_assets)
        if self.position(record.id, record.borrower).collateral == 0:
            # Morpho zeroes borrowShares whenever the collateral left is 0 (bad debt).
            self._move(record.id, record.borrower,
                       borrow_shares=-self.position(record.id, record.borrower).borrow_shares)

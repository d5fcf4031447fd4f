"""The keeper's bidding model for Flipper English auctions, priced against the exit pool.

For each live auction, `decide` returns one action (an intent: the calldata, the DAI it
takes from the keeper's Vat balance, what it expects to earn, a key that is never sent
twice) or a `Pass` with the reason:

- **deal** an auction the keeper won once its last bid is `ttl` old or it reached `end`
  (Flipper.deal: the lot becomes the keeper's gem in the Vat);
- **tick** an auction nobody bid on past `end` (Flipper.tick restarts it), when its lot is
  worth more than the gas of ticking, bidding and dealing;
- **tend** while the bid is below `tab`: the keeper's ceiling is what the lot sells for on
  the exit pool (`value(lot)`, DAI) less the gas of the bid, the deal and the exit and the
  minimum profit. It bids the smallest raise Flipper accepts (`beg` over the last bid, or
  `tab`), but at least `open_share` of its ceiling (so an auction kicked at 0 is not raised
  one wei at a time), and never above the ceiling; when the ceiling reaches `tab` it bids
  `tab`, which turns the auction to its dent phase;
- **dent** once the bid is `tab`: take the largest smaller lot Flipper accepts (a cut of
  `beg`) while that lot is still worth `tab` plus the costs and the minimum profit (the
  gems given up go back to the vault's owner, so the keeper never cuts deeper than it must).

The keeper never bids against itself (it passes while it is the high bidder), and a bid
needs the DAI it moves (all of it from a new high bidder, only the raise from the current
one) free in its Vat balance under the configured cap (`free_dai`). Every action is
checked against the Flipper's own rules (flip_rules) before it is offered: a bid the
contract would refuse is never sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from eth_abi.abi import encode

from keeper.types import Call
from strategies.maker import flip_rules as rules
from strategies.maker.flip_book import SELECTOR
from strategies.maker.flip_rules import RAY, Bid, FlipParams

# Gas each call uses on the devnet (tests/integration/test_flip_auctions.py measures them:
# tend 62-92k, dent 70-95k, deal 60-75k, tick 30k); limits with a margin.
GAS = {"tend": 150_000, "dent": 150_000, "deal": 120_000, "tick": 60_000}

Kind = Literal["tend", "dent", "deal", "tick"]


@dataclass(frozen=True, slots=True)
class FlipAction:
    """One call the keeper wants made on a Flipper auction."""

    kind: Kind
    flipper: str
    auction_id: int
    lot: int  # the lot bid for (tend: the auction's; dent: the cut one) [wad]
    bid: int  # [rad]
    vat_dai: int  # DAI the call moves out of the keeper's Vat balance [rad]
    value: int  # what the lot sells for on the exit pool now [DAI wad]
    expected_profit: int  # value - bid - costs if this bid wins [DAI wad]; deal: value
    key: str  # "flip:<flipper>:<id>:<state the call acts on>": never sent twice
    gas_limit: int

    @property
    def call(self) -> Call:
        """The Flipper call (tend/dent take (id, lot, bid); deal and tick take the id)."""
        if self.kind in ("tend", "dent"):
            args = encode(["uint256"] * 3, [self.auction_id, self.lot, self.bid])
        else:
            args = encode(["uint256"], [self.auction_id])
        return Call(to=self.flipper, data=SELECTOR[self.kind] + args.hex())


@dataclass(frozen=True, slots=True)
class Pass:
    """No call on this auction now, and why."""

    auction_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class BidTerms:
    """What the model needs besides the auction: who bids, costs, capital and margins."""

    keeper: str  # the bidder (the auctions' `guy` when it leads), lower-case
    costs: int  # gas of one bid, the deal and the exit, in DAI [wad]
    tick_cost: int  # gas of a tick in DAI [wad]
    free_dai: int  # the keeper's Vat DAI it may still put into bids (under the cap) [rad]
    min_profit: int = 0  # [DAI wad]
    open_share: int = 50  # percent of the ceiling a first tend bids at least


def _dai(rad: int) -> int:
    """Rad to DAI wad, rounded up (a cost)."""
    return -(-rad // RAY)


def _shown(wad: int) -> str:
    """A DAI (or gem) wad amount for a reason line."""
    return f"{wad / 10**18:,.2f}"


@dataclass(frozen=True, slots=True)
class AuctionAt:
    """One auction of a Flipper as the book holds it at block time `now`."""

    flipper: str
    auction_id: int
    bid: Bid
    params: FlipParams
    now: int

    def action(self, kind: Kind, lot: int, bid: int, *, moves: int, worth: int, profit: int,
               state: str) -> FlipAction:
        key = f"flip:{self.flipper}:{self.auction_id}:{state}"
        return FlipAction(kind, self.flipper, self.auction_id, lot, bid, moves, worth, profit,
                          key, GAS[kind])

    def skip(self, reason: str) -> Pass:
        return Pass(self.auction_id, reason)


def decide(at: AuctionAt, value: Callable[[int], int], terms: BidTerms) -> FlipAction | Pass:
    """The model's one action on the auction; `value(lot)` is what `lot` gems sell for on
    the exit pool, in DAI wad."""
    auction, params, now = at.bid, at.params, at.now
    if not auction.live:
        return at.skip("auction is gone (dealt or yanked)")
    if rules.deal_refusal(auction, now) is None:
        if auction.guy != terms.keeper.lower():
            return at.skip(f"finished: won by {auction.guy}")
        worth = value(auction.lot)
        return at.action("deal", auction.lot, auction.bid, moves=0, worth=worth, profit=worth,
                         state="deal")
    if rules.tick_refusal(auction, now) is None:
        worth = value(auction.lot)
        if worth <= terms.tick_cost + terms.costs + terms.min_profit:
            return at.skip(f"unbid past its end, lot worth {_shown(worth)} DAI below the costs")
        return at.action("tick", auction.lot, 0, moves=0, worth=worth,
                         profit=worth - terms.tick_cost - terms.costs, state=f"tick:{auction.end}")
    if auction.guy == terms.keeper.lower():
        return at.skip("we are the high bidder")
    if rules.tend_refusal(auction, params, now, auction.lot, auction.tab) not in (
            None, "Flipper/bid-not-higher"):
        return at.skip("not open for bids (its last bid or its end has passed)")
    return _dent(at, value, terms) if auction.dent_phase else _tend(at, value, terms)


def _tend(at: AuctionAt, value: Callable[[int], int], terms: BidTerms) -> FlipAction | Pass:
    auction = at.bid
    worth = value(auction.lot)
    ceiling = (worth - terms.costs - terms.min_profit) * RAY  # the most we pay [rad]
    lowest = rules.min_tend_bid(auction, at.params)
    if ceiling < lowest:
        return at.skip(f"outbid: the next bid {_shown(_dai(lowest))} DAI is above the lot's "
                       f"{_shown(worth)} DAI less costs {_shown(terms.costs)} DAI and the "
                       "minimum profit")
    bid = auction.tab if ceiling >= auction.tab else max(
        lowest, ceiling * terms.open_share // 100)
    return _checked_bid(at, "tend", auction.lot, bid, worth=worth, terms=terms)


def _dent(at: AuctionAt, value: Callable[[int], int], terms: BidTerms) -> FlipAction | Pass:
    auction = at.bid
    lot = rules.max_dent_lot(auction, at.params)
    if lot <= 0:
        return at.skip("the lot cannot be cut any further")
    worth = value(lot)
    if worth - _dai(auction.tab) - terms.costs < terms.min_profit:
        return at.skip(f"outbid: {_shown(lot)} gems are worth {_shown(worth)} DAI, less than "
                       f"the tab {_shown(_dai(auction.tab))} DAI and the costs")
    return _checked_bid(at, "dent", lot, auction.tab, worth=worth, terms=terms)


def _checked_bid(at: AuctionAt, kind: Kind, lot: int, bid: int, *, worth: int,
                 terms: BidTerms) -> FlipAction | Pass:
    """The bid, once Flipper's rules accept it and the keeper's capital covers it."""
    check = rules.tend_refusal if kind == "tend" else rules.dent_refusal
    refusal = check(at.bid, at.params, at.now, lot, bid)
    if refusal is not None:  # the model's own bug: never send what the contract refuses
        return at.skip(f"the model's {kind} would revert: {refusal}")
    moves = (rules.tend_moves(at.bid, terms.keeper, bid) if kind == "tend"
             else rules.dent_moves(at.bid, terms.keeper))
    if moves > terms.free_dai:
        return at.skip(f"no capital: the {kind} moves {_shown(_dai(moves))} DAI, "
                       f"{_shown(terms.free_dai // RAY)} DAI free under the cap")
    profit = worth - _dai(bid) - terms.costs
    return at.action(kind, lot, bid, moves=moves, worth=worth, profit=profit,
                     state=f"{kind}:{lot}:{bid}")

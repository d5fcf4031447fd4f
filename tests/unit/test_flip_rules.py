"""Flipper and Cat mirrors (strategies/maker/flip_rules.py, cat_bite.py), the bidding
model (flip_bidder.py) and the Flipper book's replay of logs (flip_book.py), without a
chain: the boundaries of each rule, the model's action in each situation, the notes the book
follows. tests/integration/test_flip_parity.py proves the mirrors on the chain."""

from __future__ import annotations

import random

import pytest
from eth_abi.abi import encode

from keeper.types import BlockRef, Event
from strategies.maker import cat_bite, flip_book
from strategies.maker import flip_rules as rules
from strategies.maker.flip_bidder import AuctionAt, BidTerms, FlipAction, Pass, decide
from strategies.maker.flip_book import FlipBook
from strategies.maker.flip_rules import RAD, RAY, WAD, Bid, FlipParams

PARAMS = FlipParams(beg=101 * WAD // 100, ttl=3600, tau=3600)
ME, RIVAL, CAT = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "cc" * 20
NOW = 1_000_000


def auction(bid: int = 0, lot: int = 2 * WAD, guy: str = CAT, *, tic: int = 0,
            end: int = NOW + 3000, tab: int = 1000 * RAD) -> Bid:
    return Bid(bid, lot, guy, tic, end, "0x" + "aa" * 20, "0x" + "bb" * 20, tab)


def test_min_tend_bid_is_the_boundary_of_tend() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        tab = rng.randint(1, 10**6) * RAD // 1000
        a = auction(bid=rng.randint(0, tab), tab=tab)
        params = FlipParams(rng.choice([WAD, 101 * WAD // 100, 105 * WAD // 100, 3 * WAD]),
                            3600, 3600)
        if a.bid == a.tab:
            continue
        lowest = rules.min_tend_bid(a, params)
        assert rules.tend_refusal(a, params, NOW, a.lot, lowest) is None
        assert rules.tend_refusal(a, params, NOW, a.lot, lowest - 1) is not None
    assert rules.min_tend_bid(auction(bid=0), PARAMS) == 1
    assert rules.min_tend_bid(auction(bid=101), PARAMS) == 103  # ceil(102.01)
    assert rules.min_tend_bid(auction(bid=999 * RAD), PARAMS) == 1000 * RAD  # tab


def test_max_dent_lot_is_the_boundary_of_dent() -> None:
    rng = random.Random(6)
    for _ in range(2000):
        a = auction(bid=1000 * RAD, lot=rng.randint(2, 10**22), guy=RIVAL, tic=NOW + 10)
        cut = rules.max_dent_lot(a, PARAMS)
        assert rules.dent_refusal(a, PARAMS, NOW, a.lot, a.tab) == "Flipper/lot-not-lower"
        assert rules.dent_refusal(a, PARAMS, NOW, cut, a.tab) is None
        assert rules.dent_refusal(a, PARAMS, NOW, cut + 1, a.tab) is not None


def test_phases_and_expiry() -> None:
    a = auction(bid=10 * RAD, guy=RIVAL, tic=NOW + 5)
    assert rules.dent_refusal(a, PARAMS, NOW, a.lot - 1, a.bid) == "Flipper/tend-not-finished"
    assert rules.deal_refusal(a, NOW) == "Flipper/not-finished"
    assert rules.tend_refusal(a, PARAMS, NOW + 5, a.lot, a.tab) == "Flipper/already-finished-tic"
    assert rules.deal_refusal(a, NOW + 6) is None
    unbid = auction(end=NOW - 1)
    assert rules.tend_refusal(unbid, PARAMS, NOW, unbid.lot, 1) == "Flipper/already-finished-end"
    assert rules.deal_refusal(unbid, NOW) == "Flipper/not-finished"
    assert rules.tick_refusal(unbid, NOW) is None
    assert rules.after_tick(unbid, PARAMS, NOW).end == NOW + PARAMS.tau
    assert rules.tend_moves(a, RIVAL, 20 * RAD) == 10 * RAD
    assert rules.tend_moves(a, ME, 20 * RAD) == 20 * RAD


ILK = cat_bite.CatIlk(flip=CAT, chop=105 * WAD // 100, dunk=500 * RAD, rate=RAY,
                      spot=100 * RAY, dust=100 * RAD)


def test_bite_plan_sizes_by_dunk_and_room() -> None:
    cat = cat_bite.CatState(live=1, box=10_000 * RAD, litter=0)
    plan = cat_bite.bite_plan(10 * WAD, 1100 * WAD, ILK, cat)  # 10 * 100 < 1100
    assert plan.refusal is None
    assert plan.dart == 500 * WAD * WAD // (105 * WAD // 100)  # dunk / chop
    assert plan.dink == 10 * WAD * plan.dart // (1100 * WAD)
    assert plan.tab == plan.dart * RAY * ILK.chop // WAD <= 500 * RAD
    roomy = cat_bite.CatState(live=1, box=10_000 * RAD, litter=9_800 * RAD)
    assert cat_bite.bite_plan(10 * WAD, 1100 * WAD, ILK, roomy).tab <= 200 * RAD
    full = cat_bite.CatState(live=1, box=10_000 * RAD, litter=9_950 * RAD)  # room < dust
    assert cat_bite.bite_plan(10 * WAD, 1100 * WAD, ILK, full).refusal == (
        "Cat/liquidation-limit-hit")
    assert cat_bite.bite_plan(10 * WAD, 900 * WAD, ILK, cat).refusal == "Cat/not-unsafe"
    assert cat_bite.bite_plan(10 * WAD, 1100 * WAD, ILK, cat_bite.CatState(0, 1, 0)).refusal \
        == "Cat/not-live"


def terms(free: int = 10_000 * RAD, costs: int = 5 * WAD) -> BidTerms:
    return BidTerms(keeper=ME, costs=costs, tick_cost=WAD, free_dai=free)


def at(a: Bid, now: int = NOW) -> AuctionAt:
    return AuctionAt("0x" + "ff" * 20, 7, a, PARAMS, now)


def test_the_model_tends_up_to_its_ceiling_then_to_tab() -> None:
    # 2 gems at 400 DAI = 800 DAI, tab 1000: the ceiling is 795 DAI; first bid half of it.
    first = decide(at(auction()), lambda lot: lot * 400, terms())
    assert isinstance(first, FlipAction) and first.kind == "tend"
    assert first.bid == 795 * RAD // 2 and first.vat_dai == first.bid
    assert first.key.endswith(f":7:tend:{2 * WAD}:{first.bid}")
    # Outbid by a rival at 790: the next valid bid (797.9) is above the ceiling.
    lost = decide(at(auction(bid=790 * RAD, guy=RIVAL, tic=NOW + 60)),
                  lambda lot: lot * 400, terms())
    assert isinstance(lost, Pass) and lost.reason.startswith("outbid")
    # Worth more than tab plus costs: bid tab (the dent phase).
    rich = decide(at(auction(bid=790 * RAD, guy=RIVAL, tic=NOW + 60)),
                  lambda lot: lot * 600, terms())
    assert isinstance(rich, FlipAction) and rich.bid == 1000 * RAD
    assert rich.expected_profit == 1200 * WAD - 1000 * WAD - 5 * WAD
    broke = decide(at(auction(bid=790 * RAD, guy=RIVAL, tic=NOW + 60)),
                   lambda lot: lot * 600, terms(free=999 * RAD))
    assert isinstance(broke, Pass) and broke.reason.startswith("no capital")
    mine = decide(at(auction(bid=790 * RAD, guy=ME, tic=NOW + 60)),
                  lambda lot: lot * 600, terms())
    assert isinstance(mine, Pass) and mine.reason == "we are the high bidder"


def test_the_model_dents_deals_and_ticks() -> None:
    dent_phase = auction(bid=1000 * RAD, guy=RIVAL, tic=NOW + 60)
    cut = decide(at(dent_phase), lambda lot: lot * 600, terms())
    assert isinstance(cut, FlipAction) and cut.kind == "dent"
    assert cut.lot == rules.max_dent_lot(dent_phase, PARAMS) and cut.bid == 1000 * RAD
    thin = decide(at(dent_phase), lambda lot: lot * 505, terms())
    assert isinstance(thin, Pass) and thin.reason.startswith("outbid")
    won = auction(bid=1000 * RAD, guy=ME, tic=NOW - 1)
    deal = decide(at(won), lambda lot: lot * 600, terms())
    assert isinstance(deal, FlipAction) and deal.kind == "deal" and deal.vat_dai == 0
    theirs = decide(at(auction(bid=1000 * RAD, guy=RIVAL, tic=NOW - 1)),
                    lambda lot: lot * 600, terms())
    assert isinstance(theirs, Pass)
    stale = decide(at(auction(end=NOW - 1)), lambda lot: lot * 600, terms())
    assert isinstance(stale, FlipAction) and stale.kind == "tick"
    assert stale.key.endswith(f":tick:{NOW - 1}")
    worthless = decide(at(auction(end=NOW - 1, lot=1)), lambda lot: lot * 600, terms())
    assert isinstance(worthless, Pass)


def _event(topics: list[str], data: str = "0x", *, index: int = 0) -> Event:
    return Event(address=FLIPPER, topics=tuple(topics), data=data, block_number=5,
                 block_hash="0x" + "00" * 32, transaction_hash="0x" + "00" * 32,
                 transaction_index=0, log_index=index)


def _word(value: int | str) -> str:
    if isinstance(value, str):
        return "0x" + value.removeprefix("0x").rjust(64, "0")
    return "0x" + f"{value:064x}"


def _note(topic: str, sender: str, *args: int) -> Event:
    """A LibNote as the Flipper logs it: selector, caller, the first two arguments; the data
    the ABI bytes of the calldata."""
    calldata = bytes.fromhex(topic[2:10]) + b"".join(a.to_bytes(32, "big") for a in args)
    data = (32).to_bytes(32, "big") + (224).to_bytes(32, "big") + calldata.ljust(224, b"\0")
    return _event([topic, _word(sender), _word(args[0]),
                   _word(args[1] if len(args) > 1 else 0)], "0x" + data.hex())


FLIPPER = "0x" + "ff" * 20


def test_the_book_replays_kick_and_notes() -> None:
    book = FlipBook(FLIPPER, CAT, PARAMS)
    block = BlockRef(5, "0x", "0x", NOW)
    kick = _event([flip_book.KICK, _word("aa" * 20), _word("bb" * 20)],
                  "0x" + encode(["uint256"] * 4, [3, 2 * WAD, 0, 1000 * RAD]).hex())
    book.apply([kick, _note(flip_book.TEND, RIVAL, 3, 2 * WAD, 400 * RAD)], block)
    assert book.auctions[3] == Bid(400 * RAD, 2 * WAD, RIVAL, NOW + PARAMS.ttl,
                                   NOW + PARAMS.tau, "0x" + "aa" * 20, "0x" + "bb" * 20,
                                   1000 * RAD)
    beg = int.from_bytes(b"beg".ljust(32, b"\0"), "big")
    book.apply([_note(flip_book.FILE_UINT, CAT, beg, 105 * WAD // 100)], block)
    assert book.params.beg == 105 * WAD // 100
    book.followed_from = 3  # auctions 1 and 2 were kicked before the book's start block
    book.apply([_note(flip_book.TICK, RIVAL, 2)], block)
    with pytest.raises(flip_book.FlipBookError):
        book.apply([_note(flip_book.TICK, RIVAL, 4)], block)
    book.apply([_note(flip_book.DEAL, RIVAL, 3)], block)
    assert book.auctions == {}

"""PARITY: Cat.bite and the Flipper's English auction, mirrored, equal the chain.

On the Maker devnet profile (the testchain's real Cat and ETH-A Flipper), after a price
drop:

- every ETH-A vault is bitten again and again until the Cat refuses: each time the local
  `bite_plan` (dink, dart, tab, or the revert string) equals what `Cat.bite` does, through
  partial bites (`dunk`), the `box`/`litter` room shrinking, a lowered `box`, and safe
  vaults (`Cat/not-unsafe`); the Cat mirrored from its logs (`litter` from Bite and claw,
  `box` from file) equals the Cat's state after the bites and after the deals;
- the Flipper book, synced once and then fed only the Flipper's logs (Kick and LibNote
  notes), equals `bids(id)` of every auction after each of two rival bidders' plain
  transactions: tends, a self-raise, the tend -> dent switch at `tab`, dents, a `file` of
  `beg`, expiry by `ttl` and by `tau`, `tick`, `deal` and `yank`;
- every invalid bid tried (below `beg`, the wrong lot, above `tab`, a dent before `tab`, a
  cut smaller than `beg`, after `ttl` or `tau`, a deal or tick too early) reverts with the
  string the mirror predicts, and the smallest valid bid the mirror computes succeeds while
  one wei less reverts.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from eth_abi.abi import encode
from web3 import Web3

from keeper.chain.http import HttpRpc
from keeper.devnet import maker as mcd
from keeper.devnet.maker_seed import RAD, WAD, follow_price, ilk_id
from keeper.types import LogFilter
from strategies.maker import cat_bite
from strategies.maker import flip_rules as rules
from strategies.maker.flip_book import SELECTOR, FlipBook, sync_book
from strategies.maker.flip_rules import Bid
from tests.conftest import Devnet
from tests.integration.flip_helpers import (
    ETH_A,
    as_proxy,
    block_ref,
    chain_bids,
    flipper,
    follow,
    fund_bidder,
    revert_reason,
    send,
    vat,
    vat_dai,
)
from tests.integration.helpers import fresh_accounts


def cat_state(devnet: Devnet) -> tuple[cat_bite.CatIlk, cat_bite.CatState]:
    info = devnet.info.maker
    assert info is not None
    cat = mcd.contract(devnet.w3, "Cat", info.cat)
    flip, chop, dunk = cat.functions.ilks(ilk_id(ETH_A)).call()
    _art, rate, spot, _line, dust = vat(devnet).functions.ilks(ilk_id(ETH_A)).call()
    return (cat_bite.CatIlk(flip.lower(), chop, dunk, rate, spot, dust),
            cat_bite.CatState(cat.functions.live().call(), cat.functions.box().call(),
                              cat.functions.litter().call()))


def bite_every_vault(devnet: Devnet, biter: str) -> list[str]:
    """Bite each ETH-A vault until the Cat refuses, checking every plan; the refusals."""
    info = devnet.info.maker
    assert info is not None
    urns = [v.urn for v in info.vaults if v.ilk == ETH_A]
    refusals: list[str] = []
    lowered = False
    for urn in urns:
        for _ in range(12):
            ilk, cat = cat_state(devnet)
            ink, art = vat(devnet).functions.urns(ilk_id(ETH_A), urn).call()
            plan = cat_bite.bite_plan(ink, art, ilk, cat)
            call = cat_bite.bite_call(info.cat, ETH_A, urn)
            if plan.refusal is not None:
                reason = revert_reason(devnet, biter, call.to, call.data)
                assert reason is not None and plan.refusal in reason, (urn, plan, reason)
                refusals.append(plan.refusal)
                break
            receipt = send(devnet, biter, call.to, call.data)
            bite = mcd.contract(devnet.w3, "Cat", info.cat).events.Bite().process_receipt(
                receipt)[0]["args"]
            assert (bite["ink"], bite["art"], bite["tab"]) == (
                plan.dink, plan.dart, plan.dart * ilk.rate), (urn, plan)
            kick = flipper(devnet).events.Kick().process_receipt(receipt)[0]["args"]
            assert (kick["lot"], kick["tab"], kick["bid"]) == (plan.dink, plan.tab, 0)
            assert cat_state(devnet)[1].litter == cat.litter + plan.tab
            if not lowered and cat.litter + plan.tab > 3000 * RAD:
                # Leave less room than the ilk's dust: the next bite must be refused.
                lowered = True
                box = cat.litter + plan.tab + ilk.dust // 2
                as_proxy(devnet, info.cat, mcd.contract(devnet.w3, "Cat", info.cat)
                              .encode_abi("file", [b"box".ljust(32, b"\0"), box]))
    return refusals


def tend(auction_id: int, lot: int, bid: int) -> str:
    return SELECTOR["tend"] + encode(["uint256"] * 3, [auction_id, lot, bid]).hex()


def dent(auction_id: int, lot: int, bid: int) -> str:
    return SELECTOR["dent"] + encode(["uint256"] * 3, [auction_id, lot, bid]).hex()


def one(name: str, auction_id: int) -> str:
    return SELECTOR[name] + encode(["uint256"], [auction_id]).hex()


class Checker:
    """Keeps the Flipper book following the chain and compares it after every step."""

    def __init__(self, devnet: Devnet, rpc: HttpRpc, book: FlipBook, head: int) -> None:
        self.devnet, self.rpc, self.book, self.head = devnet, rpc, book, head
        self.ids = sorted(book.auctions)

    async def step(self) -> int:
        """Follow the chain to its head and compare every auction; the head's timestamp."""
        ref = await follow(self.rpc, self.book, self.head)
        self.head = ref.number
        chain = chain_bids(self.devnet, self.ids)
        mine = {i: self.book.auctions.get(i, rules.EMPTY) for i in self.ids}
        assert mine == chain
        return ref.timestamp

    def refused(self, sender: str, data: str, expected: str | None) -> None:
        """The mirror's verdict equals eth_call's at the head."""
        reason = revert_reason(self.devnet, sender, self.book.flipper, data)
        if expected is None:
            assert reason is None, reason
        else:
            assert reason is not None and expected in reason, (expected, reason)


def test_bite_and_flipper_parity(maker: Devnet) -> None:
    info = maker.info.maker
    assert info is not None
    alice, bob = fresh_accounts(maker, 2)
    start = maker.w3.eth.block_number
    follow_price(maker.w3, info, Decimal("1700"))
    refusals = bite_every_vault(maker, alice)
    assert "Cat/not-unsafe" in refusals and "Cat/liquidation-limit-hit" in refusals
    bitten = asyncio.run(cat_parity(maker, start))
    assert bitten > 0  # from 0: the mirror added every bite's tab with its penalty
    for bidder in (alice, bob):
        fund_bidder(maker, bidder, 100_000 * WAD)
    asyncio.run(run_auctions(maker, alice.lower(), bob.lower()))
    assert asyncio.run(cat_parity(maker, start)) < bitten  # the deals' and the yank's claws


async def cat_parity(maker: Devnet, start: int) -> int:
    """The Cat read at `start` and followed by its logs since equals the Cat read now."""
    info = maker.info.maker
    assert info is not None
    async with HttpRpc(maker.info.rpc_url) as rpc:
        book = await cat_bite.read_cat(rpc, info.cat, [ETH_A], start)
        head = (await block_ref(rpc, "latest")).number
        log_filter = LogFilter((info.cat.lower(),), cat_bite.CAT_TOPICS)
        for event in await rpc.get_logs(log_filter, start + 1, head):
            book.apply(event)
        now = await cat_bite.read_cat(rpc, info.cat, [ETH_A], head)
    assert (book.state, book.ilks) == (now.state, now.ilks)
    return book.state.litter


async def run_auctions(maker: Devnet, alice: str, bob: str) -> None:
    """The book synced once, then the two bidders' script, checked after every block."""
    async with HttpRpc(maker.info.rpc_url) as rpc:
        at = await block_ref(rpc, "latest")
        book = await sync_book(rpc, flipper(maker).address, 0, at)
        check = Checker(maker, rpc, book, at.number)
        assert len(check.ids) >= 4 and check.ids == list(range(1, len(check.ids) + 1))
        await _auction_script(maker, check, alice, bob)


async def _auction_script(maker: Devnet, check: Checker, alice: str, bob: str) -> None:
    book, params = check.book, check.book.params
    now = await check.step()
    one_id, two_id, three_id, four_id = check.ids[:4]
    a: Bid = book.auctions[one_id]
    # Tend phase on auction 1: a first bid, then the refusals around the next one.
    send(maker, alice, book.flipper, tend(one_id, a.lot, a.tab // 4))
    now = await check.step()
    a = book.auctions[one_id]
    lowest = rules.min_tend_bid(a, params)
    for sender, data, lot, bid in (
        (bob, tend(one_id, a.lot, lowest - 1), a.lot, lowest - 1),
        (bob, tend(one_id, a.lot - 1, lowest), a.lot - 1, lowest),
        (bob, tend(one_id, a.lot, a.tab + 1), a.lot, a.tab + 1),
        (bob, tend(one_id, a.lot, a.bid), a.lot, a.bid),
        (bob, tend(one_id, a.lot, lowest), a.lot, lowest),
    ):
        check.refused(sender, data, rules.tend_refusal(a, params, now, lot, bid))
    check.refused(bob, dent(one_id, a.lot - 1, a.bid),
                  rules.dent_refusal(a, params, now, a.lot - 1, a.bid))
    check.refused(bob, one("deal", one_id), rules.deal_refusal(a, now))
    check.refused(bob, one("tick", one_id), rules.tick_refusal(a, now))
    assert rules.tend_refusal(a, params, now, a.lot, lowest - 1) == "Flipper/insufficient-increase"
    send(maker, bob, book.flipper, tend(one_id, a.lot, lowest))
    await check.step()
    # Alice outbids to tab: the auction turns to its dent phase (Bob is repaid).
    before = vat_dai(maker, bob)
    send(maker, alice, book.flipper, tend(one_id, a.lot, a.tab))
    now = await check.step()
    a = book.auctions[one_id]
    assert a.dent_phase and vat_dai(maker, bob) == before + lowest
    cut = rules.max_dent_lot(a, params)
    check.refused(bob, dent(one_id, cut + 1, a.tab),
                  rules.dent_refusal(a, params, now, cut + 1, a.tab))
    check.refused(bob, tend(one_id, a.lot, a.tab), rules.tend_refusal(a, params, now, a.lot, a.tab))
    send(maker, bob, book.flipper, dent(one_id, cut, a.tab))
    await check.step()
    send(maker, alice, book.flipper, dent(one_id, rules.max_dent_lot(book.auctions[one_id],
                                                                      params), a.tab))
    await check.step()
    # Auction 2: Alice raises her own bid (only the raise moves), under a new beg.
    as_proxy(maker, book.flipper, flipper(maker).encode_abi(
        "file", [b"beg".ljust(32, b"\0"), 105 * WAD // 100]))
    await check.step()
    assert book.params.beg == 105 * WAD // 100
    params = book.params
    b = book.auctions[two_id]
    send(maker, alice, book.flipper, tend(two_id, b.lot, b.tab // 10))
    await check.step()
    b = book.auctions[two_id]
    before = vat_dai(maker, alice)
    raise_to = rules.min_tend_bid(b, params)
    send(maker, alice, book.flipper, tend(two_id, b.lot, raise_to))
    now = await check.step()
    assert before - vat_dai(maker, alice) == rules.tend_moves(b, alice, raise_to)
    # Past ttl: auctions 1 and 2 end; bids refused, deal settles (anyone may call it).
    maker.rpc("evm_increaseTime", params.ttl + 10)
    maker.rpc("evm_mine")
    now = await check.step()
    b = book.auctions[two_id]
    check.refused(bob, tend(two_id, b.lot, rules.min_tend_bid(b, params)),
                  rules.tend_refusal(b, params, now, b.lot, rules.min_tend_bid(b, params)))
    assert rules.tend_refusal(b, params, now, b.lot, b.tab) == "Flipper/already-finished-tic"
    for auction_id in (one_id, two_id):
        check.refused(bob, one("deal", auction_id), rules.deal_refusal(
            book.auctions[auction_id], now))
        send(maker, bob, book.flipper, one("deal", auction_id))
        await check.step()
    assert one_id not in book.auctions and two_id not in book.auctions
    # Past tau, auction 3 had no bid: tend and deal refused, tick restarts it.
    maker.rpc("evm_increaseTime", params.tau + 10)
    maker.rpc("evm_mine")
    now = await check.step()
    c = book.auctions[three_id]
    assert rules.tend_refusal(c, params, now, c.lot, 1) == "Flipper/already-finished-end"
    check.refused(bob, tend(three_id, c.lot, 1), rules.tend_refusal(c, params, now, c.lot, 1))
    check.refused(bob, one("deal", three_id), rules.deal_refusal(c, now))
    check.refused(bob, one("tick", three_id), rules.tick_refusal(c, now))
    send(maker, bob, book.flipper, one("tick", three_id))
    now = await check.step()
    c = book.auctions[three_id]
    check.refused(bob, tend(three_id, c.lot, 1), rules.tend_refusal(c, params, now, c.lot, 1))
    send(maker, bob, book.flipper, tend(three_id, c.lot, 1))
    await check.step()
    check.refused(bob, one("tick", three_id), "Flipper/not-finished")
    # Auction 4 is yanked (as End would, by a ward that hoped the Flipper to be repaid the
    # bid): the book deletes it.
    hope = vat(maker).encode_abi("hope", [flipper(maker).address])
    as_proxy(maker, vat(maker).address, hope)
    as_proxy(maker, book.flipper, SELECTOR_YANK + encode(["uint256"], [four_id]).hex())
    await check.step()
    assert four_id not in book.auctions


SELECTOR_YANK = "0x" + Web3.keccak(text="yank(uint256)")[:4].hex()

"""The Flipper side of the Maker strategy (liquidations 1.2): Cat.bite and English auctions.

MakerStrategy (strategy.py) owns the vault book and calls this side in each of its steps
(`make_flip_side`; see the Strategy Protocol in keeper/strategy.py):

- `sync` reads the Cat (cat_bite.read_cat), finds each configured ilk the Cat liquidates
  (its `flip` is set), and syncs a Flipper book per Flipper (flip_book.sync_book) and the
  exit pair the bidding model prices lots on (`flip_exit_pair`, a Uniswap V2 pair of the
  ilk's gem against Maker DAI, kept from its Sync logs);
- `apply` follows the Cat's Bite, claw and file logs, the Flippers' Kick and notes, and the
  pair's Sync logs, with the block's timestamp (pure);
- `candidates` offers, for each unsafe vault of a Flipper ilk, a **bite** (with the first
  tend in the same transaction: Cat 1.2 pays no keeper reward, the bite is worth the
  auction it opens), sized by Cat.bite's own rules across the bites of the block; a vault
  the Cat would refuse (box full or its room under dust, not live, a null auction) is logged
  once with that reason instead. And for each live auction, the bidding model's action
  (flip_bidder.decide): **tend**, **dent**, **deal** (ours, once it ended), or the tend that
  follows a **tick** (an auction that ended unbid).

Every call goes through the keeper's MakerKeeper contract, which is the auctions' bidder
(`guy`): it pulls from the account only the Maker DAI its Vat balance lacks for a bid (a
refund of an outbid bid stays there and pays for the next one), and exits a lot it won to
the account as the gem's ERC-20; `payOut` returns the refunds (a **payout** candidate, once
they reach a DAI and no bid of the block would spend them), and `exitGem` a lot it won that
someone else dealt (an **exit** candidate); both amounts are mirrored from the Vat's notes
(flip_vat.py). So the journal values each send from its receipt's transfers:
a bid is the DAI it pulled, a deal the gem it returned, a payout the DAI it returned. A
candidate's `seize(repay)` is the lot the bid is for (what it wins), `repay` the whole bid.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import structlog
from eth_abi.abi import encode
from eth_utils.crypto import keccak

from keeper.dex.uniswap_v2 import PairBook
from keeper.errors import KeeperError
from keeper.strategy import ChainReader, StrategyContext
from keeper.types import BlockRef, Call, Candidate, Event, LogFilter
from strategies.maker import cat_bite
from strategies.maker import flip_rules as rules
from strategies.maker.book import VaultBook
from strategies.maker.cat_bite import CAT_TOPICS, CatBook, CatIlk
from strategies.maker.config import MakerConfig
from strategies.maker.flip_bidder import GAS, AuctionAt, BidTerms, FlipAction, Pass, decide
from strategies.maker.flip_book import FlipBook, sync_book
from strategies.maker.flip_rules import RAY, WAD, Bid
from strategies.maker.flip_vat import KeeperVat

log = structlog.get_logger(__name__)

# MakerKeeper's own work on top of the Flipper call: a DAI pull and join, or a gem exit.
KEEPER_GAS = 120_000
# The gas price the model assumes for its costs when the block has no base fee (anvil's 0).
FLOOR_GAS_PRICE = 10**9


def _selector(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex()


_BITE = _selector("bite(address,bytes32,address,address,uint256,uint256)")
_TEND = _selector("tend(address,uint256,uint256,uint256,uint256)")
_DENT = _selector("dent(address,uint256,uint256,uint256,uint256)")
_DEAL = _selector("deal(address,address,uint256)")
_PAY_OUT = _selector("payOut()")
_EXIT_GEM = _selector("exitGem(address,uint256)")
# Refunds in MakerKeeper's Vat balance are paid out once they reach a DAI.
PAY_OUT_FROM = WAD * RAY
PAY_OUT_GAS = 150_000


@dataclass(frozen=True)
class FlipIntent:
    """`Candidate.private` of the Flipper side: one MakerKeeper call."""

    kind: str  # "bite", "tend", "dent", "deal", "payout" or "exit"
    ilk: str
    flipper: str
    auction_id: int = 0  # 0 for a bite (its id is known once it is mined)
    urn: str = ""
    lot: int = 0  # [wad]
    bid: int = 0  # [rad]
    tab: int = 0  # the auction's tab [rad]: a bid below it is a tend-phase bid


@dataclass
class _Ilk:
    """A Flipper ilk: its Flipper's book and its gem and join."""

    name: str
    join: str
    gem: str
    book: FlipBook


class FlipSide:
    """Cat.bite and Flipper bids of the configured ilks the Cat liquidates."""

    def __init__(self, config: MakerConfig, context: StrategyContext) -> None:
        self.config = config
        self.context = context
        self.keeper = config.keeper_contract.lower()  # the bidder: MakerKeeper
        self.dai = config.dai.lower()
        self.cat: CatBook | None = None
        self.ilks: dict[str, _Ilk] = {}
        self.pairs: PairBook | None = None
        self.forbidden: dict[tuple[str, str], str] = {}  # (ilk, urn) -> Cat's revert string
        self.passes: dict[tuple[str, int], str] = {}  # (ilk, id) -> why the model passes
        self._spent = 0  # DAI [rad] the candidates offered so far this block would move
        # DAI [rad] the block's Clipper takes (MakerStrategy, offered first) may move into
        # the Vat: `max_vat_dai` is one running total across takes and bids.
        self.taken = 0
        # MakerKeeper's DAI and gems in the Vat (refunds; lots others dealt to it).
        self.held = KeeperVat(config.vat.lower(), self.keeper)

    def subscriptions(self) -> Sequence[LogFilter]:
        if self.config.cat is None:
            return []
        filters = [LogFilter((self.config.cat.lower(),), CAT_TOPICS), self.held.subscription()]
        filters += [i.book.subscriptions() for i in self.ilks.values()]
        if self.pairs is not None:
            filters.append(self.pairs.subscriptions())
        return filters

    async def sync(self, chain: ChainReader, at: BlockRef, book: VaultBook) -> None:
        """The Cat, each Flipper's live auctions and the exit pair at block `at`."""
        del book  # the vault book is MakerStrategy's, synced before this
        if self.config.cat is None:
            return
        names = list(self.config.ilks)
        cat = await cat_bite.read_cat(chain, self.config.cat, names, at.number)
        ilks = {}
        for name in names:
            flip = cat.ilks[name][0]
            if flip == cat_bite.ZERO:
                continue
            join = self.config.ilks[name].join.lower()
            gem = "0x" + (await chain.eth_call(join, _selector("gem()"), at.number))[-40:]
            flip_book = await sync_book(chain, flip, self.config.start_block, at)
            ilks[name] = _Ilk(name, join, gem.lower(), flip_book)
        reads = self.held.reads(list(ilks))
        answers = await chain.batch([("eth_call", [{"to": to, "data": data}, hex(at.number)])
                                     for to, data in reads])
        self.held.load(list(ilks), [str(a) for a in answers])
        pairs = None
        if self.config.flip_exit_pair is not None and ilks:
            pairs = await PairBook.load(chain, [self.config.flip_exit_pair], at)
        self.cat, self.ilks, self.pairs = cat, ilks, pairs

    def apply(self, events: Sequence[Event], block: BlockRef) -> None:
        """One block's logs (the vault book's are MakerStrategy's)."""
        if self.cat is None:
            return
        for event in events:
            self.cat.apply(event)
            self.held.apply(event)
        for ilk in self.ilks.values():
            ilk.book.apply(events, block)
        if self.pairs is not None:
            self.pairs.apply(events)

    def candidates(self, block: BlockRef, book: VaultBook) -> Iterable[Candidate]:
        if self.cat is None or not self.ilks:
            return []
        if self.pairs is None:
            log.warning("maker: flip_exit_pair is not set; Flipper ilks are not liquidated")
            return []
        self._spent = 0
        out = self._bites(block, book)
        for ilk in self.ilks.values():
            for auction_id, auction in sorted(ilk.book.auctions.items()):
                candidate = self._bid(ilk, auction_id, auction, block)
                if candidate is not None:
                    out.append(candidate)
        # Refunds go back to the account once no bid of this block would spend them (a bid
        # takes them before pulling more: paying out first would only cost a transaction).
        if self.held.dai >= PAY_OUT_FROM and self._spent == 0:
            out.append(self._pay_out())
        out += [self._exit(self.ilks[n], wad) for n, wad in self.held.gems.items() if wad > 0]
        return out

    def locked(self) -> int:
        """DAI [rad] held in the Flippers for the keeper's open bids (those it leads)."""
        return sum(a.bid for i in self.ilks.values() for a in i.book.auctions.values()
                   if a.guy == self.keeper)

    # ------------------------------------------------------------------ the model's inputs

    def _value(self, ilk: _Ilk, lot: int) -> int:
        """What `lot` gems sell for on the exit pair, in DAI wad (0 without a quote)."""
        assert self.pairs is not None
        if lot <= 0:
            return 0
        leg = self.pairs.quote(ilk.gem, self.dai, lot)
        return 0 if leg is None else leg.amount_out

    def _terms(self, ilk: _Ilk, block: BlockRef) -> BidTerms:
        """Costs in DAI at the block's gas price (the pair's price of the gem, which is
        Maker's WETH: one ether), and the capital the cap leaves free."""
        gas_price = max(block.base_fee * 2, FLOOR_GAS_PRICE)
        per_ether = self._value(ilk, WAD)

        def dai(gas: int) -> int:
            return gas * gas_price * per_ether // WAD

        cap = int(self.config.max_vat_dai * WAD) * RAY
        free = cap - self.locked() - self.taken - self._spent
        return BidTerms(
            keeper=self.keeper,
            costs=dai(GAS["tend"] + GAS["deal"] + 2 * KEEPER_GAS),
            tick_cost=dai(GAS["tick"]), free_dai=max(free, 0),
            min_profit=int(self.config.flip_min_profit * WAD),
            open_share=self.config.flip_open_share)

    # ------------------------------------------------------------------ bites

    def _bites(self, block: BlockRef, book: VaultBook) -> list[Candidate]:
        assert self.cat is not None
        cat = self.cat.state
        out = []
        for name, ilk in self.ilks.items():
            state = book.ilks.get(name)
            if state is None:
                continue
            flip, chop, dunk = self.cat.ilks[name]
            cat_ilk = CatIlk(flip, chop, dunk, state.rate, state.spot, state.dust)
            for urn, vault in book.unsafe(name):
                plan = cat_bite.bite_plan(vault.ink, vault.art, cat_ilk, cat)
                if plan.refusal is not None:
                    if self.forbidden.get((name, urn)) != plan.refusal:
                        log.info("maker: bite forbidden", ilk=name, urn=urn,
                                 reason=plan.refusal, block=block.number)
                    self.forbidden[(name, urn)] = plan.refusal
                    continue
                self.forbidden.pop((name, urn), None)
                kicked = rules.kicked(plan.tab, plan.dink, 0, usr=urn, gal=ZERO_GAL,
                                      kicker=flip, now=block.timestamp, params=ilk.book.params)
                first = decide(AuctionAt(ilk.book.flipper, 0, kicked, ilk.book.params,
                                         block.timestamp),
                               partial(self._value, ilk), self._terms(ilk, block))
                if not isinstance(first, FlipAction):
                    log.info("maker: bite not worth it", ilk=name, urn=urn, reason=first.reason)
                    continue
                # The next bite of this block sees this one's tab in litter.
                cat = replace(cat, litter=cat.litter + plan.tab)
                self._spent += first.vat_dai
                intent = FlipIntent("bite", name, ilk.book.flipper, urn=urn, lot=plan.dink,
                                    bid=first.bid, tab=plan.tab)
                out.append(self._candidate(
                    ilk, intent, urn, cat_bite.BITE_GAS + GAS["tend"] + KEEPER_GAS,
                    key=f"flip:bite:{name}:{urn}:{vault.ink}:{vault.art}"))
        return out

    # ------------------------------------------------------------------ bids

    def _bid(self, ilk: _Ilk, auction_id: int, auction: Bid,
             block: BlockRef) -> Candidate | None:
        params, now = ilk.book.params, block.timestamp
        at = AuctionAt(ilk.book.flipper, auction_id, auction, params, now)
        terms = self._terms(ilk, block)
        action = decide(at, partial(self._value, ilk), terms)
        if isinstance(action, FlipAction) and action.kind == "tick":
            # MakerKeeper.tend ticks first: bid on the restarted auction in the same call.
            restarted = rules.after_tick(auction, params, now)
            action = decide(replace(at, bid=restarted), partial(self._value, ilk), terms)
            if isinstance(action, FlipAction):
                action = replace(action, key=f"{action.key}:after-tick:{auction.end}")
        if isinstance(action, Pass):
            if self.passes.get((ilk.name, auction_id)) != action.reason:
                log.info("maker: flip pass", ilk=ilk.name, auction=auction_id,
                         reason=action.reason, block=block.number)
            self.passes[(ilk.name, auction_id)] = action.reason
            return None
        self.passes.pop((ilk.name, auction_id), None)
        self._spent += action.vat_dai
        intent = FlipIntent(action.kind, ilk.name, ilk.book.flipper, auction_id,
                            urn=auction.usr, lot=action.lot, bid=action.bid, tab=auction.tab)
        gas = action.gas_limit + KEEPER_GAS + (GAS["tick"] if "after-tick" in action.key else 0)
        return self._candidate(ilk, intent, auction.usr, gas, key=action.key)

    def _pay_out(self) -> Candidate:
        """Refunds back to the account: nothing paid, the whole DAI received."""
        wad = self.held.dai // RAY
        return Candidate(
            strategy="maker", account=self.keeper, collateral=self.dai, debt=self.dai,
            max_repay=1, health_factor=0,
            key=f"{self.context.chain_id}:maker:{self.keeper}:flip:payout:{self.held.credits}:"
                f"{self.held.dai}",
            seize=lambda _repay: wad, actual_repay=lambda _repay: 0, gas_limit=PAY_OUT_GAS,
            spender=self.keeper, collateral_symbol="MCD_DAI", debt_symbol="MCD_DAI",
            from_wallet=False, private=FlipIntent("payout", "", ""))

    def _exit(self, ilk: _Ilk, wad: int) -> Candidate:
        """Gems someone else dealt to MakerKeeper (a lot it won) back to the account."""
        intent = FlipIntent("exit", ilk.name, ilk.book.flipper, lot=wad)
        return self._candidate(ilk, intent, self.keeper, PAY_OUT_GAS,
                               key=f"flip:exit:{ilk.name}:{self.held.credits}:{wad}")

    def _candidate(self, ilk: _Ilk, intent: FlipIntent, account: str, gas: int, *,
                   key: str) -> Candidate:
        """Pay the bid (DAI wad, rounded up; nothing for a deal), receive the lot."""
        bid = 0 if intent.kind == "deal" else -(-intent.bid // RAY)
        lot = intent.lot
        return Candidate(
            strategy="maker", account=account, collateral=ilk.gem, debt=self.dai,
            max_repay=max(bid, 1), health_factor=0,
            key=f"{self.context.chain_id}:maker:{account}:{key}",
            seize=lambda _repay: lot, actual_repay=lambda _repay: bid, gas_limit=gas,
            spender=self.keeper, collateral_symbol=f"MCD_{ilk.name}", debt_symbol="MCD_DAI",
            repay_ranges=((max(bid, 1), max(bid, 1)),), private=intent,
            from_wallet=bid > 0)  # a deal or an exit pays nothing

    def build(self, candidate: Candidate, repay: int) -> Call:
        """The MakerKeeper call of one of this side's candidates."""
        del repay  # a bid's size is the model's, not ranking's: repay_ranges pins it
        intent = candidate.private
        if not isinstance(intent, FlipIntent) or self.config.cat is None:
            raise KeeperError(f"maker: not a Flipper candidate: {candidate.key}")
        max_dai = -(-intent.bid // RAY)
        if intent.kind == "payout":
            return Call(to=self.keeper, data=_PAY_OUT)
        if intent.kind == "exit":
            return Call(to=self.keeper, data=_EXIT_GEM + encode(
                ["address", "uint256"], [self.ilks[intent.ilk].join, intent.lot]).hex())
        if intent.kind == "bite":
            data = _BITE + encode(
                ["address", "bytes32", "address", "address", "uint256", "uint256"],
                [self.config.cat, cat_bite.ilk_bytes(intent.ilk), intent.urn, intent.flipper,
                 intent.bid, max_dai]).hex()
        elif intent.kind == "deal":
            data = _DEAL + encode(["address", "address", "uint256"], [
                intent.flipper, self.ilks[intent.ilk].join, intent.auction_id]).hex()
        else:
            data = (_TEND if intent.kind == "tend" else _DENT) + encode(
                ["address", "uint256", "uint256", "uint256", "uint256"],
                [intent.flipper, intent.auction_id, intent.lot, intent.bid, max_dai]).hex()
        return Call(to=self.keeper, data=data)


# The Vow receives a tend's DAI; a bite's first bid is valued on a Kick the model never
# sends to, so any `gal` will do.
ZERO_GAL = cat_bite.ZERO


def make_flip_side(config: MakerConfig, context: StrategyContext) -> FlipSide:
    """The Flipper side MakerStrategy drives."""
    return FlipSide(config, context)

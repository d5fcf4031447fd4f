"""The Maker strategy: vaults from the Vat's notes; bark, take and redo on Dog + Clipper.

`sync` replays the Vat's notes since `start_block` into the vault book (book.py) and reads
the Dog's and Clippers' state (clip.py); `apply` mirrors each block's Vat, Dog and Clipper
logs (pure). `candidates(block)` offers, per Dog-liquidated ilk:

- **bark** of each unsafe vault (`ink * spot < art * rate`) the Dog would accept, its limits
  (Hole/hole room, dust) simulated across the block's barks and the keeper's barks in
  flight (math.bark_plan, inflight.py; once the room binds the rest wait a block: their
  sizes would depend on the order they land in); one the protocol forbids is logged once
  with Dog's revert reason (`forbidden`). Paid: Clipper.kick's `tip + chip * tab`, exited
  as Maker DAI by MakerKeeper (collateral = debt = DAI, `seize` = the incentive).
- **take** of each running auction whose price at the block (Clipper.status, mirrored from
  the ilk's calculator) will not need a reset within `TAKE_MARGIN_SECONDS`: pay `repay` DAI,
  receive the collateral Clipper.take gives for it (math.take_amounts); ranking takes it
  only when the exit pool pays more than that DAI, gas and slippage included.
- **redo** of each auction that needs a reset (pays tip + chip when Clipper.redo would).

The engine knows nothing of auctions: each is a candidate while it runs, its key (the
journal's exactly-once key) changes with the state it acts on (the urn's ink/art, the
sale's tab/lot/tic).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import structlog
from eth_abi.abi import encode
from eth_utils.crypto import keccak

from keeper.dex.uniswap_v2 import PairBook
from keeper.errors import KeeperError
from keeper.liquidation_curve import CurvePoint
from keeper.strategy import ChainReader, StrategyContext
from keeper.types import BlockRef, Call, Candidate, Event, LogFilter, PositionRow
from strategies.maker import math, risk, sizing
from strategies.maker.book import VAT_TOPICS, VaultBook, ilk_word
from strategies.maker.clip import CLIP_TOPICS, DOG_TOPICS, ClipBook, Sale, read_clip_state
from strategies.maker.config import MakerConfig
from strategies.maker.inflight import InFlight
from strategies.maker.sides import FlipSide, flip_side

log = structlog.get_logger(__name__)

# Gas limits, from the devnet (dog.bark 451k, clip.take 177k) plus MakerKeeper's joins/exits.
BARK_GAS = 650_000
TAKE_GAS = 450_000
SELL_GAS = 650_000  # a take whose clipperCall exits, swaps on a V2 pair and joins DAI
REDO_GAS = 300_000
# A take is offered only if the auction will not need a reset this many seconds on.
TAKE_MARGIN_SECONDS = 30
# Dog.bark's refusals that depend on the room (Hole/hole) earlier barks leave.
ROOM_REASONS = ("Dog/liquidation-limit-hit", "Dog/dusty-auction-from-partial-liquidation")


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


_BARK = _selector("bark(address,bytes32,address)")
_TAKE = _selector("take(address,address,uint256,uint256,uint256,uint256)")
_REDO = _selector("redo(address,uint256)")
_SELL = _selector("takeAndSell(address,address,address,uint256,uint256,uint256,uint256)")


@dataclass(frozen=True)
class MakerAction:
    """`Candidate.private` of this strategy: what to call and on what."""

    kind: str  # "bark", "take" or "redo"
    ilk: str
    urn: str = ""
    sale: int = 0
    price: int = 0  # take: the price [ray] it was valued at (the call's `max`)
    size: int = 0  # sell: the DAI [wad] the take is sized at (sizing.best_size)
    tab: int = 0  # take, sell: the sale's tab [rad] it was valued at; bark: the tab it adds
    art: int = 0  # bark: the vault's art [wad] it was planned on


class MakerStrategy:
    """Dog + Clipper liquidations of one Vat."""

    def __init__(self, config: MakerConfig, context: StrategyContext) -> None:
        self.name = "maker"
        self.config = config
        self.context = context
        self.vat = config.vat.lower()
        self.dai = config.dai.lower()
        self.keeper_contract = config.keeper_contract.lower()
        self.book = VaultBook()
        self.clips: ClipBook | None = None
        self.forbidden: dict[tuple[str, str], str] = {}  # (ilk, urn) -> Dog's revert reason
        self._synced: BlockRef | None = None
        self._gems: dict[str, str] = {}  # ilk -> its GemJoin's ERC-20 (lower-case)
        self._mats: dict[str, int] = {}  # ilk -> Spotter's liquidation ratio [ray]
        self.flip: FlipSide | None = flip_side(config, context)
        self.pairs: PairBook | None = None  # the clip_exit_pair, kept from its Sync logs
        self.inflight = InFlight()  # barks sent, not yet seen mined (their room is taken)

    @property
    def synced(self) -> BlockRef | None:
        return self._synced

    @property
    def accounts(self) -> list[str]:
        return sorted({u for (_i, u) in self.book.urns})

    @property
    def needs_resync(self) -> bool:
        return self.clips is not None and self.clips.stale

    def subscriptions(self) -> Sequence[LogFilter]:
        filters = [LogFilter((self.vat,), VAT_TOPICS)]
        if self.clips is not None:
            filters.append(LogFilter(self.clips.addresses(), (*DOG_TOPICS, *CLIP_TOPICS)))
        else:
            filters.append(LogFilter((self.config.dog.lower(),), DOG_TOPICS))
        if self.flip is not None:
            filters.extend(self.flip.subscriptions())
        if self.pairs is not None:
            filters.append(self.pairs.subscriptions())
        return filters

    async def sync(self, chain: ChainReader, at: BlockRef) -> None:
        """The vault book from the Vat's notes up to `at`; the Dog's and Clippers' state."""
        logs = await chain.get_logs(LogFilter((self.vat,), VAT_TOPICS),
                                    self.config.start_block, at.number)
        book = VaultBook()
        for event in logs:
            book.apply(event)
        clips = await read_clip_state(chain, self.config.dog, list(self.config.ilks), at.number)
        names = list(self.config.ilks)
        reads = await chain.batch(
            [("eth_call", [{"to": self.config.ilks[n].join, "data": "0x" + _selector(
                "gem()").hex()}, hex(at.number)]) for n in names]
            + [("eth_call", [{"to": self.config.spot, "data": "0x" + (_selector(
                "ilks(bytes32)") + bytes.fromhex(ilk_word(n)[2:])).hex()}, hex(at.number)])
               for n in names])
        self._gems = {n: "0x" + a[-40:].lower() for n, a in zip(names, reads, strict=False)}
        self._mats = {n: int(a[66:130], 16) for n, a in zip(names, reads[len(names):],
                                                             strict=True)}
        if self.config.clip_exit_pair is not None:
            self.pairs = await PairBook.load(chain, [self.config.clip_exit_pair], at)
        self.book, self.clips, self._synced = book, clips, at
        if self.flip is not None:
            await self.flip.sync(chain, at, book)

    def apply(self, events: Sequence[Event], block: BlockRef) -> None:
        """Apply one block's logs; logs at or below the synced block are in the book."""
        synced = self._synced.number if self._synced else -1
        fresh = [e for e in events if e.block_number > synced]
        for event in fresh:
            if event.address == self.vat:
                self.book.apply(event)
            elif self.clips is not None:
                self.clips.apply(event, block.timestamp)
        if self.flip is not None and fresh:
            self.flip.apply(fresh, block)
        if self.pairs is not None:
            self.pairs.apply(fresh)

    def candidates(self, block: BlockRef) -> Iterable[Candidate]:
        if self.clips is None:
            return []
        out: list[Candidate] = []
        # `max_vat_dai` is a running total of the DAI the keeper moves into the Vat: the
        # cap less its open Flipper bids, less each take offered before (at its largest
        # size, paid with the account's DAI; a clipperCall take pays from its own sale);
        # the bids of the block get what the takes leave.
        locked = 0 if self.flip is None else -(-self.flip.locked() // math.RAY)
        room = int(self.config.max_vat_dai * math.WAD) - locked
        taken = 0
        self.inflight.forget_landed(self.book, block.number)
        added = 0  # Dirt [rad] the barks offered so far in this block add, across ilks
        for name, ilk in self.clips.ilks.items():
            barks, tabs = self._barks(name, block, added)
            out.extend(barks)
            added += tabs
            for sale in list(ilk.sales.values()):
                for candidate in self._auction(name, sale.id, block, room=room - taken):
                    out.append(candidate)
                    action = candidate.private
                    if isinstance(action, MakerAction) and action.kind == "take":
                        taken += candidate.max_repay
        if self.flip is not None:
            self.flip.taken = taken * math.RAY
            out.extend(self.flip.candidates(block, self.book))
        return out

    def _barks(self, name: str, block: BlockRef, added: int) -> tuple[list[Candidate], int]:
        """The ilk's barks and the Dirt they add (`added`: of earlier ilks' barks) [rad]."""
        assert self.clips is not None
        state = self.book.ilks.get(name)
        if state is None:
            return [], 0
        # The keeper's barks in flight land first (lower nonces): their room is taken.
        dog = self.inflight.taken(self.clips.dog_ilk(name), name, added)
        params = self.clips.ilks[name].params
        out: list[Candidate] = []
        tabs = 0
        for urn, vault in self.book.unsafe(name):
            if (name, urn) in self.inflight:
                continue  # sent, not yet mined
            plan = math.bark_plan(vault.ink, vault.art, state.rate, state.spot, dust=state.dust,
                                  dog=dog)
            partial = not isinstance(plan, str) and plan.dart < vault.art
            if (out or added) and (partial or plan in ROOM_REASONS):
                # The Dog's room binds: the barks already offered fit whole in any order,
                # this one's size would depend on the order they land in. Next block.
                break
            if isinstance(plan, str):
                if self.forbidden.get((name, urn)) != plan:
                    log.info("maker: bark forbidden", ilk=name, urn=urn, reason=plan,
                             block=block.number)
                self.forbidden[(name, urn)] = plan
                continue
            self.forbidden.pop((name, urn), None)
            # The next bark of this block sees this one's tab in Dirt and dirt.
            dog = replace(dog, dirt=dog.dirt + plan.tab, Dirt=dog.Dirt + plan.tab)
            tabs += plan.tab
            reward = math.kick_incentive(params, plan.tab) // math.RAY
            out.append(self._candidate(
                MakerAction("bark", name, urn=urn, tab=plan.tab, art=vault.art), urn, reward,
                BARK_GAS, key=f"bark:{name}:{urn}:{vault.ink}:{vault.art}",
                health=self.book.ratio(name, urn)))
        return out, tabs

    def _auction(self, name: str, sale_id: int, block: BlockRef, *,
                 room: int) -> list[Candidate]:
        """A redo, or the takes of the sale: with DAI the account holds, of at most `room`
        DAI [wad], and with `clip_exit_pair` also one selling the collateral inside the take
        (clipperCall: of at most `max_vat_dai`, paid from its own sale). Both name the
        sale's owner as the account, so ranking sends the one with the larger net profit:
        the sale inside the take where that beats taking with DAI and holding the
        collateral (it costs more gas; it is the only one when DAI or room is short)."""
        assert self.clips is not None
        ilk = self.clips.ilks[name]
        sale = ilk.sales[sale_id]
        done, price = math.status(ilk.params, sale.tic, sale.top, block.timestamp)
        if done:
            feed = self._feed_price(name)
            reward = math.redo_incentive(ilk.params, sale.tab, sale.lot, feed) // math.RAY
            return [self._candidate(MakerAction("redo", name, urn=sale.usr, sale=sale_id),
                                    sale.usr, reward, REDO_GAS,
                                    key=f"redo:{name}:{sale_id}:{sale.tic}", health=0)]
        later, _ = math.status(ilk.params, sale.tic, sale.top,
                               block.timestamp + TAKE_MARGIN_SECONDS)
        if later or price == 0:
            return []
        chost, tab, lot = ilk.params.chost, sale.tab, sale.lot

        def seize(repay: int) -> int:
            amounts = math.take_amounts(tab, lot, sizing.take_amt(repay, tab, price), price, chost)
            return 0 if amounts is None else amounts[0]

        def paid(repay: int) -> int:
            amounts = math.take_amounts(tab, lot, sizing.take_amt(repay, tab, price), price, chost)
            return 0 if amounts is None else -(-amounts[1] // math.RAY)

        def ranges(cap: int) -> tuple[tuple[int, int], ...]:
            # The sizes worth proposing: a partial take leaving at least chost (Clipper.take
            # turns any larger partial into exactly that one), or the whole tab. Ranking's
            # search would miss the whole when tab is just above chost (a dusty remainder).
            partial = min((tab - chost) // math.RAY, cap) if tab > chost else 0
            return tuple(r for r in ((1, partial), (whole, whole)) if 1 <= r[0] <= r[1] <= cap)

        whole = -(-tab // math.RAY)
        out: list[Candidate] = []
        sells = ranges(int(self.config.max_vat_dai * math.WAD)) if self.pairs else ()
        if sells:
            sell = self._sale(name, sale, price, ranges=sells, seize=seize, paid=paid)
            out += [sell] if sell is not None else []
        takes = ranges(room)
        if not takes:
            return out
        return [*out, Candidate(
            strategy=self.name, account=sale.usr, collateral=self._gem(name), debt=self.dai,
            max_repay=min(whole, room), health_factor=0,
            key=f"{self.context.chain_id}:{self.name}:{sale.usr}:take:{name}:{sale_id}:"
                f"{tab}:{lot}:{sale.tic}",
            seize=seize, actual_repay=paid, gas_limit=TAKE_GAS, spender=self.keeper_contract,
            collateral_symbol=f"MCD_{name}", debt_symbol="MCD_DAI", repay_ranges=takes,
            private=MakerAction("take", name, urn=sale.usr, sale=sale_id, price=price,
                                tab=tab))]

    def _sale(self, name: str, sale: Sale, price: int, *,
              ranges: tuple[tuple[int, int], ...], seize: Callable[[int], int],
              paid: Callable[[int], int]) -> Candidate | None:
        """A take whose collateral is sold inside it (clipperCall): nothing paid, the Maker
        DAI the sale leaves over what the take owes received (the exit pair's exact quote).
        It needs none of the account's DAI, so it is sized here (the largest surplus within
        `ranges`: sizing.best_size over the partial sizes, or the whole) and offered at a
        nominal repay of 1, which the engine's sizing by the account's DAI balance leaves
        alone; None when no size leaves a surplus."""
        pairs, gem, dai = self.pairs, self._gem(name), self.dai
        assert pairs is not None

        def surplus(repay: int) -> int:
            slice_ = seize(repay)
            leg = pairs.quote(gem, dai, slice_) if slice_ else None
            return max(0, (leg.amount_out if leg is not None else 0) - paid(repay))

        # The best partial (a concave surplus up to what leaves chost), or the whole.
        size, best = max((sizing.best_size(surplus, hi) if lo == 1 else (hi, surplus(hi))
                          for lo, hi in ranges), key=lambda option: option[1])
        if best <= 0:
            return None
        return Candidate(
            strategy=self.name, account=sale.usr, collateral=dai, debt=dai,
            max_repay=1, health_factor=0,
            key=f"{self.context.chain_id}:{self.name}:{sale.usr}:sell:{name}:{sale.id}:"
                f"{sale.tab}:{sale.lot}:{sale.tic}",
            seize=lambda _repay: best, actual_repay=lambda _repay: 0, gas_limit=SELL_GAS,
            spender=self.keeper_contract, collateral_symbol="MCD_DAI", debt_symbol="MCD_DAI",
            from_wallet=False,
            private=MakerAction("sell", name, urn=sale.usr, sale=sale.id, price=price,
                                size=size, tab=sale.tab))

    def _candidate(self, action: MakerAction, account: str, reward: int, gas: int, *,
                   key: str, health: int) -> Candidate:
        """A kick or reset: nothing repaid, `reward` Maker DAI received."""
        return Candidate(
            strategy=self.name, account=account, collateral=self.dai, debt=self.dai,
            max_repay=1, health_factor=health,
            key=f"{self.context.chain_id}:{self.name}:{account}:{key}",
            seize=lambda _repay: reward, actual_repay=lambda _repay: 0, gas_limit=gas,
            spender=self.keeper_contract, collateral_symbol="MCD_DAI", debt_symbol="MCD_DAI",
            from_wallet=False, private=action)

    def _gem(self, name: str) -> str:
        return self._gems[name]

    def _feed_price(self, name: str) -> int:
        """An estimate of Clipper.getFeedPrice (pip value / par, ray): the Vat's spot times
        Spotter's mat, which is what Spotter.poke divided it by (equal up to rounding while
        the pip has not moved since the last poke). Only decides whether redo pays."""
        state = self.book.ilks.get(name)
        return 0 if state is None else state.spot * self._mats.get(name, 0) // math.RAY

    def build(self, candidate: Candidate, repay: int) -> Call:
        action = candidate.private
        if not isinstance(action, MakerAction) and self.flip is not None:
            return self.flip.build(candidate, repay)
        if not isinstance(action, MakerAction) or self.clips is None:
            raise KeeperError(f"maker: not a candidate of this strategy: {candidate.key}")
        ilk = self.clips.ilks[action.ilk]
        if action.kind == "bark":
            # Sent now: its room counts as taken until it is seen mined (InFlight).
            self.inflight.sent(action.ilk, action.urn, art=action.art, tab=action.tab)
            data = _BARK + encode(["address", "bytes32", "address"], [
                self.clips.dog, bytes.fromhex(ilk_word(action.ilk)[2:]), action.urn])
        elif action.kind == "redo":
            data = _REDO + encode(["address", "uint256"], [ilk.clip, action.sale])
        elif action.kind == "sell" and self.config.clip_exit_pair is not None:
            # Sized by the strategy (`repay` is nominal); at least half the surplus it was
            # ranked at, or nothing is sent for it.
            data = _SELL + encode(
                ["address", "address", "address", "uint256", "uint256", "uint256", "uint256"],
                [ilk.clip, self.config.ilks[action.ilk].join, self.config.clip_exit_pair,
                 action.sale, sizing.take_amt(action.size, action.tab, action.price), action.price,
                 candidate.seize(repay) // 2])
        else:
            join = self.config.ilks[action.ilk].join
            amt = sizing.take_amt(repay, action.tab, action.price)
            data = _TAKE + encode(
                ["address", "address", "uint256", "uint256", "uint256", "uint256"],
                [ilk.clip, join, action.sale, amt, action.price, repay])
        return Call(to=self.keeper_contract, data="0x" + data.hex())

    def liquidation_curve(self, block: BlockRef, drops: Sequence[int]) -> list[CurvePoint]:
        """`keeper risk`: the watched ilks' vaults under drops of their gem's price."""
        return risk.liquidation_curve(self.book, self._gems, self._mats, self.dai, drops)

    def positions(self, block: BlockRef) -> list[PositionRow]:
        """Every vault: collateral ink * spot and debt art * rate, both in rad."""
        return [PositionRow(self.name, urn, v.ink * self.book.ilks[i].spot,
                            v.art * self.book.ilks[i].rate, self.book.ratio(i, urn), market=i)
                for (i, urn), v in sorted(self.book.urns.items()) if i in self.book.ilks]

"""Liquidations 2.0 state: the Dog's limits and each Clipper's running auctions.

`read_clip_state` reads, at sync, Dog.Hole/Dirt and Dog.ilks(ilk) for each ilk, each
Clipper's parameters (tail, cusp, chip, tip, chost, calc and its tau or step/cut) and its
running sales (`list()`, `sales(id)`). Afterwards `ClipBook.apply` mirrors the logs:

    Dog.Bark(ilk, urn, ink, art, due, clip, id)   Dirt and ilk dirt += due * chop / WAD
    Dog.Digs(ilk, rad)                            Dirt and ilk dirt -= rad
    Clipper.Kick(id, top, tab, lot, usr, kpr, coin)  a new sale, tic = the block's time
    Clipper.Take(id, max, price, owe, tab, lot, usr) tab, lot left (removed when done)
    Clipper.Redo(id, top, tab, lot, usr, kpr, coin)  a new top and tic
    Clipper.Yank(id)                              removed

A `File` of the Dog, a Clipper or a calculator (governance) cannot be mirrored from its
log alone for every key, so it sets `stale`: the strategy then asks to be re-synced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak

from keeper.errors import KeeperError
from keeper.strategy import ChainReader
from keeper.types import Event
from strategies.maker.book import ilk_name, ilk_word
from strategies.maker.math import WAD, Calc, ClipParams, DogIlk


def _topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


BARK = _topic("Bark(bytes32,address,uint256,uint256,uint256,address,uint256)")
DIGS = _topic("Digs(bytes32,uint256)")
KICK = _topic("Kick(uint256,uint256,uint256,uint256,address,address,uint256)")
TAKE = _topic("Take(uint256,uint256,uint256,uint256,uint256,uint256,address)")
REDO = _topic("Redo(uint256,uint256,uint256,uint256,address,address,uint256)")
YANK = _topic("Yank(uint256)")
FILES = tuple(_topic(s) for s in (
    "File(bytes32,uint256)", "File(bytes32,address)", "File(bytes32,bytes32,uint256)",
    "File(bytes32,bytes32,address)"))
DOG_TOPICS = (BARK, DIGS, *FILES)
CLIP_TOPICS = (KICK, TAKE, REDO, YANK, *FILES)


@dataclass(frozen=True, slots=True)
class Sale:
    """One running auction: tab [rad], lot [wad], usr, tic [s], top [ray]."""

    id: int
    tab: int
    lot: int
    usr: str
    tic: int
    top: int


@dataclass
class ClipIlk:
    """One Dog/Clipper ilk: its Clipper, calculator, parameters and sales."""

    name: str
    clip: str
    calc: str
    params: ClipParams
    chop: int
    hole: int
    dirt: int
    sales: dict[int, Sale] = field(default_factory=dict)


@dataclass
class ClipBook:
    """The Dog's totals and every Dog/Clipper ilk; `stale` after a governance File."""

    dog: str
    Hole: int
    Dirt: int
    ilks: dict[str, ClipIlk]
    stale: bool = False

    def dog_ilk(self, name: str) -> DogIlk:
        ilk = self.ilks[name]
        return DogIlk(chop=ilk.chop, hole=ilk.hole, dirt=ilk.dirt, Hole=self.Hole, Dirt=self.Dirt)

    def addresses(self) -> tuple[str, ...]:
        return (self.dog, *(i.clip for i in self.ilks.values()),
                *(i.calc for i in self.ilks.values()))

    def apply(self, event: Event, timestamp: int) -> None:
        """Mirror one Dog, Clipper or calculator log (at block time `timestamp`)."""
        topic = event.topic0
        if topic in FILES:
            self.stale = True
            return
        if event.address == self.dog:
            self._dog(event, topic)
            return
        ilk = next((i for i in self.ilks.values() if i.clip == event.address), None)
        if ilk is None or (len(event.topics) < 2 and topic != YANK):
            return
        words = decode(["uint256"] * 6, bytes.fromhex(event.data[2:]).ljust(192, b"\0"))
        if topic == YANK:
            ilk.sales.pop(int(words[0]), None)
            return
        sale_id = int(event.topics[1], 16)
        if topic in (KICK, REDO):
            top, tab, lot = words[0], words[1], words[2]
            usr = "0x" + event.topics[2][-40:]
            ilk.sales[sale_id] = Sale(sale_id, tab, lot, usr, timestamp, top)
        elif topic == TAKE and sale_id in ilk.sales:
            tab, lot = words[3], words[4]
            if lot == 0 or tab == 0:
                ilk.sales.pop(sale_id)
            else:
                ilk.sales[sale_id] = replace(ilk.sales[sale_id], tab=tab, lot=lot)

    def _dog(self, event: Event, topic: str) -> None:
        name = ilk_name(event.topics[1])
        ilk = self.ilks.get(name)
        if topic == BARK:
            _ink, _art, due, _clip = decode(["uint256", "uint256", "uint256", "address"],
                                            bytes.fromhex(event.data[2:]))
            tab = due * (ilk.chop if ilk else 0) // WAD
            self.Dirt += tab
            if ilk is not None:
                ilk.dirt += tab
        elif topic == DIGS:
            (rad,) = decode(["uint256"], bytes.fromhex(event.data[2:]))
            self.Dirt -= rad
            if ilk is not None:
                ilk.dirt -= rad


def _sel(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex()


def _call(to: str, data: str, block: int) -> tuple[str, list[object]]:
    return ("eth_call", [{"to": to, "data": data}, hex(block)])


def _uints(answer: str, count: int) -> list[int]:
    return [int(w) for w in decode(["uint256"] * count, bytes.fromhex(answer[2:]))]


def _addr(answer: str) -> str:
    return "0x" + answer[-40:].lower()


async def read_clip_state(
    chain: ChainReader, dog: str, names: Sequence[str], block: int
) -> ClipBook:
    """The Dog's and its Clippers' state at `block` for the ilks `names` (Dog-liquidated)."""
    dog = dog.lower()
    head = await chain.batch([_call(dog, _sel("Hole()"), block), _call(dog, _sel("Dirt()"), block),
                              *(_call(dog, _sel("ilks(bytes32)") + ilk_word(n)[2:], block)
                                for n in names)])
    hole_total, dirt_total = _uints(head[0], 1)[0], _uints(head[1], 1)[0]
    ilks: dict[str, ClipIlk] = {}
    for name, answer in zip(names, head[2:], strict=True):
        clip_word, chop, hole, dirt = decode(["address", "uint256", "uint256", "uint256"],
                                             bytes.fromhex(answer[2:]))
        clip = str(clip_word).lower()
        if int(clip, 16) == 0:
            continue  # not liquidated by the Dog (Cat + Flipper)
        reads = await chain.batch([_call(clip, _sel(f"{f}()"), block) for f in
                                   ("tail", "cusp", "chip", "tip", "chost", "calc", "list")])
        tail, cusp, chip, tip, chost = (_uints(a, 1)[0] for a in reads[:5])
        calc_address = _addr(reads[5])
        calc = await _read_calc(chain, calc_address, block)
        (ids,) = decode(["uint256[]"], bytes.fromhex(reads[6][2:]))
        answers = await chain.batch([_call(clip, _sel("sales(uint256)") + encode(
            ["uint256"], [i]).hex(), block) for i in ids])
        sales = {}
        for sale_id, answer_ in zip(ids, answers, strict=True):
            _pos, tab, lot, usr, tic, top = decode(
                ["uint256", "uint256", "uint256", "address", "uint96", "uint256"],
                bytes.fromhex(answer_[2:]))
            sales[int(sale_id)] = Sale(int(sale_id), tab, lot, str(usr).lower(), tic, top)
        ilks[name] = ClipIlk(name, clip, calc_address,
                             ClipParams(tail, cusp, chip, tip, chost, calc), chop, hole, dirt,
                             sales)
    return ClipBook(dog, hole_total, dirt_total, ilks)


async def _read_calc(chain: ChainReader, calc: str, block: int) -> Calc:
    """LinearDecrease answers `tau()`; StairstepExponentialDecrease reverts on it."""
    try:
        tau = await chain.eth_call(calc, _sel("tau()"), block)
    except KeeperError:
        tau = "0x"
    if len(tau) >= 66:
        return Calc("linear", tau=_uints(tau, 1)[0])
    step, cut = await chain.batch([_call(calc, _sel("step()"), block),
                                   _call(calc, _sel("cut()"), block)])
    return Calc("stairstep", step=_uints(step, 1)[0], cut=_uints(cut, 1)[0])

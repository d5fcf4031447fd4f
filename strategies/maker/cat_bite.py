"""Exact mirror of Maker's Cat.bite (dss cat.sol of liquidations 1.2, commit ee01dab: the
Cat with `box`/`litter`/`dunk` that @makerdao/testchain 1.1.33-beta5 deploys for ETH-A).

`bite(ilk, urn)` takes part of an unsafe vault (`ink * spot < art * rate`) to a Flipper
auction: at most `dunk` of DAI (with the penalty `chop`) per bite, and only while the
DAI out for auctions (`litter`) leaves room under the ceiling `box`. `bite_plan` returns
what the call would do, or the revert string of the first `require` that fails, so the
keeper reports why a vault is not bitten instead of sending a transaction that reverts.
Units: ink, art, dart, dink in wad; rate and spot in ray; dust, dunk, box, litter, tab in
rad; chop in wad.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak

from keeper.strategy import ChainReader
from keeper.types import Call, Event

WAD = 10**18
INT256_MAX = 2**255
BITE = "0x" + keccak(text="bite(bytes32,address)")[:4].hex()
BITE_EVENT = "0x" + keccak(
    text="Bite(bytes32,address,uint256,uint256,uint256,address,uint256)").hex()
# Cat.bite on the devnet: 385k gas with a Flipper kick (recipes/maker_flip_cycle.py); +30 %.
BITE_GAS = 500_000


@dataclass(frozen=True, slots=True)
class CatIlk:
    """Cat.ilks(ilk) (flip, chop, dunk) with the Vat ilk's rate, spot and dust."""

    flip: str
    chop: int  # liquidation penalty [wad]
    dunk: int  # liquidation quantity [rad]
    rate: int  # Vat.ilks(ilk).rate [ray]
    spot: int  # Vat.ilks(ilk).spot [ray]
    dust: int  # Vat.ilks(ilk).dust [rad]


@dataclass(frozen=True, slots=True)
class CatState:
    """Cat's global state: live, box (the ceiling of DAI out for auctions) and litter."""

    live: int
    box: int  # [rad]
    litter: int  # [rad]


@dataclass(frozen=True, slots=True)
class BitePlan:
    """What Cat.bite(ilk, urn) would do: grab `dink` gems and `dart` debt, kick an auction
    for `tab` (rad) and add `tab` to `litter`; or `refusal`, the revert string."""

    dart: int = 0
    dink: int = 0
    tab: int = 0
    refusal: str | None = None


def unsafe(ink: int, art: int, ilk: CatIlk) -> bool:
    """Cat.bite's safety test: `spot > 0 && ink * spot < art * rate`."""
    return ilk.spot > 0 and ink * ilk.spot < art * ilk.rate


def bite_plan(ink: int, art: int, ilk: CatIlk, cat: CatState) -> BitePlan:
    """Mirrors Cat.bite (ee01dab): its `require`s in order, then dart, dink and tab."""
    if cat.live != 1:
        return BitePlan(refusal="Cat/not-live")
    if not unsafe(ink, art, ilk):
        return BitePlan(refusal="Cat/not-unsafe")
    if cat.litter > cat.box:  # sub(box, litter) reverts (no reason string)
        return BitePlan(refusal="Cat/liquidation-limit-hit (litter above box)")
    room = cat.box - cat.litter
    if not (cat.litter < cat.box and room >= ilk.dust):
        return BitePlan(refusal="Cat/liquidation-limit-hit")
    if ilk.rate == 0 or ilk.chop == 0:
        return BitePlan(refusal="Cat: division by zero (rate or chop is 0)")
    dart = min(art, min(ilk.dunk, room) * WAD // ilk.rate // ilk.chop)
    dink = min(ink, ink * dart // art) if art else 0
    if not (dart > 0 and dink > 0):
        return BitePlan(refusal="Cat/null-auction")
    if not (dart <= INT256_MAX and dink <= INT256_MAX):
        return BitePlan(refusal="Cat/overflow")
    tab = dart * ilk.rate * ilk.chop // WAD
    return BitePlan(dart=dart, dink=dink, tab=tab)


def ilk_bytes(ilk: str) -> bytes:
    """A collateral type's name as the bytes32 the contracts take ("ETH-A")."""
    return ilk.encode().ljust(32, b"\0")


def bite_call(cat: str, ilk: str, urn: str) -> Call:
    """Cat.bite(ilk, urn)."""
    return Call(to=cat, data=BITE + encode(["bytes32", "address"], [ilk_bytes(ilk), urn]).hex())


def _note(signature: str) -> str:
    """LibNote's topic 0: the selector left-aligned in 32 bytes."""
    return "0x" + keccak(text=signature)[:4].hex() + "00" * 28


CLAW = _note("claw(uint256)")
CAGE = _note("cage()")
FILE_UINT = _note("file(bytes32,uint256)")
FILE_ILK_UINT = _note("file(bytes32,bytes32,uint256)")
FILE_ILK_ADDRESS = _note("file(bytes32,bytes32,address)")
CAT_TOPICS = (BITE_EVENT, CLAW, CAGE, FILE_UINT, FILE_ILK_UINT, FILE_ILK_ADDRESS)
_VIEWS = {name: "0x" + keccak(text=sig)[:4].hex() for name, sig in {
    "live": "live()", "box": "box()", "litter": "litter()", "ilks": "ilks(bytes32)"}.items()}


def _text(topic: str) -> str:
    return bytes.fromhex(topic.removeprefix("0x")).rstrip(b"\0").decode("ascii", "replace")


class CatBook:
    """The Cat's state from its logs: `litter` grows by each Bite's tab with the penalty
    (`Bite.tab` is `dart * rate`; Cat adds `dart * rate * chop / WAD`) and shrinks by each
    Flipper's `claw` note; `file` notes change box, chop, dunk and flip; `cage` stops it."""

    def __init__(self, cat: str, state: CatState, ilks: dict[str, tuple[str, int, int]]) -> None:
        self.cat = cat.lower()
        self.state = state
        self.ilks = ilks  # name -> (flip lower-case, chop [wad], dunk [rad])

    def apply(self, event: Event) -> None:
        """One Cat log."""
        if event.address != self.cat or event.removed:
            return
        topic, state = event.topic0, self.state
        if topic == BITE_EVENT:
            name = _text(event.topics[1])
            tab = int(event.data[2 + 64 * 2: 2 + 64 * 3], 16)  # ink, art, tab, flip, id
            chop = self.ilks.get(name, ("", WAD, 0))[1]
            self.state = replace(state, litter=state.litter + tab * chop // WAD)
        elif topic == CLAW:
            self.state = replace(state, litter=state.litter - int(event.topics[2], 16))
        elif topic == CAGE:
            self.state = replace(state, live=0)
        elif topic == FILE_UINT and _text(event.topics[2]) == "box":
            self.state = replace(state, box=int(event.topics[3], 16))
        elif topic in (FILE_ILK_UINT, FILE_ILK_ADDRESS):
            self._file_ilk(_text(event.topics[2]), _text(event.topics[3]), event.data)

    def _file_ilk(self, name: str, what: str, data: str) -> None:
        """file(ilk, what, data): the third argument is in the note's calldata copy."""
        raw = bytes.fromhex(data.removeprefix("0x"))[64 + 4 + 64: 64 + 4 + 96]
        flip, chop, dunk = self.ilks.get(name, (ZERO, 0, 0))
        if what == "flip":
            flip = "0x" + raw[-20:].hex()
        elif what == "chop":
            chop = int.from_bytes(raw, "big")
        elif what == "dunk":
            dunk = int.from_bytes(raw, "big")
        self.ilks[name] = (flip, chop, dunk)


ZERO = "0x" + "00" * 20


async def read_cat(chain: ChainReader, cat: str, names: list[str], block: int) -> CatBook:
    """The Cat's live, box, litter and each ilk's (flip, chop, dunk) at `block`, one batch."""
    tag = hex(block)
    calls: list[tuple[str, Sequence[object]]] = [
        ("eth_call", [{"to": cat, "data": _VIEWS[v]}, tag]) for v in ("live", "box", "litter")]
    calls += [("eth_call", [{"to": cat, "data": _VIEWS["ilks"] + ilk_bytes(n).hex()}, tag])
              for n in names]
    answers = [str(a) for a in await chain.batch(calls)]
    live, box, litter = (int(a, 16) for a in answers[:3])
    ilks = {}
    for name, answer in zip(names, answers[3:], strict=True):
        flip, chop, dunk = decode(["address", "uint256", "uint256"],
                                  bytes.fromhex(answer.removeprefix("0x")))
        ilks[name] = (str(flip).lower(), int(chop), int(dunk))
    return CatBook(cat, CatState(live, box, litter), ilks)

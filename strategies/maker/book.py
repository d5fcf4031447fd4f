"""The vault book: every urn and ilk of the Vat, event-sourced from its anonymous notes.

The Vat logs each state-changing call with dss's `note` modifier: an anonymous log whose
topic 0 is the function selector (left-aligned), topics 1-3 the first three arguments, and
whose data is the ABI `bytes` of the first 224 bytes of calldata. The book mirrors:

    init(ilk)                          rate = RAY
    file(ilk, what, data)              "spot" (Spotter.poke), "line", "dust"
    frob(i, u, v, w, dink, dart)       urn u: ink += dink, art += dart; ilk Art += dart
    grab(i, u, v, w, dink, dart)       the same (Dog.bark, Cat.bite, End)
    fork(ilk, src, dst, dink, dart)    moves ink and art from src to dst
    fold(i, u, rate)                   ilk rate += rate (Jug.drip); rate is topic 3

Safety is exact: `ink * spot < art * rate` in the Vat's units (wad * ray vs wad * ray).
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils.crypto import keccak

from keeper.types import Event
from strategies.maker.math import RAY, is_unsafe


def _selector_topic(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex() + "00" * 28


INIT = _selector_topic("init(bytes32)")
FILE = _selector_topic("file(bytes32,bytes32,uint256)")
FROB = _selector_topic("frob(bytes32,address,address,address,int256,int256)")
GRAB = _selector_topic("grab(bytes32,address,address,address,int256,int256)")
FORK = _selector_topic("fork(bytes32,address,address,int256,int256)")
FOLD = _selector_topic("fold(bytes32,address,int256)")
VAT_TOPICS = (INIT, FILE, FROB, GRAB, FORK, FOLD)


def ilk_name(word: str) -> str:
    """A bytes32 topic ("0x4554482d42...") as the ilk's name ("ETH-B")."""
    return bytes.fromhex(word[2:]).rstrip(b"\0").decode(errors="replace")


def ilk_word(name: str) -> str:
    """An ilk's name as a bytes32 hex word (topic form)."""
    return "0x" + name.encode().ljust(32, b"\0").hex()


def _int256(word: bytes | str) -> int:
    raw = bytes.fromhex(word[2:]) if isinstance(word, str) else word
    value = int.from_bytes(raw, "big")
    return value - 2**256 if value >= 2**255 else value


def _address(topic: str) -> str:
    return "0x" + topic[-40:].lower()


def _arg(event: Event, index: int) -> bytes:
    """The calldata word `index` (0-based, after the selector) from a note's data."""
    payload = bytes.fromhex(event.data[2:])[64:]  # skip the bytes offset and length words
    start = 4 + 32 * index
    return payload[start : start + 32]


@dataclass
class IlkState:
    """One ilk as the Vat holds it: Art [wad], rate [ray], spot [ray], line and dust [rad]."""

    name: str
    Art: int = 0
    rate: int = 0
    spot: int = 0
    line: int = 0
    dust: int = 0


@dataclass(frozen=True, slots=True)
class Urn:
    """One vault: collateral ink and normalized debt art [wad]; debt is art * rate [rad]."""

    ink: int
    art: int


class VaultBook:
    """Every ilk and urn of one Vat, from its notes."""

    def __init__(self) -> None:
        self.ilks: dict[str, IlkState] = {}
        self.urns: dict[tuple[str, str], Urn] = {}

    def apply(self, event: Event) -> None:
        """Mirror one Vat note (others are ignored)."""
        topic = event.topic0
        if topic not in VAT_TOPICS or len(event.topics) < 2:
            return
        name = ilk_name(event.topics[1])
        ilk = self.ilks.setdefault(name, IlkState(name))
        if topic == INIT:
            ilk.rate = RAY
        elif topic == FILE:
            what = bytes.fromhex(event.topics[2][2:]).rstrip(b"\0").decode(errors="replace")
            if what in ("spot", "line", "dust"):
                setattr(ilk, what, int(event.topics[3], 16))
        elif topic == FOLD:
            ilk.rate += _int256(event.topics[3])
        elif topic in (FROB, GRAB):
            dink, dart = _int256(_arg(event, 4)), _int256(_arg(event, 5))
            self._move(name, _address(event.topics[2]), dink, dart)
            ilk.Art += dart
        elif topic == FORK:
            dink, dart = _int256(_arg(event, 3)), _int256(_arg(event, 4))
            self._move(name, _address(event.topics[2]), -dink, -dart)
            self._move(name, _address(event.topics[3]), dink, dart)

    def _move(self, ilk: str, urn: str, dink: int, dart: int) -> None:
        old = self.urns.get((ilk, urn), Urn(0, 0))
        new = Urn(old.ink + dink, old.art + dart)
        if new.ink == 0 and new.art == 0:
            self.urns.pop((ilk, urn), None)
        else:
            self.urns[(ilk, urn)] = new

    def urn(self, ilk: str, urn: str) -> Urn:
        return self.urns.get((ilk, urn.lower()), Urn(0, 0))

    def is_unsafe(self, ilk: str, urn: str) -> bool:
        """Dog.bark's test on the book: ink * spot < art * rate."""
        state = self.ilks.get(ilk)
        vault = self.urn(ilk, urn)
        return state is not None and is_unsafe(vault.ink, vault.art, state.spot, state.rate)

    def unsafe(self, ilk: str) -> list[tuple[str, Urn]]:
        """Every unsafe urn of `ilk`, by address."""
        state = self.ilks.get(ilk)
        if state is None:
            return []
        return sorted((u, v) for (i, u), v in self.urns.items()
                      if i == ilk and is_unsafe(v.ink, v.art, state.spot, state.rate))

    def debt(self, ilk: str, urn: str) -> int:
        """The vault's debt, art * rate [rad]."""
        return self.urn(ilk, urn).art * self.ilks[ilk].rate

    def ratio(self, ilk: str, urn: str) -> int:
        """ink * spot / (art * rate) as a wad (below 1e18: unsafe); max uint without debt."""
        state, vault = self.ilks[ilk], self.urn(ilk, urn)
        if vault.art == 0 or state.rate == 0:
            return 2**256 - 1
        return vault.ink * state.spot * 10**18 // (vault.art * state.rate)

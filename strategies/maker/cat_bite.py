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

from dataclasses import dataclass

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from keeper.types import Call

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

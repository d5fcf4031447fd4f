"""Maker's liquidation arithmetic, in the contracts' own units (wad 1e18, ray 1e27, rad 1e45).

Each function names the dss function it mirrors (makerdao/dss at fa4f663, the code of
`@makerdao/testchain` 1.1.33-beta5's Dog, Clipper and abaci); the parity tests check them
against the chain's views (`Vat.urns`/`ilks`, `Clipper.getStatus`, `eth_call` of `bark`).
"""

from __future__ import annotations

from dataclasses import dataclass

WAD = 10**18
RAY = 10**27
RAD = 10**45


def rmul(x: int, y: int) -> int:
    """abaci.sol / clip.sol `rmul`: x * y / RAY, rounded down."""
    return x * y // RAY


def wmul(x: int, y: int) -> int:
    """clip.sol `wmul`: x * y / WAD, rounded down."""
    return x * y // WAD


def rdiv(x: int, y: int) -> int:
    """clip.sol `rdiv`: x * RAY / y, rounded down."""
    return x * RAY // y


def rpow(x: int, n: int, b: int) -> int:
    """abaci.sol `rpow` (dss PR #78): x^n in base b, each product rounded half up."""
    if n == 0:
        return b
    if x == 0:
        return 0
    z = x if n % 2 else b
    half = b // 2
    n //= 2
    while n:
        x = (x * x + half) // b
        if n % 2:
            z = (z * x + half) // b
        n //= 2
    return z


def is_unsafe(ink: int, art: int, spot: int, rate: int) -> bool:
    """Dog.bark's (and Cat.bite's) test: `spot > 0 && ink * spot < art * rate`."""
    return spot > 0 and ink * spot < art * rate


def linear_price(top: int, dur: int, tau: int) -> int:
    """LinearDecrease.price(top, dur): 0 from tau on, else rmul(top, (tau - dur) * RAY / tau)."""
    if dur >= tau:
        return 0
    return rmul(top, (tau - dur) * RAY // tau)


def stairstep_price(top: int, dur: int, step: int, cut: int) -> int:
    """StairstepExponentialDecrease.price(top, dur): rmul(top, rpow(cut, dur / step, RAY))."""
    return rmul(top, rpow(cut, dur // step, RAY))


@dataclass(frozen=True, slots=True)
class Calc:
    """An ilk's Abacus: "linear" (tau) or "stairstep" (step, cut)."""

    kind: str
    tau: int = 0
    step: int = 0
    cut: int = 0

    def price(self, top: int, dur: int) -> int:
        if self.kind == "linear":
            return linear_price(top, dur, self.tau)
        return stairstep_price(top, dur, self.step, self.cut)


@dataclass(frozen=True, slots=True)
class ClipParams:
    """A Clipper's parameters: buf, tail, cusp (ray), chip (wad), tip (rad), chost (rad)."""

    tail: int
    cusp: int
    chip: int
    tip: int
    chost: int
    calc: Calc


def status(params: ClipParams, tic: int, top: int, now: int) -> tuple[bool, int]:
    """Clipper.status(tic, top) at block time `now`: (done, price [ray]); done means the
    auction needs `redo`: `now - tic > tail || rdiv(price, top) < cusp`."""
    price = params.calc.price(top, now - tic)
    done = now - tic > params.tail or rdiv(price, top) < params.cusp
    return done, price


def take_amounts(tab: int, lot: int, amt: int, price: int, chost: int) -> tuple[int, int] | None:
    """Clipper.take's (slice [wad], owe [rad]) buying up to `amt` at `price`; None where take
    reverts ("Clipper/no-partial-purchase")."""
    slice_ = min(lot, amt)
    owe = slice_ * price
    if owe > tab:
        owe = tab
        slice_ = owe // price
    elif owe < tab and slice_ < lot and tab - owe < chost:
        if tab <= chost:
            return None
        owe = tab - chost
        slice_ = owe // price
    return slice_, owe


def kick_incentive(params: ClipParams, tab: int) -> int:
    """Clipper.kick's `coin` [rad]: tip + wmul(tab, chip)."""
    return params.tip + wmul(tab, params.chip)


def redo_incentive(params: ClipParams, tab: int, lot: int, feed_price: int) -> int:
    """Clipper.redo's `coin` [rad]: paid only if tab >= chost and lot * feedPrice >= chost."""
    if tab >= params.chost and lot * feed_price >= params.chost:
        return kick_incentive(params, tab)
    return 0


@dataclass(frozen=True, slots=True)
class DogIlk:
    """Dog.ilks(ilk) plus the Dog's global Hole and Dirt [rad]; chop [wad]."""

    chop: int
    hole: int
    dirt: int
    Hole: int
    Dirt: int


@dataclass(frozen=True, slots=True)
class BarkPlan:
    """What Dog.bark would do: the debt and collateral it moves and the auction's tab."""

    dart: int
    dink: int
    tab: int


def bark_plan(
    ink: int, art: int, rate: int, spot: int, *, dust: int, dog: DogIlk
) -> BarkPlan | str:
    """Dog.bark(ilk, urn, kpr) (dss dog.sol): the plan, or the revert reason where the
    protocol forbids it."""
    if not is_unsafe(ink, art, spot, rate):
        return "Dog/not-unsafe"
    if not (dog.Hole > dog.Dirt and dog.hole > dog.dirt):
        return "Dog/liquidation-limit-hit"
    room = min(dog.Hole - dog.Dirt, dog.hole - dog.dirt)
    dart = min(art, room * WAD // rate // dog.chop)
    if art > dart:
        if (art - dart) * rate < dust:
            dart = art
        elif dart * rate < dust:
            return "Dog/dusty-auction-from-partial-liquidation"
    dink = ink * dart // art
    if dink == 0:
        return "Dog/null-auction"
    return BarkPlan(dart=dart, dink=dink, tab=dart * rate * dog.chop // WAD)

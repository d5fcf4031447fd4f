"""Venues: where seized collateral can be sold, behind one small interface.

A `Venue` quotes exactly (exact input and exact output), says which pools a swap between
two tokens may touch, moves its own state by a leg it quoted (so ranking can value a
crash's liquidations one after another), follows its pools' logs (`subscriptions` and
`apply`, at the one `eth_getLogs` per block the engine makes) and describes a leg as the
executor's swap step (`exit_hop`). `keeper.dex.uniswap_v2.PairBook` and
`keeper.dex.uniswap_v3.V3Book` implement it; a later venue (V4, Curve, an
aggregator's quote) is one more module that does.

`Venues` is itself a `Venue` over several: a quote is the best of every venue's best
single pool and of the two-hop paths through one `via` token (the quote token), each hop
on its best venue. A two-hop route is a `SwapLeg` whose `hops` are its two legs.

Each leg carries the gas the FlashLiquidator spends on it (`SwapLeg.gas`): a V2 pair is
one transfer and one `swap`; a V3 pool's `swap` costs more, and more for every step of
its loop and every initialized tick it crosses (the SwapResult says how many); a route is
its hops' sum. `Venues.quotes` offers each venue's best pool and the two-hop path as
alternatives, so ranking can take the exit with the best profit net of that gas
(a single V2 pair is the cheapest; a V3 path must return enough more to pay for itself).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol, Self, runtime_checkable

from keeper.strategy import ChainReader
from keeper.types import BlockRef, Event, LogFilter, SwapLeg

ROUTE = "route"  # the venue name of a multi-hop leg

# The executor's gas per swap (FlashLiquidator._hop / _hopV3 with the pool's own swap),
# estimates from devnet receipts: a V2 pair's transfer, getReserves and swap; a V3 pool's
# swap with its callback, plus each extra step of the swap loop (a bitmap word, ~cold
# slot reads) and each initialized tick crossed (Tick.cross writes its fee-growth slots).
V2_HOP_GAS = 80_000
V3_HOP_GAS = 110_000
V3_STEP_GAS = 5_000
V3_TICK_GAS = 25_000


@dataclass(frozen=True, slots=True)
class ExitHop:
    """One swap step as an executor performs it: the venue's kind (the FlashLiquidator's
    `Venue` enum: 0 Uniswap V2 pair, 1 Uniswap V3 pool), the pool, the direction."""

    kind: int
    pool: str
    zero_for_one: bool


@runtime_checkable
class Venue(Protocol):
    """What ranking, the engine and execution need of a place to swap."""

    venue: str

    def quote(self, token_in: str, token_out: str, amount_in: int) -> SwapLeg | None:
        """Selling exactly `amount_in` (None: no pool can take all of it)."""
        ...

    def quote_exact_out(self, token_in: str, token_out: str, amount_out: int) -> SwapLeg | None:
        """Buying exactly `amount_out` for the least input (None: cannot be filled)."""
        ...

    def mid_price(self, token_in: str, token_out: str) -> Fraction | None:
        """token_out per token_in before fees and impact (None: no price)."""
        ...

    def pools(self, token_a: str, token_b: str) -> tuple[str, ...]:
        """Every pool a swap between the two tokens may touch."""
        ...

    def swap(self, leg: SwapLeg) -> None:
        """Move the venue's state as `leg` (one it quoted) will when mined."""
        ...

    def copy(self) -> Self:
        """An independent copy, to try swaps on."""
        ...

    def subscriptions(self) -> LogFilter:
        """The logs that keep the venue current."""
        ...

    def apply(self, events: Iterable[Event]) -> int:
        """Apply those logs (others are ignored); returns how many were applied."""
        ...

    async def reload(self, chain: ChainReader, block: BlockRef | int) -> None:
        """Read the venue's state again as of `block`, in place (after a reorg)."""
        ...

    def exit_hop(self, leg: SwapLeg) -> ExitHop:
        """`leg` (a single hop this venue quoted) as the executor's swap step."""
        ...


def legs_of(leg: SwapLeg) -> tuple[SwapLeg, ...]:
    """The single-pool legs of a leg (itself, or a route's hops)."""
    return leg.hops if leg.hops else (leg,)


def pools_of(leg: SwapLeg) -> set[str]:
    """Every pool a leg swaps in."""
    return {hop.pair for hop in legs_of(leg)}


def route(first: SwapLeg, second: SwapLeg) -> SwapLeg:
    """Two legs in a row as one leg (the second sells what the first returns)."""
    return SwapLeg(pair=first.pair, token_in=first.token_in, token_out=second.token_out,
                   amount_in=first.amount_in, amount_out=second.amount_out, venue=ROUTE,
                   hops=(first, second), gas=first.gas + second.gas)


def exit_options(dex: Venue, token_in: str, token_out: str, amount_in: int) -> list[SwapLeg]:
    """The exits worth comparing net of gas: `Venues.quotes`, or a single venue's quote."""
    if isinstance(dex, Venues):
        return dex.quotes(token_in, token_out, amount_in)
    leg = dex.quote(token_in, token_out, amount_in)
    return [] if leg is None else [leg]


class Venues:
    """Several venues as one, routing each quote to the best pool or two-hop path."""

    venue = "venues"

    def __init__(self, venues: Sequence[Venue], *, via: str) -> None:
        names = [v.venue for v in venues]
        if not venues or len(set(names)) != len(names):
            raise ValueError(f"venues must be one or more, each once: {names}")
        self.venues = tuple(venues)
        self.by_name = {v.venue: v for v in venues}
        self.via = via.lower()

    def _best_single(self, token_in: str, token_out: str, amount: int,
                     exact_in: bool) -> SwapLeg | None:
        best: SwapLeg | None = None
        for venue in self.venues:  # in order: an equal quote stays with the earlier venue
            leg = venue.quote(token_in, token_out, amount) if exact_in \
                else venue.quote_exact_out(token_in, token_out, amount)
            if leg is not None and (best is None or _better(leg, best, exact_in)):
                best = leg
        return best

    def quote(self, token_in: str, token_out: str, amount_in: int) -> SwapLeg | None:
        """The most `token_out` for exactly `amount_in`: the best single pool of any venue,
        or the two-hop path through `via` if it returns more."""
        token_in, token_out = token_in.lower(), token_out.lower()
        best = self._best_single(token_in, token_out, amount_in, True)
        if self.via in (token_in, token_out) or token_in == token_out:
            return best
        first = self._best_single(token_in, self.via, amount_in, True)
        if first is None or first.amount_out <= 0:
            return best
        second = self._best_single(self.via, token_out, first.amount_out, True)
        if second is not None and (best is None or second.amount_out > best.amount_out):
            return route(first, second)
        return best

    def quotes(self, token_in: str, token_out: str, amount_in: int) -> list[SwapLeg]:
        """Selling exactly `amount_in`: each venue's best single pool and the two-hop path
        through `via`, most output first (`quote` is the first; the others may cost less
        gas: see the module docstring)."""
        token_in, token_out = token_in.lower(), token_out.lower()
        options = [leg for venue in self.venues
                   if (leg := venue.quote(token_in, token_out, amount_in)) is not None]
        if self.via not in (token_in, token_out) and token_in != token_out:
            first = self._best_single(token_in, self.via, amount_in, True)
            if first is not None and first.amount_out > 0:
                second = self._best_single(self.via, token_out, first.amount_out, True)
                if second is not None:
                    options.append(route(first, second))
        # Stable: an equal output stays with the earlier venue (and single before route).
        return sorted(options, key=lambda leg: -leg.amount_out)

    def quote_exact_out(self, token_in: str, token_out: str, amount_out: int) -> SwapLeg | None:
        """The least `token_in` for exactly `amount_out`, single pool or through `via`."""
        token_in, token_out = token_in.lower(), token_out.lower()
        best = self._best_single(token_in, token_out, amount_out, False)
        if self.via in (token_in, token_out) or token_in == token_out:
            return best
        second = self._best_single(self.via, token_out, amount_out, False)
        if second is None:
            return best
        first = self._best_single(token_in, self.via, second.amount_in, False)
        if first is not None and (best is None or first.amount_in < best.amount_in):
            return route(first, second)
        return best

    def mid_price(self, token_in: str, token_out: str) -> Fraction | None:
        """The first venue's direct price that exists, else the product through `via`."""
        for venue in self.venues:
            price = venue.mid_price(token_in, token_out)
            if price is not None:
                return price
        if self.via in (token_in.lower(), token_out.lower()):
            return None
        to_via, from_via = self.mid_price(token_in, self.via), self.mid_price(self.via, token_out)
        return None if to_via is None or from_via is None else to_via * from_via

    def pools(self, token_a: str, token_b: str) -> tuple[str, ...]:
        """Every venue's pools of the pair, and of both hops through `via`."""
        found = [p for v in self.venues for p in v.pools(token_a, token_b)]
        if self.via not in (token_a.lower(), token_b.lower()):
            for a, b in ((token_a, self.via), (self.via, token_b)):
                found += [p for v in self.venues for p in v.pools(a, b)]
        return tuple(dict.fromkeys(found))

    def swap(self, leg: SwapLeg) -> None:
        """Each hop moves its own venue."""
        for hop in legs_of(leg):
            self.by_name[hop.venue].swap(hop)

    def copy(self) -> Venues:
        return Venues([v.copy() for v in self.venues], via=self.via)

    def subscriptions(self) -> LogFilter:
        """The union of every venue's filter (each venue ignores the others' logs)."""
        filters = [v.subscriptions() for v in self.venues]
        return LogFilter(
            addresses=tuple(sorted({a for f in filters for a in f.addresses})),
            topics0=tuple(sorted({t for f in filters for t in f.topics0})),
        )

    def apply(self, events: Iterable[Event]) -> int:
        events = list(events)
        return sum(v.apply(events) for v in self.venues)

    async def reload(self, chain: ChainReader, block: BlockRef | int) -> None:
        for venue in self.venues:
            await venue.reload(chain, block)

    def exit_hop(self, leg: SwapLeg) -> ExitHop:
        return self.by_name[leg.venue].exit_hop(leg)

    def exit_hops(self, leg: SwapLeg) -> tuple[ExitHop, ...]:
        """Every hop of a leg as the executor's swap steps."""
        return tuple(self.exit_hop(hop) for hop in legs_of(leg))


def _better(a: SwapLeg, b: SwapLeg, exact_in: bool) -> bool:
    return a.amount_out > b.amount_out if exact_in else a.amount_in < b.amount_in

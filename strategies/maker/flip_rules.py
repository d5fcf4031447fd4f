"""Exact mirrors of Maker's Flipper English auction (dss flip.sol of liquidations 1.2, commit
ee01dab, with LibNote: the bytecode @makerdao/testchain 1.1.33-beta5 deploys for ETH-A).

An auction sells `lot` gems (wad) for DAI (rad). It has two phases:

- **tend** (while `bid < tab`): bidders raise the DAI `bid` for the fixed `lot`; a raise must
  be at least `beg` times the last bid, or exactly `tab`;
- **dent** (once `bid == tab`): bidders offer to take a smaller `lot` for the same `tab`; the
  gems given up go back to the vault's owner (`usr`); a cut must be at least `beg`.

Each bid sets `tic = now + ttl`; the auction ends when the last bid is `ttl` old or at `end`
(`kick` + `tau`), and `deal` gives the lot to the high bidder. An auction nobody bid on
(`tic == 0`) past its `end` is restarted with `tick` (`end = now + tau`).

Every function names the Flipper function it mirrors; the `*_refusal` functions return the
revert string the contract's first failing `require` gives (None: the call succeeds), in the
contract's order. Units: bid and tab in rad (1e45), lot in wad, beg in wad, times in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

ONE = 10**18  # Flipper.ONE
WAD = 10**18
RAY = 10**27
RAD = 10**45
ZERO_ADDRESS = "0x" + "00" * 20
UINT48_MAX = 2**48 - 1


@dataclass(frozen=True, slots=True)
class FlipParams:
    """Flipper's `beg` (wad: 1.05e18 is a 5 % step), `ttl` and `tau` (seconds)."""

    beg: int
    ttl: int
    tau: int


@dataclass(frozen=True, slots=True)
class Bid:
    """Flipper.bids(id), field for field (addresses lower-case). A deleted auction (dealt,
    yanked, or never kicked) is all zeros."""

    bid: int  # dai paid [rad]
    lot: int  # gems in return for bid [wad]
    guy: str  # high bidder
    tic: int  # bid expiry time
    end: int  # auction expiry time
    usr: str  # receives the gems given up in dent
    gal: str  # receives the DAI raised in tend (the Vow)
    tab: int  # total DAI wanted [rad]

    @property
    def live(self) -> bool:
        """Kicked and not yet dealt or yanked (Flipper's `guy != address(0)`)."""
        return self.guy != ZERO_ADDRESS

    @property
    def dent_phase(self) -> bool:
        """The bid reached `tab`: from now on bidders cut the lot."""
        return self.bid == self.tab


EMPTY = Bid(0, 0, ZERO_ADDRESS, 0, 0, ZERO_ADDRESS, ZERO_ADDRESS, 0)


def _add48(x: int, y: int) -> int:
    """Flipper.add(uint48, uint48): reverts on overflow."""
    z = x + y
    if z > UINT48_MAX:
        raise OverflowError("Flipper add(uint48) overflows")
    return z


def kicked(tab: int, lot: int, bid: int, *, usr: str, gal: str, kicker: str, now: int,
           params: FlipParams) -> Bid:
    """The auction Flipper.kick creates (guy = the kicker, the Cat; end = now + tau)."""
    return Bid(bid, lot, kicker.lower(), 0, _add48(now, params.tau), usr.lower(), gal.lower(), tab)


def _open_refusal(auction: Bid, now: int) -> str | None:
    """The three `require`s tend and dent share."""
    if not auction.live:
        return "Flipper/guy-not-set"
    if not (auction.tic > now or auction.tic == 0):
        return "Flipper/already-finished-tic"
    if not auction.end > now:
        return "Flipper/already-finished-end"
    return None


def tend_refusal(auction: Bid, params: FlipParams, now: int, lot: int, bid: int) -> str | None:
    """Mirrors the `require`s of Flipper.tend(id, lot, bid) at block time `now`."""
    refusal = _open_refusal(auction, now)
    if refusal is not None:
        return refusal
    if lot != auction.lot:
        return "Flipper/lot-not-matching"
    if bid > auction.tab:
        return "Flipper/higher-than-tab"
    if not bid > auction.bid:
        return "Flipper/bid-not-higher"
    if not (bid * ONE >= params.beg * auction.bid or bid == auction.tab):
        return "Flipper/insufficient-increase"
    return None


def dent_refusal(auction: Bid, params: FlipParams, now: int, lot: int, bid: int) -> str | None:
    """Mirrors the `require`s of Flipper.dent(id, lot, bid) at block time `now`."""
    refusal = _open_refusal(auction, now)
    if refusal is not None:
        return refusal
    if bid != auction.bid:
        return "Flipper/not-matching-bid"
    if bid != auction.tab:
        return "Flipper/tend-not-finished"
    if not lot < auction.lot:
        return "Flipper/lot-not-lower"
    if not params.beg * lot <= auction.lot * ONE:
        return "Flipper/insufficient-decrease"
    return None


def deal_refusal(auction: Bid, now: int) -> str | None:
    """Mirrors Flipper.deal's `require`: a bid was placed and it (or the auction) expired."""
    if not (auction.tic != 0 and (auction.tic < now or auction.end < now)):
        return "Flipper/not-finished"
    return None


def tick_refusal(auction: Bid, now: int) -> str | None:
    """Mirrors Flipper.tick's `require`s: past `end` and nobody bid."""
    if not auction.end < now:
        return "Flipper/not-finished"
    if auction.tic != 0:
        return "Flipper/bid-already-placed"
    return None


def after_tend(auction: Bid, params: FlipParams, now: int, sender: str, bid: int) -> Bid:
    """The auction after a successful Flipper.tend by `sender` (the new high bidder)."""
    return replace(auction, bid=bid, guy=sender.lower(), tic=_add48(now, params.ttl))


def after_dent(auction: Bid, params: FlipParams, now: int, sender: str, lot: int) -> Bid:
    """The auction after a successful Flipper.dent by `sender`."""
    return replace(auction, lot=lot, guy=sender.lower(), tic=_add48(now, params.ttl))


def after_tick(auction: Bid, params: FlipParams, now: int) -> Bid:
    """The auction after Flipper.tick: restarted, `end = now + tau`."""
    return replace(auction, end=_add48(now, params.tau))


def min_tend_bid(auction: Bid, params: FlipParams) -> int:
    """The smallest `bid` Flipper.tend accepts: above the last bid and at least `beg` times
    it (`bid * ONE >= beg * last`, so the ceiling), or `tab` when that is lower."""
    step = -(-params.beg * auction.bid // ONE)
    return min(auction.tab, max(step, auction.bid + 1))


def max_dent_lot(auction: Bid, params: FlipParams) -> int:
    """The largest `lot` Flipper.dent accepts: below the current lot and with
    `beg * lot <= lot_now * ONE` (the floor). -1 when no cut is possible (a lot of 0)."""
    return min(auction.lot * ONE // params.beg, auction.lot - 1)


def tend_moves(auction: Bid, sender: str, bid: int) -> int:
    """The DAI (rad) Flipper.tend takes from `sender`'s Vat balance: the whole bid from a
    new high bidder (the last one is repaid), only the raise from the current one."""
    if sender.lower() == auction.guy:
        return bid - auction.bid
    return bid


def dent_moves(auction: Bid, sender: str) -> int:
    """The DAI (rad) Flipper.dent takes from `sender`: `tab` from a new high bidder, none
    from the current one."""
    return 0 if sender.lower() == auction.guy else auction.bid

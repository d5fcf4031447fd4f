"""Nonce lanes: several signing accounts, so that one bundle that is not included does not
hold up the liquidations after it.

A transaction with nonce n+1 cannot be mined before nonce n. A public transaction is
mined sooner or later, but a private bundle may never be: outbid, its nonce stays unused
until its last target block has passed, and every later transaction of that account
waits behind it. So in bundle mode the keeper signs from several accounts, each a *lane*
with its own `NonceManager`, synced from that account's chain nonce and its own journaled
transactions (`BundleBook.max_nonce`), and each lane holds at most one unresolved bundle
at a time: the next liquidation takes a free lane. That bundle may carry several of the
lane's transactions, with consecutive nonces (they land together or not at all): the
liquidations one dispatch pays from the account's tokens all need lane 0, and go in one
bundle from it (`take(..., join=)`); such a transaction is `shared`, and is not resent
alone when its bundle is not included (its nonce may follow one that was not mined).

Lane 0 is the configured account (the executor's own nonce stream, shared with its
public sends such as approvals); the others come from `KEEPER_ACCOUNT__LANE_KEYS`.
A liquidation paid with the account's own tokens needs lane 0 (only it holds them); a
flash liquidation may take any lane whose account the FlashLiquidator lists as an
operator (`setOperator`), and takes lane 0 last (its nonce stream also carries the
account's public transactions, such as approvals, which a bundle waiting on it would hold
up). A lane can be asked for by address (`take(..., prefer=)`): the lane a transaction was
signed on ahead (keeper/execution/bundles_presign.py).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount

from keeper.chain.http import HttpRpc
from keeper.errors import ConfigError
from keeper.execution.nonces import NonceManager
from keeper.execution.sender import Sender

OPERATORS = "0x13e7c9d8"  # FlashLiquidator.operators(address)


@dataclass
class Lane:
    """One signing account and its nonce stream; `holder` is the hash of an unresolved
    bundled transaction of its ("" while one is being signed; None: free), `held` every
    such hash (one bundle's), `shared` those of them that went in one bundle together."""

    index: int
    account: LocalAccount
    sender: Sender  # signs with `account`, nonces from its own manager
    holder: str | None = None
    address: str = field(init=False)
    held: set[str] = field(default_factory=set)
    shared: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.address = self.account.address.lower()

    def hold(self, tx_hash: str) -> None:
        """`tx_hash` is signed on this lane and may still land; with others held, they
        are one bundle's (shared)."""
        if others := self.held - {tx_hash}:
            self.shared |= {*others, tx_hash}
        self.held.add(tx_hash)
        self.holder = tx_hash

    def let_go(self, tx_hash: str = "") -> None:
        """`tx_hash` can no longer land (mined, or ended unincluded), or "": a lane taken
        for a transaction never signed. Free once nothing it holds can land."""
        self.held.discard(tx_hash)
        self.shared.discard(tx_hash)
        self.holder = max(self.held) if self.held else None

    def clear(self) -> None:
        self.held.clear()
        self.shared.clear()
        self.holder = None

    @property
    def nonces(self) -> NonceManager:
        return self.sender.nonces

    @property
    def upcoming(self) -> int | None:
        """The nonce the lane's next `reserve()` hands out: the lowest given back (a bundle
        that expired unincluded), else the next new one; None before the stream is synced.
        Read only to sign ahead: the nonce reserved at the send decides."""
        nonces = self.nonces
        released = nonces._released  # a min-heap: its first item is the lowest
        return released[0] if released else nonces.next_nonce


class Lanes:
    """The lanes, lane 0 first; which are free."""

    def __init__(self, lanes: Sequence[Lane]) -> None:
        if not lanes:
            raise ValueError("at least one nonce lane (the configured account) is needed")
        addresses = [lane.address for lane in lanes]
        if len(set(addresses)) != len(addresses):
            raise ValueError("each nonce lane needs its own account")
        self.lanes = tuple(lanes)

    def __iter__(self) -> Iterator[Lane]:
        return iter(self.lanes)

    def __len__(self) -> int:
        return len(self.lanes)

    def order(self, *, own_tokens: bool) -> tuple[Lane, ...]:
        """The lanes a transaction may take, in the order it takes them: lane 0 alone for
        one paid with the account's tokens, else the other lanes first and lane 0 last."""
        return self.lanes[:1] if own_tokens else (*self.lanes[1:], self.lanes[0])

    def take(self, tx_hash: str, *, own_tokens: bool, prefer: str | None = None,
             spare: Collection[str] = (), join: Collection[str] = ()) -> Lane | None:
        """A free lane, now held for `tx_hash` (to be replaced by the real hash once signed);
        `own_tokens`: only lane 0 will do. `prefer`: that lane's address if it is free and
        fits; `spare`: addresses taken only when no other lane is free (lanes that other
        transactions of the same send were signed ahead on). `join`: the hashes of the
        bundle being built; with `own_tokens`, lane 0 holding only some of them counts as
        free (the transaction goes in that bundle, on the lane's next nonce). None when
        every fitting lane is busy."""
        fitting = self.order(own_tokens=own_tokens)
        chosen = next((lane for lane in fitting if lane.address == prefer
                       and lane.holder is None), None) if prefer is not None else None
        if chosen is None:
            free = [lane for lane in fitting if lane.holder is None]
            chosen = next((lane for lane in free if lane.address not in spare),
                          free[0] if free else None)
        if chosen is None and own_tokens and join:
            lane = fitting[0]
            if lane.held and lane.holder in lane.held and lane.held.issubset(join):
                chosen = lane
        if chosen is not None:
            chosen.holder = tx_hash
        return chosen

    def by_address(self, address: str) -> Lane | None:
        return next((lane for lane in self.lanes if lane.address == address.lower()), None)

    @property
    def free(self) -> int:
        """How many lanes hold nothing."""
        return sum(lane.holder is None for lane in self.lanes)


async def check_operators(chain: HttpRpc, flash_executor: str | None, lanes: Lanes) -> None:
    """Each lane but the owner's must be an operator of the flash executor (its flash
    liquidations would revert at every builder otherwise): one line if one is not."""
    if flash_executor is None or len(lanes) < 2:
        return
    calls = [("eth_call", [{"to": flash_executor,
                            "data": OPERATORS + lane.address[2:].rjust(64, "0")}, "latest"])
             for lane in lanes.lanes[1:]]
    answers = await chain.batch(calls)
    for lane, answer in zip(lanes.lanes[1:], answers, strict=True):
        word = str(answer or "0x")
        if word == "0x" or not int(word, 16):
            raise ConfigError(
                f"nonce lane {lane.address} is not an operator of the flash executor "
                f"{flash_executor}: deploy it with keeper deploy-executor --lanes, or have its "
                "owner call setOperator(lane, true)")

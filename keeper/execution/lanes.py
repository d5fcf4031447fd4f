"""Nonce lanes: several signing accounts, so that one bundle that is not included does not
hold up the liquidations after it.

A transaction with nonce n+1 cannot be mined before nonce n. A public transaction is
mined sooner or later, but a private bundle may never be: outbid, its nonce stays unused
until its last target block has passed, and every later transaction of that account
waits behind it. So in bundle mode the keeper signs from several accounts, each a *lane*
with its own `NonceManager`, synced from that account's chain nonce and its own journaled
transactions (`BundleBook.max_nonce`), and each lane holds at most one unresolved bundled
transaction at a time: the next liquidation takes a free lane.

Lane 0 is the configured account (the executor's own nonce stream, shared with its
public sends such as approvals); the others come from `KEEPER_ACCOUNT__LANE_KEYS`.
A liquidation paid with the account's own tokens needs lane 0 (only it holds them); a
flash liquidation may take any lane whose account the FlashLiquidator lists as an
operator (`setOperator`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount

from keeper.execution.nonces import NonceManager
from keeper.execution.sender import Sender


@dataclass
class Lane:
    """One signing account and its nonce stream; `holder` is the hash of its unresolved
    bundled transaction (None: free)."""

    index: int
    account: LocalAccount
    sender: Sender  # signs with `account`, nonces from its own manager
    holder: str | None = None
    address: str = field(init=False)

    def __post_init__(self) -> None:
        self.address = self.account.address.lower()

    @property
    def nonces(self) -> NonceManager:
        return self.sender.nonces


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

    def take(self, tx_hash: str, *, own_tokens: bool) -> Lane | None:
        """A free lane, now held for `tx_hash` (to be replaced by the real hash once signed);
        `own_tokens`: only lane 0 will do. None when every fitting lane is busy."""
        for lane in self.lanes[:1] if own_tokens else self.lanes:
            if lane.holder is None:
                lane.holder = tx_hash
                return lane
        return None

    def by_address(self, address: str) -> Lane | None:
        return next((lane for lane in self.lanes if lane.address == address.lower()), None)

    @property
    def free(self) -> int:
        """How many lanes hold nothing."""
        return sum(lane.holder is None for lane in self.lanes)

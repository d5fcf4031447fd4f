"""What the race's verdict is made of: liquidations read from the logs, and the bots' reverts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Liquidation:
    """One liquidation log and what it took."""

    protocol: str
    account: str  # the Aave user, or "<market id>:<borrower>"
    block: int
    tx_index: int
    tx_hash: str
    sender: str
    who: str  # keeper, competitor or other
    collateral: str
    debt: str
    repaid: int
    seized: int
    bonus_usd: float
    repaid_usd: float

    @property
    def position(self) -> tuple[int, int]:
        return self.block, self.tx_index


@dataclass(frozen=True)
class Revert:
    """A reverted transaction of one bot, and why."""

    who: str
    tx_hash: str
    block: int
    tx_index: int
    targets: tuple[str, ...]
    reason: str
    cause: str  # lost, self, market or revert
    winner: str | None = None  # the earlier liquidation's (lost / self) or price post's tx
    winner_who: str | None = None  # a bot, "other", or "oracle" (market)
    blocks_after: int | None = None  # how many blocks after the earlier liquidation

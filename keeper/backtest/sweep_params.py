"""The keeper parameters a backtest sweep varies, and the grid of them.

`Tuning` is one parameter set: the share of a liquidation's profit bid as its priority fee
(`execution.bid_share`; none: the devnet replay's default, no bid above the fixed tip), the
minimum profit in USD (`execution.min_profit_quote`, converted at the devnet's starting
2,000 USD per WETH), the largest flash batch (`execution.batch_max`) and where the
replay puts the keeper's reaction to a step's prices (`insert`: "next-block" or
"after-oracle", `keeper.backtest.trial`). A price-path backtest
(`keeper.backtest.devnet_replay`) runs the devnet keeper with it; `keeper backtest
--bid-share/--min-profit-usd/--batch-size/--insert` runs one, `keeper backtest sweep` a
grid (`grid`: every combination, in a stable order).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from keeper.backtest.trial import INSERTS, Insert
from keeper.bids import BidPolicy
from keeper.demo import DEMO_MAX_FEE, DEMO_MIN_PROFIT_USD, DEMO_PRIORITY_FEE

DEFAULT_BATCH = 5  # `execution.batch_max`'s default


@dataclass(frozen=True)
class Tuning:
    """One parameter set of the devnet keeper."""

    bid_share: Decimal | None = None
    min_profit_usd: Decimal = DEMO_MIN_PROFIT_USD
    batch_max: int = DEFAULT_BATCH
    insert: Insert = "next-block"

    def __post_init__(self) -> None:
        if self.bid_share is not None and not 0 <= self.bid_share <= 1:
            raise ValueError(f"a bid share must be within [0, 1], got {self.bid_share}")
        if self.min_profit_usd < 0:
            raise ValueError(f"the minimum profit must be >= 0, got {self.min_profit_usd}")
        if not 1 <= self.batch_max <= 20:
            raise ValueError(f"a batch size must be within [1, 20], got {self.batch_max}")
        if self.insert not in INSERTS:
            raise ValueError(f"an insert position must be after-oracle or next-block, "
                             f"got {self.insert!r}")

    def bids(self) -> BidPolicy | None:
        """The bid policy, within the devnet keeper's fee limits (`keeper.demo`)."""
        if self.bid_share is None:
            return None
        return BidPolicy(share=Fraction(self.bid_share), min_tip=DEMO_PRIORITY_FEE,
                         max_fee_per_gas=DEMO_MAX_FEE)

    def keeper_kwargs(self) -> dict[str, Any]:
        """`keeper.demo.build_keeper`'s arguments for it."""
        return {"bids": self.bids(), "min_profit_usd": self.min_profit_usd,
                "batch_max": self.batch_max}

    def label(self) -> str:
        share = "none" if self.bid_share is None else f"{self.bid_share}"
        return (f"bid {share}, min ${self.min_profit_usd}, batch {self.batch_max}, "
                f"{self.insert}")

    def to_json(self) -> dict[str, Any]:
        return {"bid_share": None if self.bid_share is None else str(self.bid_share),
                "min_profit_usd": str(self.min_profit_usd), "batch_max": self.batch_max,
                "insert": self.insert}


def grid(bid_shares: Sequence[Decimal | None], min_profits: Sequence[Decimal],
         batch_sizes: Sequence[int], inserts: Sequence[Insert] = ("next-block",)
         ) -> list[Tuning]:
    """Every combination, bid share varying slowest, insert position fastest; duplicates
    dropped."""
    out: list[Tuning] = []
    for share, floor, batch, insert in itertools.product(bid_shares, min_profits,
                                                         batch_sizes, inserts):
        tuning = Tuning(share, floor, batch, insert)
        if tuning not in out:
            out.append(tuning)
    return out

"""Bids: how much of a liquidation's expected profit the keeper offers to get it included first.

In blocks ordered by fee, the tip decides who liquidates first, and a fixed tip either
loses the big liquidations to a competitor who pays more or overpays on the marginal
ones. `BidPolicy` makes the tip a share of what the liquidation is worth:

    profit before the tip = gross value - slippage - gas at the base fee
    tip per gas = profit before the tip * share / gas limit,
                  at least the configured priority fee, at most max fee - base fee

`share` is one setting (`execution.bid_share`) with per-strategy overrides
(`execution.bid_share_by_strategy`). Ranking counts the tip as a cost (an opportunity's
`gas_cost` includes it, and its `priority_fee` is the tip it is sent with), so a
liquidation whose profit after its bid is under the minimum is not sent.

In a builder's auction (`to_coinbase`: bundles, `execution.submitter = "bundle"`) a flash
liquidation bids the same share as a direct payment to `block.coinbase`, made by the
FlashLiquidator out of the surplus in the same transaction, and tips only the configured
priority fee:

    bid = (profit before the bid - min_profit) * bps(share) / 10,000

(`FlashLiquidator.execute`'s `(profit - minProfit) * bidBps / 10,000`, whose `minProfit` is
the gas plus `min_profit`). Ranking counts it as a cost (`Opportunity.coinbase_bid`). A
liquidation paid from the account's tokens bids by its tip there, made the same way: the
share of the profit before the tip less `min_profit` (ranking passes that as the profit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

BPS = 10_000


@dataclass(frozen=True)
class BidPolicy:
    """The share of the expected profit bid as the priority fee, and its bounds."""

    share: Fraction = Fraction(0)
    by_strategy: Mapping[str, Fraction] = field(default_factory=dict)
    min_tip: int = 0  # wei per gas: the configured priority fee
    max_fee_per_gas: int | None = None  # wei per gas: the fee cap
    to_coinbase: bool = False  # flash liquidations pay their bid to block.coinbase

    def __post_init__(self) -> None:
        for share in (self.share, *self.by_strategy.values()):
            if not 0 <= share <= 1:
                raise ValueError(f"a bid share must be within [0, 1], got {share}")

    def share_for(self, strategy: str) -> Fraction:
        return self.by_strategy.get(strategy, self.share)

    def bps(self, strategy: str) -> int:
        """The share in basis points, rounded down (the FlashLiquidator's `bidBps`)."""
        return int(self.share_for(strategy) * BPS)

    def coinbase_bid(self, strategy: str, profit_before_bid: int, min_profit: int) -> int:
        """The bid the FlashLiquidator pays block.coinbase for this expected profit
        (`keeper.execution.flash.bid_of`, FlashLiquidator.execute of this repository)."""
        over = profit_before_bid - min_profit
        return over * self.bps(strategy) // BPS if over > 0 else 0

    def tip(self, strategy: str, profit_before_tip: int, gas_limit: int, base_fee: int) -> int:
        """Wei per gas to offer: the share of the profit before the tip, within bounds."""
        wanted = 0
        if profit_before_tip > 0 and gas_limit > 0:
            wanted = int(profit_before_tip * self.share_for(strategy)) // gas_limit
        tip = max(self.min_tip, wanted)
        if self.max_fee_per_gas is not None:
            tip = min(tip, max(0, self.max_fee_per_gas - base_fee))
        return tip

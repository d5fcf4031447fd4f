"""What a backtest reports, whatever drove it (archive replay, tape, or devnet price path).

Every replay fills one `BacktestReport`; `keeper.backtest.report` renders it as the console
summary, the HTML report with plots, and `--json`. Amounts that are compared across assets
are in the quote asset (a float of whole tokens, e.g. WETH); raw token amounts stay ints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Mode = Literal["archive", "tape", "price-path"]


@dataclass(frozen=True)
class PriceSample:
    """One asset's oracle price at one replayed block (USD, or the oracle's base unit)."""

    block: int
    timestamp: int
    asset: str  # symbol
    price: float


@dataclass(frozen=True)
class HealthSample:
    """The distribution of tracked positions' health factors at one block.

    `quantiles` maps a quantile (0.01, 0.05, 0.25, 0.5, ...) to the health factor there;
    `below_one` counts the positions with HF < 1 (liquidatable).
    """

    block: int
    positions: int
    below_one: int
    quantiles: dict[float, float]


@dataclass(frozen=True)
class Liquidation:
    """One liquidation mined in the replay: the keeper's own, or a historical one."""

    block: int
    tx: str
    liquidator: str
    protocol: str  # "aave_v3" | "morpho_blue"
    account: str
    collateral: str  # symbol or address
    debt: str
    repaid: int  # raw debt-token units
    seized: int  # raw collateral-token units
    profit_quote: float  # net of gas and swap, in the quote asset
    gas_wei: int
    by_keeper: bool
    # The keeper's realized profit exactly, in the quote token's raw units ("wei", as in
    # Opportunity.value_wei): the journal's figure. None for a historical liquidation,
    # whose profit is an estimate.
    profit_wei: int | None = None


@dataclass(frozen=True)
class Opportunity:
    """A position that became liquidatable and profitable during the replay, and its fate.

    `taken_by` is "keeper", a competitor's address, or None (nobody took it in the range);
    `latency_blocks` is the keeper's block minus `first_block` when the keeper took it;
    `missed_because` says why the keeper did not take it (e.g. "competitor in the oracle
    update's block", "unprofitable after gas", "no capital").
    """

    first_block: int
    protocol: str
    account: str
    collateral: str
    debt: str
    profit_quote: float  # what it was worth to whoever took it (estimate when nobody did)
    taken_by: str | None
    latency_blocks: int | None = None
    missed_because: str | None = None
    # Archive/tape replays: who liquidated this position in history (when taken_by is
    # "keeper", the competitor the keeper beat to it).
    historical_liquidator: str | None = None
    # The episode's last sampled block; the keeper's liquidations in it (taken: 1, or more
    # when two landed before a sample); why, at length; the value counted for it (exact
    # quote wei: realized when taken, the best sampled estimate when missed) and the block
    # it was valued at.
    last_block: int | None = None
    liquidations: int = 0
    missed_detail: str | None = None
    value_wei: int | None = None
    valued_at: int | None = None


@dataclass
class BacktestReport:
    """The whole result of one backtest."""

    mode: Mode
    chain_id: int
    from_block: int
    to_block: int
    quote_symbol: str
    blocks_replayed: int = 0
    seconds: float = 0.0
    opportunities: list[Opportunity] = field(default_factory=list)
    keeper: list[Liquidation] = field(default_factory=list)
    historical: list[Liquidation] = field(default_factory=list)
    prices: list[PriceSample] = field(default_factory=list)
    health: list[HealthSample] = field(default_factory=list)
    gas_spent_wei: int = 0
    notes: list[str] = field(default_factory=list)
    # What became of every liquidation the keeper attempted, by outcome status (one per
    # liquidation: "confirmed", "no-capital", "reverted"...): the transactions side of the
    # reconciliation.
    attempts: dict[str, int] = field(default_factory=dict)
    decimals: dict[str, int] = field(default_factory=dict)  # token symbol -> decimals
    min_profit_quote: float = 0.0
    capital_usd: float | None = None  # each debt asset on hand at the start, in USD
    boot_seconds: float = 0.0  # devnet start (wall-clock, like `seconds`)

    @property
    def keeper_net_profit(self) -> float:
        return sum(x.profit_quote for x in self.keeper)

    @property
    def available_net_profit(self) -> float:
        """Net profit every opportunity in the range was worth to whoever took it (or would)."""
        return sum(max(o.profit_quote, 0.0) for o in self.opportunities)

    @property
    def capture_rate(self) -> float | None:
        """Keeper net profit / total net profit available; None when nothing was available."""
        available = self.available_net_profit
        return self.keeper_net_profit / available if available > 0 else None

    @property
    def missed_net_profit(self) -> float:
        """What the opportunities nobody took were worth (their best sampled estimate)."""
        return sum(max(o.profit_quote, 0.0) for o in self.opportunities if o.taken_by is None)

    def usd(self, symbol: str, block: int) -> float | None:
        """`symbol`'s oracle price at `block` (the last sample at or before it; the first
        one for a block before every sample), None when the replay saw no price for it."""
        found: float | None = None
        for sample in self.prices:
            if sample.asset != symbol:
                continue
            if sample.block > block and found is not None:
                break
            found = sample.price
        return found

    @property
    def blocks_per_second(self) -> float:
        return self.blocks_replayed / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: every field, plus the derived figures."""
        out = asdict(self)
        out["health"] = [
            {**h, "quantiles": {str(q): v for q, v in h["quantiles"].items()}}
            for h in out["health"]
        ]
        out.update(
            keeper_net_profit=self.keeper_net_profit,
            available_net_profit=self.available_net_profit,
            capture_rate=self.capture_rate,
            blocks_per_second=self.blocks_per_second,
            missed_net_profit=self.missed_net_profit,
        )
        return out


WALL_CLOCK = ("seconds", "blocks_per_second", "boot_seconds")  # the JSON keys that vary run to run

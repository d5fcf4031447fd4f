"""The typed values that pass between the engine's stages.

chain/ turns RPC data into `BlockRef` and `Event`; strategies turn events into
`Opportunity`; ranking picks among them; strategies turn the chosen one into a
`TxIntent`; only execution/ signs and sends. All are frozen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class BlockRef:
    """A block the keeper has seen: enough to pin calls to it and to detect reorgs."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int
    base_fee: int = 0
    gas_used: int = 0  # with gas_limit: the next block's base fee (EIP-1559)
    gas_limit: int = 0


@dataclass(frozen=True, slots=True)
class LogFilter:
    """What a strategy must hear: logs of these addresses with these first topics (any if empty)."""

    addresses: tuple[str, ...]
    topics0: tuple[str, ...] = ()
    # Price-feed logs are acted on as they arrive, not at the next head.
    urgent: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    """One log, as the node gave it (topics and data as 0x-hex strings)."""

    address: str
    topics: tuple[str, ...]
    data: str
    block_number: int
    block_hash: str
    transaction_hash: str
    transaction_index: int
    log_index: int
    removed: bool = False

    @property
    def topic0(self) -> str:
        return self.topics[0] if self.topics else ""

    @classmethod
    def from_rpc(cls, log: Mapping[str, Any]) -> Event:
        def hexstr(value: Any) -> str:
            return value if isinstance(value, str) else "0x" + bytes(value).hex()

        def num(value: Any) -> int:
            return int(value, 16) if isinstance(value, str) else int(value)

        return cls(
            address=hexstr(log["address"]).lower(),
            topics=tuple(hexstr(t).lower() for t in log["topics"]),
            data=hexstr(log["data"]),
            block_number=num(log["blockNumber"]),
            block_hash=hexstr(log["blockHash"]),
            transaction_hash=hexstr(log["transactionHash"]),
            transaction_index=num(log["transactionIndex"]),
            log_index=num(log["logIndex"]),
            removed=bool(log.get("removed", False)),
        )


@dataclass(frozen=True, slots=True)
class SwapLeg:
    """Selling `amount_in` of one token for another on a DEX pool (exact quote).

    `pair` is the pool's address; `venue` names the venue that quoted it (keeper.dex.venue)
    and `fee` is the pool's fee where a venue has several tiers (Uniswap V3: pips). A
    multi-hop route (venue "route") lists its single-pool legs in `hops`; `pair` is then
    the first hop's pool."""

    pair: str
    token_in: str
    token_out: str
    amount_in: int
    amount_out: int
    venue: str = "uniswap_v2"
    fee: int = 0
    hops: tuple[SwapLeg, ...] = ()
    # The executor's gas for this swap as its venue estimates it (venue.py): an estimate,
    # not part of what the leg is (legs compare equal without it).
    gas: int = field(default=0, compare=False)


def _as_given(repay: int) -> int:
    return repay


@dataclass(frozen=True)
class Candidate:
    """An unhealthy position and one (collateral, debt) pair to liquidate it through.

    `seize(repay)` mirrors the contract: the collateral the liquidator receives
    for repaying `repay` units of debt (at most `max_repay`), and
    `actual_repay(repay)` the debt the protocol really pulls for it. Ranking
    searches the repay size (within `repay_ranges` when the protocol restricts it);
    it needs nothing else from the protocol.
    """

    strategy: str
    account: str
    collateral: str  # token address, lower-case
    debt: str  # token address, lower-case
    max_repay: int
    health_factor: int  # wad
    key: str  # stable across restarts: never send twice for the same key
    seize: Callable[[int], int]
    gas_limit: int
    spender: str  # the contract that pulls the debt token when liquidating
    actual_repay: Callable[[int], int] = _as_given
    collateral_symbol: str = ""
    debt_symbol: str = ""
    # Debt-token units the funding route costs on top of `repay` (a flash-loan fee); set by
    # the dispatcher's sizing, not the strategy. None: the sender pays with tokens it holds.
    fee: Callable[[int], int] | None = None
    # The strategy's own data for `build` and `flash_liquidation` (a dataclass of its own,
    # narrowed with isinstance there); the engine never looks inside.
    private: object = None
    # The repay sizes the protocol accepts, as closed intervals (lo, hi) within
    # [1, max_repay] (Aave v3.3+'s dust rule: all debt, all collateral, or enough of both
    # left); ranking proposes only sizes inside them. Empty: every size up to max_repay.
    repay_ranges: tuple[tuple[int, int], ...] = ()
    # False: the call pulls nothing from the sending account's wallet (a Maker kick, a Perp
    # liquidation paid from margin already in the protocol's vault), so neither sizing nor
    # the send reserves the wallet's `debt` balance for it; `max_repay` is then nominal.
    from_wallet: bool = True


@dataclass(frozen=True, slots=True)
class Opportunity:
    """A ranked candidate: one concrete size, valued in the quote asset.

    Amounts are raw token units; values are wei of the quote asset (`quote_token`).
    `key` identifies the opportunity across restarts: the same position at the
    same oracle state gives the same key, so it is never sent twice.
    """

    strategy: str
    key: str
    account: str
    collateral: str
    debt: str
    debt_to_cover: int
    collateral_received: int
    gross_value: int  # value of collateral received minus debt paid, before slippage and gas
    slippage: int  # value lost turning the collateral back into the debt asset
    gas_limit: int
    gas_cost: int
    net_profit: int  # gross_value - slippage - gas_cost
    quote_token: str
    health_factor: int  # wad; < 1e18 means liquidatable
    block: int
    candidate: Candidate  # what ranking sized (the dispatcher builds the intent from it)
    swap: SwapLeg | None = None  # selling the seized collateral for the debt asset
    # Flash: selling the surplus of debt asset for the quote token (its exact quote is in
    # net_profit); None when it stays with the sender (valued at the mid price).
    profit_swap: SwapLeg | None = None
    debt_out: int = 0  # debt asset that swap returns (the collateral itself if the same token)
    evaluations: int = 0  # valuations the size search spent
    priority_fee: int = 0  # the tip per gas it is sent with (its bid; in gas_cost already)
    # Paid to block.coinbase by the flash executor (a bundle's bid; in net_profit already:
    # net_profit = gross_value - slippage - gas_cost - coinbase_bid).
    coinbase_bid: int = 0

    @property
    def wallet_draw(self) -> int:
        """The debt-token units this send takes from the wallet: the repay, or nothing for
        a candidate that is not paid from the wallet (`Candidate.from_wallet`)."""
        return self.debt_to_cover if self.candidate.from_wallet else 0


@dataclass(frozen=True, slots=True)
class ChainStep:
    """What a block source hands the engine for one step: the blocks after the last one
    processed up to `head` that have logs for it (with their headers), then `head`.

    `span` counts every block the step covers. `reorg_depth` is set when the chain no
    longer holds the last block processed: then `blocks` is empty and the engine rebuilds
    its state at `head` (`ancestor`: the newest processed block still on the chain). A
    `trial` step (a backtest's block mined up to its oracle update, then reverted) is
    applied on copies of the engine's state and forgotten afterwards.
    """

    head: BlockRef
    blocks: tuple[tuple[BlockRef, tuple[Event, ...]], ...] = ()
    span: int = 1
    reorg_depth: int | None = None
    ancestor: int | None = None
    trial: bool = False

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(e for _, events in self.blocks for e in events)


@dataclass(frozen=True, slots=True)
class PositionRow:
    """One tracked position as `keeper scan` and the reports show it (values in the
    protocol's own unit: Aave's base currency, Morpho's loan token)."""

    strategy: str
    account: str
    collateral_value: int
    debt_value: int
    health_factor: int  # wad; 2**256 - 1 when there is no debt
    market: str = ""  # the market within the protocol, where it has several (Morpho's id)


@dataclass(frozen=True, slots=True)
class Call:
    """A contract call a strategy wants made: target, calldata, value."""

    to: str
    data: str
    value: int = 0


# Protocol-specific market parameters of a flash leg, as the contract's MarketParams
# tuple: (loanToken, collateralToken, oracle, irm, lltv).
FlashMarket = tuple[str, str, str, str, int]


@dataclass(frozen=True, slots=True)
class FlashLeg:
    """One liquidation for the flash executor: the FlashLiquidator's `Liquidation` struct,
    field for field. A strategy encodes it (`flash_liquidation`); execution only packs it.

    `protocol` is the contract's `Protocol` enum value; `amount` and `repaid_shares` are
    what that protocol's liquidate call takes (Aave: debtToCover, 0; Morpho: seizedAssets
    or repaidShares); `max_repay` bounds the debt token the protocol may pull (the
    executor's exact approval); `market` is Morpho's MarketParams (zeros for Aave).
    The seized collateral is sold along `swap_pairs` (Uniswap V2 pairs) into the plan's
    debt token for at least `min_out`.
    """

    protocol: int
    collateral: str
    borrower: str
    amount: int
    repaid_shares: int
    max_repay: int
    market: FlashMarket
    swap_pairs: tuple[str, ...]
    min_out: int


@dataclass(frozen=True, slots=True)
class TxIntent:
    """An unsigned transaction for one ranked opportunity; execution signs and sends it.

    `spender` must be allowed to pull `opportunity.debt` from the sender first
    (execution makes sure of it before sending). None: the call funds itself (a
    flash executor), so the sender needs neither an allowance nor the debt asset.
    """

    opportunity: Opportunity
    call: Call
    gas_limit: int
    spender: str | None
    # More liquidations carried by the same transaction (a flash-executor batch): the
    # journal claims them with `opportunity`, which leads them.
    members: tuple[Opportunity, ...] = ()

    @property
    def opportunities(self) -> tuple[Opportunity, ...]:
        return (self.opportunity, *self.members)


# How one `TxIntent` ended, as execution reports it (metrics count each one).
Status = Literal[
    "confirmed",  # mined, and the called contract emitted a log: it liquidated
    "reverted",  # mined but failed (or emitted nothing): only the gas was spent
    "duplicate",  # the journal already holds this opportunity key: not sent twice
    "simulation-failed",  # the gas estimate reverted: nothing signed
    "fee-cap",  # the base fee is above max_fee_per_gas: nothing signed
    "no-capital",  # the sender's free debt-asset balance does not cover the repay
    "send-failed",  # the node refused the signed transaction: dropped, may be retried
    "lost",  # its nonce went to another transaction (or to our cancel): nothing landed
    "error",  # an unexpected exception while executing (the caller records it)
]


@dataclass(frozen=True)
class Outcome:
    """What became of one intent: its transaction, gas and realized profit (quote wei)."""

    key: str
    status: Status
    tx_hash: str = ""
    block: int = 0
    gas_used: int = 0
    realized_profit: int = 0
    reason: str = ""
    gas_paid: int = 0  # native wei
    members: tuple[str, ...] = ()  # keys of the batch this transaction also carried
    # A lost race: the transaction that took the position before ours (status "lost").
    winner: str = ""

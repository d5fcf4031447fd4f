"""The contract between the engine and a protocol strategy: small typed Protocols.

A strategy keeps a protocol's positions locally from events, and offers
liquidation *candidates*; the engine's ranking sizes and values them, the
strategy turns the chosen size into a `TxIntent`, and only execution/ signs
and sends. A strategy never holds a key and never sends.

    plugin = entry point `keeper.strategies` (name, config_model, create)
    strategy = plugin.create(config_section, context)
    strategy.subscriptions()        what logs it must hear
    await strategy.sync(chain, at)  cold start: logs + batched reads up to `at`
    strategy.apply(events, block)   pure update from the block's logs
    strategy.candidates(block)      unhealthy positions, one per (collateral, debt) pair
    strategy.build(candidate, repay) -> Call   (the engine wraps it in a TxIntent)

Optional members the engine uses when present (general mechanisms, not protocol cases):

    strategy.needs_resync: bool     True: the engine re-runs `sync` at the next head
    await strategy.refresh(chain, block)   after `apply`, before `candidates`: batched
                                    reads of what logs cannot tell (unmirrored oracles)
    strategy.positions(block)       rows for `keeper scan`
    strategy.flash_liquidation(candidate, repay, swap_pairs, min_out)
                                    -> keeper.execution.flash.Liquidation: the same
                                    liquidation for the flash executor contract
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from keeper.types import BlockRef, Call, Event, LogFilter


class ChainReader(Protocol):
    """Read-only chain access a strategy may use during `sync` (and nowhere else)."""

    chain_id: int

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        """One JSON-RPC call; raises RpcUnavailable / KeeperError."""
        ...

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Many calls as JSON-RPC batches (split at the provider's batch limit), in order."""
        ...

    async def eth_call(self, to: str, data: str, block: int | str = "latest") -> str:
        """`eth_call` returning the 0x-hex result."""
        ...

    async def get_logs(
        self, log_filter: LogFilter, from_block: int, to_block: int
    ) -> list[Event]:
        """Every matching log in the range (split into chunks the provider accepts)."""
        ...


@dataclass(frozen=True)
class Candidate:
    """An unhealthy position and one (collateral, debt) pair to liquidate it through.

    `seize(repay)` mirrors the contract: the collateral the liquidator receives
    for repaying `repay` units of debt (at most `max_repay`). Ranking searches
    the repay size; it needs nothing else from the protocol.
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
    details: Mapping[str, Any] = field(default_factory=dict)
    # Debt-token units the funding route costs on top of `repay` (a flash-loan fee); set by
    # the engine, not the strategy. None: the sender pays with tokens it holds.
    fee: Callable[[int], int] | None = None


@runtime_checkable
class Strategy(Protocol):
    """One protocol's positions and liquidations."""

    name: str

    def subscriptions(self) -> Sequence[LogFilter]: ...

    async def sync(self, chain: ChainReader, at: BlockRef) -> None: ...

    def apply(self, events: Sequence[Event], block: BlockRef) -> None: ...

    def candidates(self, block: BlockRef) -> Iterable[Candidate]: ...

    def build(self, candidate: Candidate, repay: int) -> Call: ...


@dataclass(frozen=True)
class StrategyContext:
    """What the engine tells a strategy when creating it."""

    chain_id: int
    liquidator: str  # the address that will send (and receive collateral)


@runtime_checkable
class StrategyFactory(Protocol):
    """The object an entry point names: validates its config and creates the strategy."""

    @property
    def name(self) -> str: ...

    @property
    def config_model(self) -> type[BaseModel]: ...

    def create(self, config: BaseModel, context: StrategyContext) -> Strategy: ...


STRATEGY_MEMBERS = ("name", "subscriptions", "sync", "apply", "candidates", "build")


def missing_members(strategy: object) -> list[str]:
    """The contract members `strategy` lacks (empty when it satisfies `Strategy`)."""
    return [m for m in STRATEGY_MEMBERS if not hasattr(strategy, m)]

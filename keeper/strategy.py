"""The contract between the engine and a protocol strategy: small typed Protocols.

A strategy keeps a protocol's positions locally from events, and offers
liquidation *candidates*; ranking sizes and values them, the dispatcher turns
the chosen size into a `TxIntent` through the strategy's `build` (or its
`flash_liquidation` leg), and only execution/ signs and sends. A strategy never
holds a key and never sends.

    plugin = entry point `keeper.strategies` (name, config_model, create)
    strategy = plugin.create(config_section, context)
    strategy.subscriptions()        what logs it must hear
    await strategy.sync(chain, at)  cold start: logs + batched reads up to `at`
    strategy.apply(events, block)   pure update from the block's logs
    strategy.candidates(block)      unhealthy positions, one per (collateral, debt) pair
    strategy.build(candidate, repay) -> Call   (the dispatcher wraps it in a TxIntent)

Capabilities a strategy may have, each a small runtime-checkable Protocol the
engine checks once, when it is wired (`Capabilities.of`):

    Resyncing      needs_resync: bool      True: the engine re-runs `sync` at the next head
    Refreshing     await refresh(chain, block)  after `apply`, before `candidates`: batched
                                           reads of what logs cannot tell (unmirrored oracles)
    Tracking       accounts, synced        what it follows (status, metrics, reports)
    PositionSource positions(block) -> [PositionRow]   for `keeper scan` and the reports
    FlashLiquidating flash_liquidation(candidate, repay, swap_pairs, min_out) -> FlashLeg
                                           the same liquidation for the flash executor
    CurveSource    liquidation_curve(block, drops) -> [CurvePoint]   for `keeper risk`
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast, runtime_checkable

from pydantic import BaseModel

from keeper.errors import ConfigError
from keeper.liquidation_curve import CurvePoint
from keeper.types import BlockRef, Call, Candidate, Event, FlashLeg, LogFilter, PositionRow


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


@runtime_checkable
class Strategy(Protocol):
    """One protocol's positions and liquidations."""

    name: str

    def subscriptions(self) -> Sequence[LogFilter]: ...

    async def sync(self, chain: ChainReader, at: BlockRef) -> None: ...

    def apply(self, events: Sequence[Event], block: BlockRef) -> None: ...

    def candidates(self, block: BlockRef) -> Iterable[Candidate]: ...

    def build(self, candidate: Candidate, repay: int) -> Call: ...


@runtime_checkable
class Named(Protocol):
    """Anything a strategy is: it has a name (every capability below has one too)."""

    name: str


@runtime_checkable
class Resyncing(Protocol):
    """Says when its local state can no longer be trusted (a configuration change the logs
    cannot mirror): the engine then re-syncs it at the next head."""

    name: str

    @property
    def needs_resync(self) -> bool: ...


@runtime_checkable
class Refreshing(Protocol):
    """Reads, once per block and batched, what its logs cannot tell (an oracle or a rate
    model it does not mirror)."""

    name: str

    async def refresh(self, chain: ChainReader, block: BlockRef) -> None: ...


@runtime_checkable
class Tracking(Protocol):
    """Tells what it follows: the accounts (lower-case) and the block it was synced at."""

    name: str

    @property
    def accounts(self) -> Sequence[str]: ...

    @property
    def synced(self) -> BlockRef | None: ...


@runtime_checkable
class PositionSource(Protocol):
    """Every tracked position at `block`, as one shared row type."""

    name: str

    def positions(self, block: BlockRef) -> Sequence[PositionRow]: ...


@runtime_checkable
class FlashLiquidating(Protocol):
    """Encodes its own liquidation for the flash executor: the same liquidation as `build`,
    with the seized collateral sold along `swap_pairs` for at least `min_out`."""

    name: str

    def flash_liquidation(
        self, candidate: Candidate, repay: int, swap_pairs: Sequence[str], min_out: int
    ) -> FlashLeg: ...


@runtime_checkable
class CurveSource(Protocol):
    """Re-values its whole book under price drops (`keeper risk`)."""

    name: str

    def liquidation_curve(self, block: BlockRef, drops: Sequence[int]) -> list[CurvePoint]: ...


@runtime_checkable
class Foreseeing(Protocol):
    """Tells what a price feed's next answer would open, before it is posted (the prepared
    liquidations of keeper/prepared.py).

    `feed_answers`: every feed (the address that emits `AnswerUpdated`) its prices follow,
    with the answer its book holds now. `candidates_if(block, feed, answers)`: `answers`
    move ever further from the current one in one direction; for each, the candidates at
    `block` of the positions that answer would open and no answer before it did (those
    stay liquidatable further on), valued at that answer. The book is not changed.
    """

    name: str

    def feed_answers(self) -> Mapping[str, int]: ...

    def candidates_if(
        self, block: BlockRef, feed: str, answers: Sequence[int]
    ) -> list[list[Candidate]]: ...


@dataclass(frozen=True)
class Capabilities:
    """What each strategy can do beyond the contract, checked once at wiring."""

    resyncing: tuple[Resyncing, ...]
    refreshing: tuple[Refreshing, ...]
    tracking: tuple[Tracking, ...]
    positions: tuple[PositionSource, ...]
    curves: tuple[CurveSource, ...]
    flash: Mapping[str, FlashLiquidating]  # by strategy name
    foreseeing: tuple[Foreseeing, ...] = ()

    @classmethod
    def of(cls, strategies: Sequence[Strategy]) -> Capabilities:
        def having(*members: str) -> list[Strategy]:
            return [s for s in strategies if offers(s, *members)]

        return cls(
            resyncing=tuple(cast(Resyncing, s) for s in having("needs_resync")),
            refreshing=tuple(cast(Refreshing, s) for s in having("refresh")),
            tracking=tuple(cast(Tracking, s) for s in having("accounts", "synced")),
            positions=tuple(cast(PositionSource, s) for s in having("positions")),
            curves=tuple(cast(CurveSource, s) for s in having("liquidation_curve")),
            flash={s.name: cast(FlashLiquidating, s) for s in having("flash_liquidation")},
            foreseeing=tuple(cast(Foreseeing, s) for s in having("feed_answers", "candidates_if")),
        )


_MISSING = object()


def offers(strategy: object, *members: str) -> bool:
    """Does `strategy` have every one of `members`? Looked up statically: a property is not
    run (isinstance on a runtime-checkable Protocol would read it, and a strategy's
    properties may need `sync` first)."""
    return all(inspect.getattr_static(strategy, name, _MISSING) is not _MISSING
               for name in members)


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


ConfigT = TypeVar("ConfigT", bound=BaseModel)
StrategyT = TypeVar("StrategyT")


@dataclass(frozen=True)
class Plugin(Generic[ConfigT, StrategyT]):
    """A `StrategyFactory` for a strategy built as `new(config, context)` from its own
    validated section: every plugin in strategies/ is one of these."""

    name: str
    config_model: type[ConfigT]
    new: Callable[[ConfigT, StrategyContext], StrategyT]

    def create(self, config: BaseModel, context: StrategyContext) -> StrategyT:
        """A fresh (not yet synced) strategy for the section `config`."""
        if not isinstance(config, self.config_model):
            raise ConfigError(f"strategies.{self.name}: expected {self.config_model.__name__}, "
                              f"got {type(config).__name__}")
        return self.new(config, context)


STRATEGY_MEMBERS = ("name", "subscriptions", "sync", "apply", "candidates", "build")


def missing_members(strategy: object) -> list[str]:
    """The contract members `strategy` lacks (empty when it satisfies `Strategy`)."""
    return [m for m in STRATEGY_MEMBERS if not hasattr(strategy, m)]

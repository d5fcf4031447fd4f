"""The Flipper side's shape as MakerStrategy drives it, and loading it (strategies/maker/flip.py
is imported only when the config names `flip_exit_pair`)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from typing import Protocol

from keeper.errors import ConfigError
from keeper.strategy import ChainReader, StrategyContext
from keeper.types import BlockRef, Call, Candidate, Event, LogFilter
from strategies.maker.book import VaultBook
from strategies.maker.config import MakerConfig


class FlipSide(Protocol):
    """The Flipper side (strategies/maker/flip.py): Cat.bite and English-auction bids,
    driven by this strategy in each of its steps, reading its vault book."""

    def subscriptions(self) -> Sequence[LogFilter]: ...

    async def sync(self, chain: ChainReader, at: BlockRef, book: VaultBook) -> None: ...

    def apply(self, events: Sequence[Event], block: BlockRef) -> None: ...

    def candidates(self, block: BlockRef, book: VaultBook) -> Iterable[Candidate]: ...

    def build(self, candidate: Candidate, repay: int) -> Call: ...

    def locked(self) -> int: ...  # DAI [rad] in the keeper's open bids

    taken: int  # DAI [rad] this block's takes may move into the Vat (set before candidates)


def flip_side(config: MakerConfig, context: StrategyContext) -> FlipSide | None:
    """The Flipper side when the config names its exit pair (`flip_exit_pair`), else none."""
    if config.flip_exit_pair is None:
        return None
    try:
        module = importlib.import_module("strategies.maker.flip")
    except ModuleNotFoundError:
        raise ConfigError("strategies.maker: flip_exit_pair is set but this keeper has no "
                          "Flipper side (strategies/maker/flip.py)") from None
    side: FlipSide = module.make_flip_side(config, context)
    return side

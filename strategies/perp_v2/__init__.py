"""Perpetual Protocol v2 (Curie) liquidations: the plugin object named by the `perp_v2`
entry point."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from keeper.errors import ConfigError
from keeper.strategy import StrategyContext
from strategies.perp_v2.config import PerpV2Config
from strategies.perp_v2.strategy import PerpV2Strategy


class PerpV2Plugin:
    """The Perp v2 plugin: validates `[strategies.perp_v2]` and creates the strategy."""

    name: ClassVar[str] = "perp_v2"
    config_model: ClassVar[type[BaseModel]] = PerpV2Config

    def create(self, config: BaseModel, context: StrategyContext) -> PerpV2Strategy:
        """A fresh (not yet synced) strategy for the ClearingHouse in `config`."""
        if not isinstance(config, PerpV2Config):
            raise ConfigError(
                f"strategies.perp_v2: expected a PerpV2Config, got {type(config).__name__}")
        return PerpV2Strategy(config, context)


STRATEGY = PerpV2Plugin()

__all__ = ["STRATEGY", "PerpV2Config", "PerpV2Plugin", "PerpV2Strategy"]

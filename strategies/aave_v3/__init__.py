"""Aave V3 liquidations: the plugin object named by the `aave_v3` entry point."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from keeper.errors import ConfigError
from keeper.strategy import StrategyContext
from strategies.aave_v3.config import AaveV3Config
from strategies.aave_v3.strategy import AaveV3Strategy


class AaveV3Plugin:
    """The Aave V3 plugin: validates its `[strategies.aave_v3]` section and creates the strategy."""

    name: ClassVar[str] = "aave_v3"
    config_model: ClassVar[type[BaseModel]] = AaveV3Config

    def create(self, config: BaseModel, context: StrategyContext) -> AaveV3Strategy:
        """A fresh (not yet synced) strategy for the market in `config`."""
        if not isinstance(config, AaveV3Config):
            raise ConfigError(
                f"strategies.aave_v3: expected an AaveV3Config, got {type(config).__name__}"
            )
        return AaveV3Strategy(config, context)


STRATEGY = AaveV3Plugin()

__all__ = ["STRATEGY", "AaveV3Config", "AaveV3Plugin", "AaveV3Strategy"]

"""Morpho Blue liquidations: the plugin object named by the `morpho_blue` entry point."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from keeper.errors import ConfigError
from keeper.strategy import StrategyContext
from strategies.morpho_blue.config import MorphoBlueConfig
from strategies.morpho_blue.strategy import MorphoBlueStrategy


class MorphoBluePlugin:
    """The Morpho Blue plugin: validates `[strategies.morpho_blue]` and creates the strategy."""

    name: ClassVar[str] = "morpho_blue"
    config_model: ClassVar[type[BaseModel]] = MorphoBlueConfig

    def create(self, config: BaseModel, context: StrategyContext) -> MorphoBlueStrategy:
        """A fresh (not yet synced) strategy for the singleton in `config`."""
        if not isinstance(config, MorphoBlueConfig):
            raise ConfigError(
                f"strategies.morpho_blue: expected a MorphoBlueConfig, got {type(config).__name__}"
            )
        return MorphoBlueStrategy(config, context)


STRATEGY = MorphoBluePlugin()

__all__ = ["STRATEGY", "MorphoBlueConfig", "MorphoBluePlugin", "MorphoBlueStrategy"]

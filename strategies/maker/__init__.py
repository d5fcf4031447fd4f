"""Maker MCD liquidations: the plugin object named by the `maker` entry point."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from keeper.errors import ConfigError
from keeper.strategy import StrategyContext
from strategies.maker.config import MakerConfig
from strategies.maker.strategy import MakerStrategy


class MakerPlugin:
    """The Maker plugin: validates `[strategies.maker]` and creates the strategy."""

    name: ClassVar[str] = "maker"
    config_model: ClassVar[type[BaseModel]] = MakerConfig

    def create(self, config: BaseModel, context: StrategyContext) -> MakerStrategy:
        """A fresh (not yet synced) strategy for the Vat in `config`."""
        if not isinstance(config, MakerConfig):
            raise ConfigError(
                f"strategies.maker: expected a MakerConfig, got {type(config).__name__}")
        return MakerStrategy(config, context)


STRATEGY = MakerPlugin()

__all__ = ["STRATEGY", "MakerConfig", "MakerPlugin", "MakerStrategy"]

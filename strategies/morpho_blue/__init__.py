"""Morpho Blue liquidations: the plugin object named by the `morpho_blue` entry point."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from strategies.morpho_blue.config import MorphoBlueConfig


class MorphoBluePlugin:
    """The Morpho Blue plugin; the engine issue adds the trading methods."""

    name: ClassVar[str] = "morpho_blue"
    config_model: ClassVar[type[BaseModel]] = MorphoBlueConfig


STRATEGY = MorphoBluePlugin()

__all__ = ["STRATEGY", "MorphoBlueConfig", "MorphoBluePlugin"]

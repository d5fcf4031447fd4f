"""Morpho Blue liquidations: the plugin object named by the `morpho_blue` entry point."""

from __future__ import annotations

from keeper.strategy import Plugin
from strategies.morpho_blue.config import MorphoBlueConfig
from strategies.morpho_blue.strategy import MorphoBlueStrategy

STRATEGY = Plugin("morpho_blue", MorphoBlueConfig, MorphoBlueStrategy)

__all__ = ["STRATEGY", "MorphoBlueConfig", "MorphoBlueStrategy"]

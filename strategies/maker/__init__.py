"""Maker MCD liquidations: the plugin object named by the `maker` entry point."""

from __future__ import annotations

from keeper.strategy import Plugin
from strategies.maker.config import MakerConfig
from strategies.maker.strategy import MakerStrategy

STRATEGY = Plugin("maker", MakerConfig, MakerStrategy)

__all__ = ["STRATEGY", "MakerConfig", "MakerStrategy"]

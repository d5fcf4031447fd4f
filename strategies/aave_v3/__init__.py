"""Aave V3 liquidations: the plugin object named by the `aave_v3` entry point."""

from __future__ import annotations

from keeper.strategy import Plugin
from strategies.aave_v3.config import AaveV3Config
from strategies.aave_v3.strategy import AaveV3Strategy

STRATEGY = Plugin("aave_v3", AaveV3Config, AaveV3Strategy)

__all__ = ["STRATEGY", "AaveV3Config", "AaveV3Strategy"]

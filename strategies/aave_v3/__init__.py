"""Aave V3 liquidations: the plugin object named by the `aave_v3` entry point."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from strategies.aave_v3.config import AaveV3Config


class AaveV3Plugin:
    """The Aave V3 plugin; the engine issue adds the trading methods."""

    name: ClassVar[str] = "aave_v3"
    config_model: ClassVar[type[BaseModel]] = AaveV3Config


STRATEGY = AaveV3Plugin()

__all__ = ["STRATEGY", "AaveV3Config", "AaveV3Plugin"]

"""Perpetual Protocol v2 (Curie) liquidations: the plugin object named by the `perp_v2`
entry point."""

from __future__ import annotations

from keeper.strategy import Plugin
from strategies.perp_v2.config import PerpV2Config
from strategies.perp_v2.strategy import PerpV2Strategy

STRATEGY = Plugin("perp_v2", PerpV2Config, PerpV2Strategy)

__all__ = ["STRATEGY", "PerpV2Config", "PerpV2Strategy"]

"""The `[strategies.morpho_blue]` section."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from keeper.config import Address, Interface, Section

_MARKET_ID = re.compile(r"^0x[0-9a-fA-F]{64}$")


def _market_id(value: str) -> str:
    if not _MARKET_ID.match(value):
        raise ValueError("a market id is 0x followed by 64 hex digits")
    return value.lower()


MarketId = Annotated[str, AfterValidator(_market_id)]
"""A Morpho Blue market id (bytes32), lower-cased."""


class MorphoBlueConfig(Section):
    """Morpho Blue: the singleton's address and, optionally, an allow-list of markets."""

    morpho: Annotated[Address, Interface("the Morpho Blue singleton", "feeRecipient()")]
    markets: list[MarketId] | None = None
    enabled: bool = True
    start_block: int = Field(default=0, ge=0)

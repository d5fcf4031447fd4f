"""The `[strategies.perp_v2]` section."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field

from keeper.config import Address, Interface, Section


class PerpV2Config(Section):
    """Perpetual Protocol v2 (Curie): the ClearingHouse and MarketRegistry, and the cap on the
    margin the keeper commits to positions it takes over."""

    clearing_house: Annotated[Address, Interface("a Perp v2 ClearingHouse", "getVault()")]
    market_registry: Annotated[
        Address, Interface("a Perp v2 MarketRegistry", "getQuoteToken()")]
    # The most margin (USD, the settlement token) the keeper's own Perp positions may hold,
    # counted at the initial-margin ratio: a liquidation whose position would take it past
    # this cap (or past the Vault's free collateral) is skipped, with that reason logged.
    max_margin_usd: Decimal = Field(default=Decimal(100_000), gt=0)
    # Close a position taken over by a liquidation at once (ClearingHouse.closePosition).
    close_positions: bool = True
    # Seconds from a block to the next: an account is liquidated only if it is also below
    # maintenance at that time (the mark's TWAPs slide with time), read with eth_call's
    # block overrides. 0: not checked (a node without block overrides).
    next_block_seconds: int = Field(default=1, ge=0)
    enabled: bool = True
    start_block: int = Field(default=0, ge=0)

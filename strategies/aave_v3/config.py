"""The `[strategies.aave_v3]` section."""

from __future__ import annotations

from pydantic import Field

from keeper.config import Address, Section


class AaveV3Config(Section):
    """Aave V3: which market (by its PoolAddressesProvider) and where to start reading logs."""

    addresses_provider: Address
    enabled: bool = True
    start_block: int = Field(default=0, ge=0)

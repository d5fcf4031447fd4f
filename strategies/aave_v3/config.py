"""The `[strategies.aave_v3]` section."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from keeper.config import Address, Interface, Section


class AaveV3Config(Section):
    """Aave V3: which market (by its PoolAddressesProvider) and where to start reading logs."""

    addresses_provider: Annotated[
        Address, Interface("an Aave V3 PoolAddressesProvider", "getPool()")]
    enabled: bool = True
    start_block: int = Field(default=0, ge=0)

"""The `[strategies.maker]` section."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field

from keeper.config import Address, Interface, Section

V2Pair = Annotated[Address, Interface("a Uniswap V2 pair", "getReserves()")]
"""A Uniswap V2 pair's address, checked at start-up to answer getReserves()."""


class MakerIlkConfig(Section):
    """One collateral type the keeper liquidates: its GemJoin (where the collateral it buys
    is exited to its ERC-20). Its Clipper or Flipper is read from Dog/Cat at sync."""

    join: Annotated[Address, Interface("a Maker GemJoin", "gem()")]


class MakerConfig(Section):
    """Maker MCD: the core contracts, the ilks to watch, the keeper's MakerKeeper contract
    and the cap on DAI it commits into the Vat at once."""

    vat: Annotated[Address, Interface("the Maker Vat", "Line()")]
    dog: Annotated[Address, Interface("the Maker Dog", "Hole()")]
    cat: Annotated[Address, Interface("the Maker Cat", "box()")] | None = None
    spot: Annotated[Address, Interface("the Maker Spotter", "par()")]
    jug: Annotated[Address, Interface("the Maker Jug", "base()")] | None = None
    dai: Annotated[Address, Interface("Maker's DAI", "decimals()")]
    dai_join: Annotated[Address, Interface("Maker's DaiJoin", "dai()")]
    # contracts/maker/MakerKeeper.sol owned by the sending account (keeper.devnet.maker_keeper)
    keeper_contract: Annotated[Address, Interface("a MakerKeeper contract", "daiJoin()")]
    ilks: dict[str, MakerIlkConfig]
    # The most DAI the keeper holds in the Vat at once (pulled from the account as it
    # pays): a running total of its open Flipper bids and each block's takes and bids.
    max_vat_dai: Decimal = Field(default=Decimal(100_000), gt=0)
    # A Uniswap V2 pair of the Clipper ilks' gem against Maker DAI: a take that sells the
    # collateral inside itself (Clipper's clipperCall; no DAI needed) is offered beside the
    # take with DAI, and ranking sends the better. None: takes pay with DAI the account
    # holds and keep the collateral.
    clip_exit_pair: V2Pair | None = None
    enabled: bool = True
    start_block: int = Field(default=0, ge=0)
    # Flipper auctions (Cat ilks; strategies/maker/flip.py): the Uniswap V2 pair of the gem
    # against Maker DAI the bidding model prices lots on (none: Flipper ilks are not
    # liquidated), the least DAI a bid must expect to earn, and the share (percent) of its
    # ceiling a first bid opens at. Bids share `max_vat_dai` with the takes.
    flip_exit_pair: V2Pair | None = None
    flip_min_profit: Decimal = Field(default=Decimal(0), ge=0)
    flip_open_share: int = Field(default=50, ge=1, le=100)

"""The Maker part of `devnet.json` (`maker`): MCD's addresses, its ilks and seeded vaults."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MakerIlkInfo(_Frozen):
    """One collateral type: its GemJoin and ERC-20, its pip, and its liquidation engine."""

    join: str  # GemJoin
    gem: str  # the collateral ERC-20 (Maker's own WETH9 for ETH-*)
    pip: str  # the price source Spotter reads (a DSValue, driven from a devnet feed)
    engine: str  # "clip" (Dog + Clipper, liquidations 2.0) or "flip" (Cat + Flipper, 1.2)
    auction: str  # its Clipper or Flipper
    calc: str | None = None  # a Clipper's price calculator (Abacus)
    calc_kind: str | None = None  # "linear" (LinearDecrease) or "stairstep"


class MakerVaultInfo(_Frozen):
    """A seeded vault: its ilk, its urn (the owner's address) and the ratio it opened at
    (collateral value over debt, in units of the ilk's liquidation ratio)."""

    ilk: str
    urn: str
    opened_at: float


class MakerInfo(_Frozen):
    """`@makerdao/testchain` 1.1.33-beta5 replayed on the devnet (keeper/devnet/maker.py)."""

    version: str
    vat: str
    dog: str
    cat: str
    spot: str
    jug: str
    vow: str
    dai: str  # Maker's DAI ERC-20 (not the devnet's DAI token)
    dai_join: str
    weth: str  # Maker's WETH9 (the ETH-* ilks' gem), not the devnet's WETH token
    pause_proxy: str  # ward of every core contract (impersonated to file parameters)
    pip_owner: str  # may poke the DSValue pips
    price_symbol: str  # the devnet feed the ETH pip follows ("WETH")
    ilks: dict[str, MakerIlkInfo]  # "ETH-A", "ETH-B", "ETH-C"
    pairs: dict[str, str]  # Uniswap V2 exit pools in the devnet's factory: "MCD_WETH/WETH"
    vaults: list[MakerVaultInfo]
    # A MakerKeeper (contracts/maker/MakerKeeper.sol) owned by the devnet's liquidator.
    keeper_contract: str | None = None

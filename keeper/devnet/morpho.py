"""Deploy the real Morpho Blue on the devnet, with markets priced by our feeds.

Morpho.sol and its IrmMock are compiled from the npm source
(@morpho-org/morpho-blue 1.0.0) with the pinned solcjs 0.8.19 and Morpho's own
production settings (viaIR, 999999 optimizer runs, paris). The compile takes
~15 s once and is then served from the `.cache/solc` cache.

Each market's oracle is our `contracts/devnet/FeedOracle.sol`, which follows
the collateral/USD and loan/USD feeds, so moving a feed moves Morpho's view
of every position exactly as on mainnet.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eth_abi.abi import encode
from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract

from keeper.devnet.artifacts import Artifact, compile_solidity
from keeper.devnet.deployer import Deployer
from keeper.devnet.info import MorphoBlueInfo, MorphoMarketInfo
from keeper.devnet.tokens import TokenSpec, devnet_contracts
from keeper.devnet.uniswap import pool_amount
from keeper.errors import DevnetError
from keeper.paths import node_modules

# (collateral, loan) symbol pairs.
DEFAULT_MARKETS: tuple[tuple[str, str], ...] = (("WETH", "USDC"), ("WBTC", "USDC"))
DEFAULT_LLTV = 860_000_000_000_000_000  # 86 %, a standard Morpho LLTV
# Loan-token liquidity the deployer supplies to each market, in USD.
DEFAULT_SUPPLY_USD = Decimal(20_000_000)
ORACLE_PRICE_SCALE = 10**36
MAX_UINT = 2**256 - 1

# Morpho's foundry profile; matching it keeps the bytecode close to what is on mainnet.
_OPTIMIZER_RUNS = 999_999
_EVM_VERSION = "paris"

MarketParams = tuple[ChecksumAddress, ChecksumAddress, ChecksumAddress, ChecksumAddress, int]


@functools.cache
def morpho_artifacts() -> dict[str, Artifact]:
    """Morpho, IrmMock and their libraries, compiled from the npm source (cached on disk)."""
    src = node_modules() / "@morpho-org" / "morpho-blue" / "src"
    if not (src / "Morpho.sol").is_file():
        raise DevnetError(f"Morpho Blue source not found at {src}: run `npm ci`")
    # Source names relative to src/ so the relative imports resolve against the root.
    sources = {"Morpho.sol": src / "Morpho.sol", "mocks/IrmMock.sol": src / "mocks/IrmMock.sol"}
    return compile_solidity(
        sources,
        roots=[src],
        optimizer_runs=_OPTIMIZER_RUNS,
        via_ir=True,
        evm_version=_EVM_VERSION,
    )


def morpho_abi() -> list[dict[str, Any]]:
    """Morpho's ABI with the events merged in.

    Under solc 0.8.19 events emitted as `EventsLib.X` are declared in the
    library only, so Morpho's own ABI lists none; without this merge no
    Morpho log can be decoded.
    """
    artifacts = morpho_artifacts()
    abi = list(artifacts["Morpho"].abi)
    have = {_signature(item) for item in abi if item.get("type") == "event"}
    for item in artifacts["EventsLib"].abi:
        if item.get("type") == "event" and _signature(item) not in have:
            abi.append(item)
    return abi


def _signature(event: Mapping[str, Any]) -> str:
    return f"{event['name']}({','.join(_abi_type(i) for i in event['inputs'])})"


def _abi_type(param: Mapping[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){kind.removeprefix('tuple')}"
    return kind


def morpho_artifact() -> Artifact:
    """The Morpho artifact with the merged ABI (see `morpho_abi`)."""
    base = morpho_artifacts()["Morpho"]
    return Artifact(name=base.name, abi=morpho_abi(), bytecode=base.bytecode)


def irm_mock_artifact() -> Artifact:
    return morpho_artifacts()["IrmMock"]


def feed_oracle_artifact() -> Artifact:
    return devnet_contracts()["FeedOracle"]


def market_id(loan_token: str, collateral_token: str, oracle: str, irm: str, lltv: int) -> bytes:
    """Morpho's `Id`: keccak256(abi.encode(MarketParams)) (MarketParamsLib.id)."""
    return keccak(
        encode(
            ["address", "address", "address", "address", "uint256"],
            [loan_token, collateral_token, oracle, irm, lltv],
        )
    )


def market_params(market: MorphoMarketInfo) -> MarketParams:
    """The `MarketParams` struct as a tuple for web3 calls."""
    return (
        Web3.to_checksum_address(market.loan_token),
        Web3.to_checksum_address(market.collateral_token),
        Web3.to_checksum_address(market.oracle),
        Web3.to_checksum_address(market.irm),
        market.lltv,
    )


@dataclass(frozen=True)
class MorphoBlueDeployment:
    """The deployed contracts and their devnet.json description.

    `oracles` and `markets` are keyed "COLLATERAL/LOAN", e.g. "WETH/USDC".
    """

    info: MorphoBlueInfo
    morpho: Contract
    irm: Contract
    oracles: Mapping[str, Contract]
    markets: Mapping[str, MorphoMarketInfo]


def deploy_morpho_blue(
    deployer: Deployer,
    tokens: Mapping[str, Contract],
    feeds: Mapping[str, Contract],
    specs: Sequence[TokenSpec],
    *,
    markets: Sequence[tuple[str, str]] = DEFAULT_MARKETS,
    lltv: int = DEFAULT_LLTV,
    supply_usd: Decimal = DEFAULT_SUPPLY_USD,
) -> MorphoBlueDeployment:
    """Morpho (owned by the deployer), IrmMock, one FeedOracle per market, created and funded."""
    by_symbol = {s.symbol: s for s in specs}
    for collateral, loan in markets:
        for symbol in (collateral, loan):
            if symbol not in tokens or symbol not in feeds or symbol not in by_symbol:
                raise DevnetError(f"morpho blue: market {collateral}/{loan} needs token {symbol}")
    if not 0 < lltv < 10**18:
        raise DevnetError(f"morpho blue: lltv must be in (0, 1e18), got {lltv}")

    morpho = deployer.deploy(morpho_artifact(), deployer.sender)
    irm = deployer.deploy(irm_mock_artifact())
    # createMarket only accepts governance-enabled IRMs and LLTVs.
    deployer.send(morpho.functions.enableIrm(irm.address))
    deployer.send(morpho.functions.enableLltv(lltv))

    oracle_artifact = feed_oracle_artifact()
    oracles: dict[str, Contract] = {}
    created: dict[str, MorphoMarketInfo] = {}
    for collateral, loan in markets:
        key = f"{collateral}/{loan}"
        oracle = deployer.deploy(
            oracle_artifact,
            feeds[collateral].address,
            feeds[loan].address,
            by_symbol[collateral].decimals,
            by_symbol[loan].decimals,
        )
        params: MarketParams = (
            tokens[loan].address,
            tokens[collateral].address,
            oracle.address,
            irm.address,
            lltv,
        )
        deployer.send(morpho.functions.createMarket(params))
        mid = market_id(*params)
        if morpho.functions.market(mid).call()[4] == 0:  # lastUpdate is set at creation
            raise DevnetError(f"morpho blue: market {key} not found under id 0x{mid.hex()}")
        oracles[key] = oracle
        created[key] = MorphoMarketInfo(
            id="0x" + mid.hex(),
            loan_token=tokens[loan].address,
            collateral_token=tokens[collateral].address,
            oracle=oracle.address,
            irm=irm.address,
            lltv=lltv,
        )
        _supply(deployer, morpho, tokens[loan], params, pool_amount(supply_usd, by_symbol[loan]))

    info = MorphoBlueInfo(morpho=morpho.address, markets=list(created.values()))
    return MorphoBlueDeployment(info=info, morpho=morpho, irm=irm, oracles=oracles, markets=created)


def _supply(
    deployer: Deployer, morpho: Contract, token: Contract, params: MarketParams, assets: int
) -> None:
    if assets <= 0:
        return
    deployer.send(token.functions.mint(deployer.sender, assets))
    deployer.send(token.functions.approve(morpho.address, assets))
    deployer.send(morpho.functions.supply(params, assets, 0, deployer.sender, b""))

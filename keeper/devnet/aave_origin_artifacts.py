"""Aave v3.6's contracts, compiled offline from @aave-dao/aave-v3-origin 3.6.0 sources.

The package ships Solidity only. The contracts the devnet deploys (and the libraries they
link) are compiled with solcjs 0.8.27 (the npm alias `solc-0.8.27`) through
keeper/devnet/artifacts.py, with the settings of the package's foundry.toml (optimizer 200
runs, evm shanghai, no metadata hash); `openzeppelin-contracts/` imports are remapped to
the OpenZeppelin 5 that @bgd-labs/solidity-utils (the package's one dependency) brings,
and code is generated only for those contracts. Chainlink's EACAggregatorProxy
(@chainlink/contracts 0.8.0, pragma 0.6.6) is compiled with solcjs 0.6.6. Both are cached
under .cache/solc.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from keeper.devnet.artifacts import Artifact, compile_solidity
from keeper.errors import DevnetError
from keeper.paths import node_modules

ORIGIN_PACKAGE = "@aave-dao/aave-v3-origin"
SOLC_PACKAGE = "solc-0.8.27"

# The contracts that get deployed, by source unit (paths inside the package's src/).
UNITS: Mapping[str, tuple[str, ...]] = {
    "contracts/protocol/configuration/PoolAddressesProvider.sol": ("PoolAddressesProvider",),
    "contracts/protocol/configuration/ACLManager.sol": ("ACLManager",),
    "contracts/instances/PoolInstance.sol": ("PoolInstance",),
    "contracts/instances/PoolConfiguratorInstance.sol": ("PoolConfiguratorInstance",),
    "contracts/instances/ATokenInstance.sol": ("ATokenInstance",),
    "contracts/instances/VariableDebtTokenInstance.sol": ("VariableDebtTokenInstance",),
    "contracts/misc/AaveOracle.sol": ("AaveOracle",),
    "contracts/misc/DefaultReserveInterestRateStrategyV2.sol": (
        "DefaultReserveInterestRateStrategyV2",
    ),
    "contracts/misc/PriceOracleSentinel.sol": ("PriceOracleSentinel",),
    "contracts/mocks/oracle/SequencerOracle.sol": ("SequencerOracle",),
    "contracts/helpers/AaveProtocolDataProvider.sol": ("AaveProtocolDataProvider",),
    "contracts/protocol/libraries/logic/BorrowLogic.sol": ("BorrowLogic",),
    "contracts/protocol/libraries/logic/ConfiguratorLogic.sol": ("ConfiguratorLogic",),
    "contracts/protocol/libraries/logic/FlashLoanLogic.sol": ("FlashLoanLogic",),
    "contracts/protocol/libraries/logic/LiquidationLogic.sol": ("LiquidationLogic",),
    "contracts/protocol/libraries/logic/PoolLogic.sol": ("PoolLogic",),
    "contracts/protocol/libraries/logic/SupplyLogic.sol": ("SupplyLogic",),
}
# Pool's libraries in deploy order: FlashLoanLogic links BorrowLogic, so BorrowLogic goes first.
POOL_LIBRARIES = ("BorrowLogic", "FlashLoanLogic", "LiquidationLogic", "PoolLogic", "SupplyLogic")


def origin_sources() -> tuple[str, ...]:
    """The source units compiled for the v3.6 market (the deployed contracts' files)."""
    return tuple(UNITS)


@cache
def origin_artifacts() -> dict[str, Artifact]:
    """The v3.6 contracts, compiled with solcjs 0.8.27 as foundry.toml says (cached on disk)."""
    src = node_modules() / ORIGIN_PACKAGE / "src"
    oz = node_modules() / "@bgd-labs" / "solidity-utils" / "node_modules" / "@openzeppelin"
    oz = oz / "contracts"
    if not src.is_dir() or not oz.is_dir():
        raise DevnetError(f"{ORIGIN_PACKAGE} sources or OpenZeppelin 5 not found: run `npm ci`")
    return compile_solidity(
        {unit: src / unit for unit in UNITS},
        roots=[src],
        optimizer_runs=200,
        evm_version="shanghai",
        solc=SOLC_PACKAGE,
        remappings={"openzeppelin-contracts/contracts/": oz},
        only={unit: list(names) for unit, names in UNITS.items()},
        bytecode_hash="none",
    )


@cache
def eac_aggregator_proxy() -> Artifact:
    """Chainlink's EACAggregatorProxy (@chainlink/contracts 0.8.0), compiled with solcjs 0.6.6."""
    root = node_modules() / "@chainlink" / "contracts" / "src" / "v0.6"
    if not root.is_dir():
        raise DevnetError("@chainlink/contracts not found: run `npm ci`")
    unit = "EACAggregatorProxy.sol"
    return compile_solidity(
        {unit: root / unit},
        roots=[root],
        optimizer_runs=200,
        evm_version="istanbul",
        solc="solc-0.6.6",
        only={unit: ["EACAggregatorProxy"]},
    )["EACAggregatorProxy"]


def origin_artifact(name: str) -> Artifact:
    """One compiled v3.6 contract by name, e.g. "PoolInstance"."""
    return origin_artifacts()[name]


def pool_artifact() -> Artifact:
    """The v3.6 Pool ABI (for the proxy at `AaveV36Info.pool`)."""
    return origin_artifact("PoolInstance")


def configurator_artifact() -> Artifact:
    """The v3.6 PoolConfigurator ABI (for the proxy at `AaveV36Info.pool_configurator`)."""
    return origin_artifact("PoolConfiguratorInstance")


__all__ = [
    "POOL_LIBRARIES",
    "UNITS",
    "configurator_artifact",
    "eac_aggregator_proxy",
    "origin_artifact",
    "origin_artifacts",
    "pool_artifact",
]

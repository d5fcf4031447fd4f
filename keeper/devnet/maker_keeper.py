"""Compile and deploy the keeper's MakerKeeper contract (contracts/maker/MakerKeeper.sol).

The Maker strategy's bark, redo and take go through it, so that what each earns or pays
arrives as ERC-20 transfers to the sending account (see the contract's notes). Compiled
with the project's solcjs (0.8.19), cached under .cache/solc like the executor.
"""

from __future__ import annotations

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from keeper.devnet.artifacts import Artifact, compile_solidity
from keeper.devnet.deployer import Deployer
from keeper.paths import project_root

CONTRACT_NAME = "MakerKeeper"


def maker_keeper_artifact() -> Artifact:
    """MakerKeeper compiled (abi and bytecode)."""
    folder = project_root() / "contracts" / "maker"
    return compile_solidity({"MakerKeeper.sol": folder / "MakerKeeper.sol"},
                            roots=[folder])[CONTRACT_NAME]


def deploy_maker_keeper(
    w3: Web3, owner: ChecksumAddress, *, vat: str, dai_join: str, dai: str
) -> Contract:
    """Deploy MakerKeeper owned by `owner` (an unlocked or impersonated account)."""
    deployer = Deployer(w3, owner)
    return deployer.deploy(maker_keeper_artifact(), Web3.to_checksum_address(vat),
                           Web3.to_checksum_address(dai_join), Web3.to_checksum_address(dai))

"""Compile and deploy the oracle network's contracts: MedianAggregator and Chainlink's proxy.

MedianAggregator (contracts/devnet/ocr2/) is built on Chainlink's OCR2Base from
@chainlink/contracts 0.8.0 and compiled with the pinned solcjs 0.8.19; the proxy is the
package's own EACAggregatorProxy (solcjs 0.6.6, shared with the v3.6 market's feeds). Both
compiles are cached under .cache/solc by keeper.devnet.artifacts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from keeper.devnet.aave_origin_artifacts import eac_aggregator_proxy
from keeper.devnet.artifacts import Artifact, compile_solidity
from keeper.devnet.deployer import Deployer, rpc
from keeper.devnet.oracles.keys import FAULTY, OracleKeys
from keeper.errors import DevnetError
from keeper.paths import node_modules, project_root

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
TRANSMITTER_FUNDS = 1000 * 10**18  # devnet ETH for each transmitter's gas
OFFCHAIN_CONFIG_VERSION = 2  # libocr's OCR2 offchain config version (unused on chain)


@cache
def median_aggregator() -> Artifact:
    """contracts/devnet/ocr2/MedianAggregator.sol, compiled with solcjs 0.8.19 (cached)."""
    ours = project_root() / "contracts" / "devnet" / "ocr2"
    chainlink = node_modules() / "@chainlink" / "contracts" / "src" / "v0.8"
    if not chainlink.is_dir():
        raise DevnetError("@chainlink/contracts not found: run `npm ci`")
    unit = "MedianAggregator.sol"
    return compile_solidity(
        {unit: ours / unit},
        roots=[ours, chainlink],
        only={unit: ["MedianAggregator"]},
    )["MedianAggregator"]


@dataclass(frozen=True)
class DeployedFeed:
    """One OCR2 feed on the devnet: its aggregator, the proxy readers use, and its config."""

    aggregator: Contract
    proxy: Contract
    config_digest: bytes


def deploy_aggregator(
    deployer: Deployer, oracles: Sequence[OracleKeys], decimals: int, description: str
) -> tuple[Contract, bytes]:
    """A MedianAggregator configured with `oracles` (f = FAULTY); returns it and its digest."""
    aggregator = deployer.deploy(median_aggregator(), decimals, description)
    deployer.send(
        aggregator.functions.setConfig(
            [Web3.to_checksum_address(o.signer) for o in oracles],
            [Web3.to_checksum_address(o.transmitter) for o in oracles],
            FAULTY,
            b"",
            OFFCHAIN_CONFIG_VERSION,
            b"",
        )
    )
    _count, _block, digest = aggregator.functions.latestConfigDetails().call()
    for oracle in oracles:
        rpc(deployer.w3, "anvil_setBalance", oracle.transmitter, hex(TRANSMITTER_FUNDS))
    return aggregator, bytes(digest)


def deploy_feed(
    deployer: Deployer, oracles: Sequence[OracleKeys], decimals: int, description: str
) -> DeployedFeed:
    """An aggregator behind a fresh EACAggregatorProxy (no access controller: reads are open)."""
    aggregator, digest = deploy_aggregator(deployer, oracles, decimals, description)
    proxy = deployer.deploy(eac_aggregator_proxy(), aggregator.address, ZERO_ADDRESS)
    return DeployedFeed(aggregator=aggregator, proxy=proxy, config_digest=digest)


def switch_aggregator(deployer: Deployer, proxy: Contract, aggregator: ChecksumAddress) -> None:
    """Point `proxy` at `aggregator` (AggregatorProxy.proposeAggregator then confirmAggregator)."""
    deployer.send(proxy.functions.proposeAggregator(aggregator))
    deployer.send(proxy.functions.confirmAggregator(aggregator))

"""`keeper deploy-executor`: deploy the flash-liquidation executor on the configured chain.

It signs with the configured account (which becomes the owner unless
`--owner` says otherwise), on the first `chain.http_urls` endpoint after
checking its chain id. The Aave V3 Pool comes from
`strategies.aave_v3.addresses_provider` (`getPool()`) and Morpho Blue from
`strategies.morpho_blue.morpho`, unless `--aave-pool` / `--morpho` override
them; a protocol with neither is disabled in that deployment. It prints the
address and the config line to add.
"""

from __future__ import annotations

from decimal import Decimal

import click
from eth_utils.address import is_address, to_checksum_address
from web3 import Web3
from web3.exceptions import Web3Exception

from keeper.cli import check_chain_id, pass_config
from keeper.config import KeeperConfig
from keeper.errors import ConfigError, RpcUnavailable
from keeper.execution.flash import deploy_flash_liquidator
from keeper.secrets import redact_url

GWEI = 10**9
GET_POOL_ABI = [
    {"type": "function", "name": "getPool", "stateMutability": "view", "inputs": [],
     "outputs": [{"type": "address", "name": ""}]},
]  # fmt: skip


def _option_address(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    if not is_address(value):
        raise ConfigError(f"{option}: not an address: {value!r}")
    return to_checksum_address(value)


def _configured(config: KeeperConfig, strategy: str, key: str) -> str | None:
    # Read the strategy sections generically: the engine package never imports strategies/.
    section = config.strategies.sections().get(strategy)
    if section is None or getattr(section, "enabled", True) is False:
        return None
    value = getattr(section, key, None)
    return str(value) if value else None


@click.command("deploy-executor")
@click.option("--owner", help="Owner of the executor (default: the configured account).")
@click.option("--aave-pool", help="Aave V3 Pool (default: from strategies.aave_v3).")
@click.option("--morpho", help="Morpho Blue (default: strategies.morpho_blue.morpho).")
@pass_config
def deploy_executor(
    config: KeeperConfig, owner: str | None, aave_pool: str | None, morpho: str | None
) -> None:
    """Deploy the FlashLiquidator and print its address for `execution.flash_executor`."""
    account = config.account.load()
    if account is None:
        raise ConfigError(
            "deploy-executor needs an account: set KEEPER_ACCOUNT__PRIVATE_KEY "
            "or account.keystore and account.password_file"
        )
    owner = _option_address(owner, "--owner") or account.address
    aave_pool = _option_address(aave_pool, "--aave-pool")
    morpho = _option_address(morpho, "--morpho") or _configured(config, "morpho_blue", "morpho")
    url = config.chain.http_urls[0].url
    check_chain_id(url, config.chain.chain_id)
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
    try:
        if aave_pool is None:
            provider = _configured(config, "aave_v3", "addresses_provider")
            if provider is not None:
                contract = w3.eth.contract(address=to_checksum_address(provider),
                                           abi=GET_POOL_ABI)
                aave_pool = to_checksum_address(contract.functions.getPool().call())
        if aave_pool is None and morpho is None:
            raise ConfigError(
                "deploy-executor: neither Aave V3 nor Morpho Blue is configured "
                "(strategies.aave_v3 / strategies.morpho_blue, or --aave-pool / --morpho)"
            )
        execution = config.execution
        deployed = deploy_flash_liquidator(
            w3,
            owner,
            account,
            aave_pool=aave_pool,
            morpho=morpho,
            max_fee_per_gas=int(execution.max_fee_per_gas_gwei * GWEI),
            priority_fee=int(execution.priority_fee_gwei * Decimal(GWEI)),
        )
    except (Web3Exception, OSError) as exc:
        raise RpcUnavailable(
            f"deploy-executor on {redact_url(url)}: {type(exc).__name__}: {exc}"
        ) from None
    click.echo(f"FlashLiquidator deployed at {deployed.address} "
               f"(owner {owner}, tx {deployed.tx_hash}, gas {deployed.gas_used})")
    click.echo(f'[execution] flash_executor = "{deployed.address}"')

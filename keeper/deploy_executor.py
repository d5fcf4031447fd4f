"""`keeper deploy-executor`: build and deploy the flash-liquidation executor.

The build: `contracts/executor/FlashLiquidator.sol` (and the interfaces it
imports) compiled with the pinned solcjs (`compile_executor`; once per process
with `compile_flash_liquidator`). The deploy (`deploy_flash_liquidator`) is
set-up code: synchronous web3, signed locally, waiting for the receipt.
Execution (keeper/execution/flash.py) only encodes calls to the deployed
contract; it never compiles or deploys.

The command signs with the configured account (which becomes the owner unless
`--owner` says otherwise), on the first `chain.http_urls` endpoint after
checking its chain id. The Aave V3 Pool comes from
`strategies.aave_v3.addresses_provider` (`getPool()`) and Morpho Blue from
`strategies.morpho_blue.morpho`, unless `--aave-pool` / `--morpho` override
them; a protocol with neither is disabled in that deployment. It prints the
address and the config line to add.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexStr
from eth_utils.address import is_address, to_checksum_address
from web3 import Web3
from web3.exceptions import TimeExhausted, Web3Exception

from keeper.cli import check_chain_id, pass_config
from keeper.config import KeeperConfig
from keeper.devnet.artifacts import Artifact, compile_solidity
from keeper.errors import ConfigError, FatalError, RpcUnavailable
from keeper.lock import account_lock
from keeper.paths import project_root
from keeper.secrets import redact_url

CONTRACT_NAME = "FlashLiquidator"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
DEPLOY_GAS_MARGIN_PERCENT = 120
RECEIPT_TIMEOUT = 120.0
GWEI = 10**9
GET_POOL_ABI = [
    {"type": "function", "name": "getPool", "stateMutability": "view", "inputs": [],
     "outputs": [{"type": "address", "name": ""}]},
]  # fmt: skip


class ExecutorDeployError(FatalError):
    """The executor's deploy failed: a bad address, a fee cap below the base fee, no
    receipt in time, or a reverted deploy transaction."""


# ---------------------------------------------------------------------------- build


def source_dir() -> Path:
    """`contracts/executor`: FlashLiquidator.sol and the interfaces it imports."""
    return project_root() / "contracts" / "executor"


def sources() -> dict[str, Path]:
    """The executor's Solidity sources by source-unit name."""
    return {p.name: p for p in sorted(source_dir().glob("*.sol"))}


def compile_executor() -> Artifact:
    """Compile FlashLiquidator with the pinned solcjs (served from `.cache/solc` when cached)."""
    return compile_solidity(sources(), roots=[source_dir()])[CONTRACT_NAME]


@functools.cache
def compile_flash_liquidator() -> Artifact:
    """FlashLiquidator's ABI and creation code (compiled once per process; see compile_executor)."""
    return compile_executor()


# ---------------------------------------------------------------------------- deploy


@dataclass(frozen=True, slots=True)
class Deployed:
    """A deployed executor."""

    address: ChecksumAddress
    tx_hash: str
    block: int
    gas_used: int


def _address(value: str, what: str) -> ChecksumAddress:
    if not is_address(value):
        raise ExecutorDeployError(f"{what}: not an address: {value!r}")
    return to_checksum_address(value)


def deploy_flash_liquidator(
    w3: Web3,
    owner: str,
    sender: LocalAccount,
    *,
    aave_pool: str | None,
    morpho: str | None,
    max_fee_per_gas: int,
    priority_fee: int,
    artifact: Artifact | None = None,
) -> Deployed:
    """Deploy FlashLiquidator(owner, aave_pool, morpho), signed by `sender`, and wait for it.

    A protocol left None is disabled in that deployment (its actions revert).
    """
    built = artifact or compile_flash_liquidator()
    args = (
        _address(owner, "owner"),
        _address(aave_pool or ZERO_ADDRESS, "aave_pool"),
        _address(morpho or ZERO_ADDRESS, "morpho"),
    )
    factory = w3.eth.contract(abi=built.abi, bytecode=built.linked({}))
    base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas", 0))
    max_fee = min(2 * base_fee + priority_fee, max_fee_per_gas)
    if max_fee < base_fee:
        raise ExecutorDeployError(
            f"deploy: base fee {base_fee} wei is above the max fee per gas {max_fee_per_gas} wei"
        )
    tx: dict[str, Any] = {
        "from": sender.address,
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
        "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": min(priority_fee, max_fee),
        "value": 0,
    }
    estimate = factory.constructor(*args).estimate_gas({"from": sender.address})
    tx["gas"] = estimate * DEPLOY_GAS_MARGIN_PERCENT // 100
    built_tx = factory.constructor(*args).build_transaction(tx)
    signed = sender.sign_transaction(built_tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    try:
        receipt = w3.eth.wait_for_transaction_receipt(
            tx_hash, timeout=RECEIPT_TIMEOUT, poll_latency=0.05
        )
    except TimeExhausted:
        raise ExecutorDeployError(
            f"deploy: no receipt for {Web3.to_hex(tx_hash)} after {RECEIPT_TIMEOUT:.0f} s"
        ) from None
    address = receipt.get("contractAddress")
    if receipt["status"] != 1 or address is None:
        raise ExecutorDeployError(f"deploy: transaction {Web3.to_hex(tx_hash)} reverted")
    return Deployed(
        address=Web3.to_checksum_address(address),
        tx_hash=Web3.to_hex(tx_hash),
        block=int(receipt["blockNumber"]),
        gas_used=int(receipt["gasUsed"]),
    )


def set_operators(
    w3: Web3, executor: str, operators: Sequence[str], owner: LocalAccount, *,
    max_fee_per_gas: int, priority_fee: int,
) -> None:
    """`setOperator(operator, true)` for each of `operators` (the nonce lanes), signed by the
    executor's owner, each waited for."""
    contract = w3.eth.contract(address=to_checksum_address(executor), abi=SET_OPERATOR_ABI)
    nonce = w3.eth.get_transaction_count(owner.address, "pending")
    for n, operator in enumerate(operators):
        base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas", 0))
        max_fee = min(2 * base_fee + priority_fee, max_fee_per_gas)
        call = contract.functions.setOperator(to_checksum_address(operator), True)
        fields: dict[str, Any] = {
            "from": owner.address, "chainId": w3.eth.chain_id, "nonce": nonce + n,
            "maxFeePerGas": max_fee, "maxPriorityFeePerGas": min(priority_fee, max_fee),
            "gas": 100_000}
        tx: Any = call.build_transaction(fields)  # type: ignore[arg-type]  # web3's TxParams
        tx_hash = w3.eth.send_raw_transaction(owner.sign_transaction(tx).raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT,
                                                      poll_latency=0.05)
        if receipt["status"] != 1:
            raise ExecutorDeployError(f"setOperator({operator}): {Web3.to_hex(tx_hash)} reverted")


SET_OPERATOR_ABI: list[dict[str, Any]] = [{
    "name": "setOperator", "type": "function", "stateMutability": "nonpayable",
    "inputs": [{"name": "operator", "type": "address"}, {"name": "allowed", "type": "bool"}],
    "outputs": []}]


def deployed_creation_code(w3: Web3, tx_hash: str) -> bytes:
    """The creation code a deploy transaction carried (its input minus constructor args)."""
    tx = w3.eth.get_transaction(HexStr(tx_hash))
    data = bytes(tx["input"])
    return data[: len(data) - 3 * 32]  # three static constructor arguments


# ---------------------------------------------------------------------------- command


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
@click.option("--lanes", is_flag=True,
              help="Name the nonce lanes (KEEPER_ACCOUNT__LANE_KEYS) operators (owner only).")
@pass_config
def deploy_executor(
    config: KeeperConfig, owner: str | None, aave_pool: str | None, morpho: str | None,
    lanes: bool,
) -> None:
    """Deploy the FlashLiquidator and print its address for `execution.flash_executor`."""
    account = config.account.load()
    if account is None:
        raise ConfigError(
            "deploy-executor needs an account: set KEEPER_ACCOUNT__PRIVATE_KEY "
            "or account.keystore and account.password_file"
        )
    owner = _option_address(owner, "--owner") or account.address
    operators = [lane.address for lane in config.account.lanes()] if lanes else []
    if operators and owner.lower() != account.address.lower():
        raise ConfigError("deploy-executor --lanes: only the owner names operators; "
                          "leave --owner out (the configured account owns the executor)")
    if lanes and not operators:
        raise ConfigError("deploy-executor --lanes: KEEPER_ACCOUNT__LANE_KEYS holds no key")
    aave_pool = _option_address(aave_pool, "--aave-pool")
    morpho = _option_address(morpho, "--morpho") or _configured(config, "morpho_blue", "morpho")
    # The account's lock, as `keeper run` holds it: a keeper sending from this account
    # would take the same nonces ("nonce too low" on one side or the other).
    with account_lock(config.chain.chain_id, account.address):
        deployed = _deploy(config, account, owner, aave_pool=aave_pool, morpho=morpho,
                           operators=operators)
    click.echo(f"FlashLiquidator deployed at {deployed.address} "
               f"(owner {owner}, tx {deployed.tx_hash}, gas {deployed.gas_used})")
    for operator in operators:
        click.echo(f"operator (nonce lane): {operator}")
    click.echo(f'[execution] flash_executor = "{deployed.address}"')


def _deploy(
    config: KeeperConfig, account: LocalAccount, owner: str, *, aave_pool: str | None,
    morpho: str | None, operators: Sequence[str],
) -> Deployed:
    """Deploy on the first endpoint (its chain id checked) and name the operators."""
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
        set_operators(w3, deployed.address, operators, account,
                      max_fee_per_gas=int(execution.max_fee_per_gas_gwei * GWEI),
                      priority_fee=int(execution.priority_fee_gwei * Decimal(GWEI)))
    except (Web3Exception, OSError) as exc:
        raise RpcUnavailable(
            f"deploy-executor on {redact_url(url)}: {type(exc).__name__}: {exc}"
        ) from None
    return deployed

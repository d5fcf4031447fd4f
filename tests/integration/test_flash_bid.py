"""The FlashLiquidator's bid to `block.coinbase` on the session devnet: paid out of the
surplus inside the same transaction, (profit - minProfit) * bidBps / 10,000 of it, so what
is left never falls under `minProfit`.

Two ways to pay it in ether: unwrapping WETH9 (`withdraw`; the real WETH9 build of
@uniswap/v2-periphery, behind a Uniswap V2 pair seeded here), or, for a profit token that
cannot be unwrapped (the devnet's WETH is a plain mintable ERC-20), the executor's ether
float, the bid's tokens staying in the executor. The fixtures and helpers are
test_flash_executor's.
"""

from __future__ import annotations

import json
import os
import re
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from eth_account import Account
from web3 import Web3
from web3.logs import DISCARD

from keeper import deploy_executor, secrets
from keeper.cli import main
from keeper.devnet.artifacts import Artifact
from keeper.devnet.deployer import mined_receipt
from keeper.execution.flash import bid_of, bid_paid, encode_execute
from keeper.paths import project_root
from tests.conftest import Devnet
from tests.integration.helpers import contract, deployer
from tests.integration.test_flash_executor import (
    KEEP_ENV,
    Env,
    _cli_config,
    aave_targets,
    balance,
    crash,
    expect_error,
    make_env,
    owner_account,
    pair,
    plan_for,
    send,
    simulate,
)

ETH = 10**18


@pytest.fixture
def env(devnet: Devnet) -> Env:
    return make_env(devnet)


def coinbase_of(env: Env, receipt: dict[str, object]) -> str:
    block = env.w3.eth.get_block(int(str(receipt["blockNumber"])))
    return str(block["miner"])


def test_bid_from_the_float_when_the_profit_token_cannot_be_unwrapped(env: Env) -> None:
    crash(env)
    (liq,) = aave_targets(env, 1)
    to_weth = (pair(env, "USDC", "WETH"),)
    whole = simulate(env, plan_for(env, [liq], profit_pairs=to_weth))
    floor = whole // 4
    plan = plan_for(env, [liq], profit_pairs=to_weth, min_profit=floor, bid_bps=9_000)
    bid = bid_of(whole, floor, 9_000)
    # No ether in the executor: the bid cannot be paid, so nothing happens.
    assert expect_error(env, encode_execute(plan), env.owner, "BidUnfunded") == (bid, 0)
    env.devnet.rpc("anvil_setBalance", env.executor.address, hex(ETH))
    assert simulate(env, plan) == whole - bid >= floor
    receipt = send(env, encode_execute(plan))
    assert receipt["status"] == 1
    assert bid_paid(receipt["logs"], env.executor.address) == bid > 0
    (event,) = env.executor.events.BidPaid().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["coinbase"] == coinbase_of(env, receipt)
    assert env.w3.eth.get_balance(env.executor.address) == ETH - bid
    # The owner gets what is left; the bid's WETH refills the float's account.
    assert balance(env, "WETH", env.owner) == whole - bid
    assert balance(env, "WETH", env.executor.address) == bid
    # The float and the kept tokens go back to the owner on request.
    sweep = env.executor.functions.sweep("0x" + "00" * 20, env.owner, ETH - bid)
    tx = sweep.build_transaction({"from": env.owner, "gas": 100_000})
    mined_receipt(env.w3, env.w3.eth.send_transaction(tx))
    assert env.w3.eth.get_balance(env.executor.address) == 0


def test_bid_unwrapped_from_weth9(env: Env) -> None:
    crash(env)
    (liq,) = aave_targets(env, 1)
    w3, admin = env.w3, deployer(env.devnet)
    build = json.loads((project_root() / "node_modules/@uniswap/v2-periphery/build/WETH9.json")
                       .read_text())
    weth9 = admin.deploy(Artifact("WETH9", build["abi"], build["bytecode"].removeprefix("0x")))
    usdc = env.tokens["USDC"]
    # A USDC/WETH9 pair at the devnet's crash price: 1,700,000 USDC against 1,000 WETH9.
    factory = w3.eth.contract(
        address=Web3.to_checksum_address(env.devnet.info.uniswap_v2.factory),
        abi=[{"name": "createPair", "type": "function", "stateMutability": "nonpayable",
              "inputs": [{"name": "a", "type": "address"}, {"name": "b", "type": "address"}],
              "outputs": [{"name": "pair", "type": "address"}]},
             {"name": "getPair", "type": "function", "stateMutability": "view",
              "inputs": [{"name": "a", "type": "address"}, {"name": "b", "type": "address"}],
              "outputs": [{"name": "pair", "type": "address"}]}])
    admin.send(factory.functions.createPair(usdc.address, weth9.address))
    new_pair = factory.functions.getPair(usdc.address, weth9.address).call()
    admin.send(usdc.functions.mint(new_pair, int(Decimal(1_700_000) * 10**6)))
    env.devnet.rpc("anvil_setBalance", admin.sender, hex(10_000 * ETH))
    admin.send(weth9.functions.deposit(), value=1_000 * ETH)
    admin.send(weth9.functions.transfer(new_pair, 1_000 * ETH))
    minted = w3.eth.contract(address=new_pair, abi=[
        {"name": "mint", "type": "function", "stateMutability": "nonpayable",
         "inputs": [{"name": "to", "type": "address"}],
         "outputs": [{"name": "liquidity", "type": "uint256"}]}])
    admin.send(minted.functions.mint(admin.sender))

    whole = simulate(env, plan_for(env, [liq], profit_pairs=(new_pair,)))
    floor = whole // 10
    plan = plan_for(env, [liq], profit_pairs=(new_pair,), min_profit=floor, bid_bps=9_500)
    bid = bid_of(whole, floor, 9_500)
    assert w3.eth.get_balance(env.executor.address) == 0  # no float: WETH9 is unwrapped
    assert simulate(env, plan) == whole - bid
    receipt = send(env, encode_execute(plan))
    assert receipt["status"] == 1
    assert bid_paid(receipt["logs"], env.executor.address) == bid > 0
    assert int(weth9.functions.balanceOf(env.owner).call()) == whole - bid
    assert int(weth9.functions.balanceOf(env.executor.address).call()) == 0
    assert w3.eth.get_balance(env.executor.address) == 0


def test_bid_above_ten_thousand_bps_is_refused(env: Env) -> None:
    crash(env)
    (liq,) = aave_targets(env, 1)
    plan = plan_for(env, [liq])
    data = encode_execute(plan)
    # The encoder refuses it, so write the word by hand: the contract refuses it too. The
    # plan's head follows the selector and its offset word; bidBps is its eighth word.
    at = 2 + 8 + 64 + 7 * 64
    assert data[at:at + 64] == "0" * 64
    tampered = data[:at] + f"{10_001:064x}" + data[at + 64:]
    assert expect_error(env, tampered, env.owner, "BadPlan") == ()


def test_operators_execute_for_the_owner_and_only_the_owner_names_them(env: Env) -> None:
    crash(env)
    (liq,) = aave_targets(env, 1)
    plan = plan_for(env, [liq])
    data = encode_execute(plan)
    functions = env.executor.functions
    lane = env.stranger
    expect_error(env, data, lane, "NotOwner")
    # Only the owner names operators; an operator cannot name others, sweep, or hand over.
    name = functions.setOperator(lane, True)._encode_transaction_data()
    expect_error(env, name, lane, "NotOwner")
    admin = deployer(env.devnet)
    admin.send(functions.setOperator(lane, True), sender=env.owner)
    assert functions.operators(lane).call() is True
    for call in (functions.setOperator(env.owner, True),
                 functions.sweep(env.tokens["USDC"].address, lane, 1),
                 functions.transferOwnership(lane)):
        expect_error(env, call._encode_transaction_data(), lane, "NotOwner")
    # The lane executes; the profit goes to the owner, not to the lane.
    profit = simulate(env, plan)
    env.devnet.rpc("anvil_setBalance", lane, hex(ETH))
    latest = env.w3.eth.get_block("latest")["timestamp"]
    env.devnet.rpc("evm_setNextBlockTimestamp", latest)
    tx = {"from": lane, "to": env.executor.address, "data": data, "gas": 5_000_000}
    receipt = mined_receipt(env.w3, env.w3.eth.send_transaction(tx))  # type: ignore[arg-type]
    assert receipt["status"] == 1
    assert balance(env, "USDC", env.owner) == profit > 0
    assert balance(env, "USDC", lane) == 0
    admin.send(functions.setOperator(lane, False), sender=env.owner)
    expect_error(env, data, lane, "NotOwner")


def test_deploy_executor_names_the_nonce_lanes_operators(
    devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("KEEPER_") and name.upper() not in KEEP_ENV:
            monkeypatch.delenv(name)
    secrets.clear_secrets()
    lanes = [Account.create(), Account.create()]
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", owner_account().key.hex())
    monkeypatch.setenv("KEEPER_ACCOUNT__LANE_KEYS",
                       json.dumps(["0x" + bytes(a.key).hex() for a in lanes]))
    config = str(_cli_config(devnet, tmp_path))
    result = CliRunner().invoke(main, ["--config", config, "deploy-executor", "--lanes"])
    assert result.exit_code == 0, result.output
    address = re.findall(r'flash_executor = "(0x[0-9a-fA-F]{40})"', result.stdout)[-1]
    executor = contract(devnet, deploy_executor.compile_flash_liquidator(), address)
    for lane in lanes:
        assert executor.functions.operators(lane.address).call() is True
        assert lane.address in result.stdout
        assert bytes(lane.key).hex() not in result.output  # keys never printed
    assert executor.functions.operators(owner_account().address).call() is False
    stranger = Account.create().address
    refused = CliRunner().invoke(main, ["--config", config, "deploy-executor", "--lanes",
                                        "--owner", stranger])
    assert refused.exit_code == 2 and "only the owner names operators" in refused.stderr
    secrets.clear_secrets()

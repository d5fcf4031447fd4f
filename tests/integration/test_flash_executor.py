"""The flash-liquidation executor on the session devnet: capital-free liquidations and its guards.

Each test deploys a fresh FlashLiquidator (owned by a fresh anvil account
holding no token) inside the `devnet` fixture's snapshot, drops the WETH
feed so seeded borrowers on both protocols become liquidatable, and sends
`execute` plans as the owner. Profits are checked to the wei against the
`eth_call` of the same transaction, mined at the same timestamp.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from eth_abi.abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import RPCEndpoint

from keeper import deploy_executor, secrets
from keeper.chain.http import HttpRpc
from keeper.cli import main
from keeper.devnet.artifacts import aave
from keeper.devnet.deployer import mined_receipt
from keeper.devnet.morpho import morpho_abi
from keeper.devnet.observe import aave_accounts, morpho_positions
from keeper.devnet.uniswap import pair_artifact
from keeper.dex.uniswap_v3 import V3Book
from keeper.execution import flash
from keeper.execution.flash import FlashPlan, Funding, decode_error, decode_profit, encode_execute
from keeper.types import FlashLeg
from strategies.aave_v3.flash_leg import aave_flash_leg
from strategies.morpho_blue.flash_leg import morpho_flash_leg
from strategies.morpho_blue.math import MarketParams
from tests.conftest import Devnet, seeded_borrowers
from tests.integration.helpers import (
    FRESH_ACCOUNT_INDEXES,
    contract,
    deployer,
    fresh_accounts,
    set_price,
    tokens,
)

MNEMONIC = "test test test test test test test test test test test junk"
GWEI = 10**9
TX_GAS = 5_000_000
CRASH_PRICE = Decimal(1700)  # WETH $2000 -> $1700
KEEP_ENV = {"KEEPER_HOME", "KEEPER_CACHE_DIR", "KEEPER_ANVIL_BIN"}


@dataclass
class Env:
    devnet: Devnet
    w3: Web3
    owner: ChecksumAddress
    stranger: ChecksumAddress
    executor: Contract
    deployed: deploy_executor.Deployed
    tokens: dict[str, Contract]
    pool: Contract
    data_provider: Contract
    morpho: Contract
    weth_usdc_market: MarketParams
    market_id: str


def owner_account() -> LocalAccount:
    Account.enable_unaudited_hdwallet_features()
    path = f"m/44'/60'/0'/0/{FRESH_ACCOUNT_INDEXES[0]}"
    account: LocalAccount = Account.from_mnemonic(MNEMONIC, account_path=path)
    return account


@pytest.fixture
def env(devnet: Devnet) -> Env:
    return make_env(devnet)


def make_env(devnet: Devnet) -> Env:
    """A fresh FlashLiquidator owned by a fresh account, and the devnet's contracts."""
    owner, stranger = fresh_accounts(devnet, 2)
    key = owner_account()
    assert key.address == owner
    info = devnet.info
    deployed = deploy_executor.deploy_flash_liquidator(
        devnet.w3, owner, key, aave_pool=info.aave_v3.pool, morpho=info.morpho_blue.morpho,
        max_fee_per_gas=100 * GWEI, priority_fee=GWEI,
    )
    artifact = deploy_executor.compile_flash_liquidator()
    erc20s = tokens(devnet)
    market = next(m for m in info.morpho_blue.markets
                  if Web3.to_checksum_address(m.collateral_token) == erc20s["WETH"].address)
    return Env(
        devnet=devnet,
        w3=devnet.w3,
        owner=owner,
        stranger=stranger,
        executor=contract(devnet, artifact, deployed.address),
        deployed=deployed,
        tokens=erc20s,
        pool=contract(devnet, aave("protocol/pool/Pool.sol/Pool.json"), info.aave_v3.pool),
        data_provider=contract(
            devnet,
            aave("misc/AaveProtocolDataProvider.sol/AaveProtocolDataProvider.json"),
            info.aave_v3.data_provider,
        ),
        morpho=contract(devnet, morpho_abi(), info.morpho_blue.morpho),
        weth_usdc_market=MarketParams(market.loan_token, market.collateral_token, market.oracle,
                                      market.irm, market.lltv),
        market_id=market.id,
    )


# ---------------------------------------------------------------------------- helpers


def pair(env: Env, a: str, b: str) -> str:
    pairs = env.devnet.info.uniswap_v2.pairs
    return pairs.get(f"{a}/{b}") or pairs[f"{b}/{a}"]


def balance(env: Env, symbol: str, who: str) -> int:
    return int(env.tokens[symbol].functions.balanceOf(Web3.to_checksum_address(who)).call())


def eth_call(env: Env, data: str, sender: str, to: str | None = None) -> tuple[bool, str]:
    """(succeeded, return or revert data) of an eth_call at the latest block."""
    call = {"from": sender, "to": to or env.executor.address, "data": data, "gas": hex(TX_GAS)}
    reply = env.w3.provider.make_request(RPCEndpoint("eth_call"), [call, "latest"])
    if "error" in reply:
        return False, str(reply["error"].get("data") or "0x")
    return True, str(reply["result"])


def simulate(env: Env, plan: FlashPlan) -> int:
    ok, out = eth_call(env, encode_execute(plan), env.owner)
    assert ok, decode_error(out) or out
    return decode_profit(out)


def expect_error(env: Env, data: str, sender: str, name: str, to: str | None = None) -> tuple[
    Any, ...
]:
    ok, out = eth_call(env, data, sender, to)
    assert not ok, "expected a revert"
    decoded = decode_error(out)
    assert decoded is not None and decoded[0] == name, (decoded, out)
    return decoded[1]


def send(env: Env, data: str, *, pin_time: bool = True) -> dict[str, Any]:
    """Send `data` to the executor as its owner; the block keeps the latest block's timestamp.

    Pinning the timestamp means no interest accrues between the eth_call (which runs
    at the latest block) and the mined transaction.
    """
    w3 = env.w3
    if pin_time:
        latest = w3.eth.get_block("latest")["timestamp"]
        env.devnet.rpc("evm_setNextBlockTimestamp", latest)
    tx = {"from": env.owner, "to": env.executor.address, "data": data, "gas": hex(TX_GAS)}
    reply = w3.provider.make_request(RPCEndpoint("eth_sendTransaction"), [tx])
    assert "error" not in reply, reply
    return dict(mined_receipt(w3, reply["result"]))


def crash(env: Env) -> None:
    set_price(env.devnet, "WETH", CRASH_PRICE)


def aave_targets(env: Env, count: int) -> list[FlashLeg]:
    """`count` liquidatable Aave WETH/USDC borrowers: half their USDC debt each, sold for USDC."""
    plans = [p for p in seeded_borrowers("aave_v3") if p.kind == "weth-usdc"]
    accounts = aave_accounts(env.w3, env.devnet.info, [p.address for p in plans])
    usdc = env.tokens["USDC"]
    out: list[FlashLeg] = []
    for account in sorted((a for a in accounts if a.liquidatable), key=lambda a: a.debt_base):
        debt = int(env.data_provider.functions.getUserReserveData(
            usdc.address, Web3.to_checksum_address(account.address)).call()[2])
        if debt < 1_000 * 10**6:  # skip dust: profit must clearly beat rounding
            continue
        out.append(aave_flash_leg(
            collateral=env.tokens["WETH"].address, borrower=account.address,
            debt_to_cover=debt // 2, swap_pairs=[pair(env, "WETH", "USDC")],
        ))
        if len(out) == count:
            return out
    pytest.fail(f"only {len(out)} liquidatable Aave WETH/USDC borrowers, {count} wanted")


def morpho_targets(env: Env, count: int) -> list[FlashLeg]:
    """`count` liquidatable Morpho WETH/USDC borrowers, half their borrow shares each."""
    plans = [p for p in seeded_borrowers("morpho_blue") if p.kind == "weth-usdc"]
    positions = morpho_positions(env.w3, env.devnet.info, [p.address for p in plans])
    out: list[FlashLeg] = []
    for position in sorted(positions, key=lambda p: p.borrowed):
        if position.market != env.market_id or not position.liquidatable:
            continue
        if position.borrowed < 1_000 * 10**6:
            continue
        who = Web3.to_checksum_address(position.address)
        shares = int(env.morpho.functions.position(env.market_id, who).call()[1]) // 2
        # Half the debt, plus a margin for the interest accrued before the liquidation.
        max_repay = position.borrowed // 2 * 101 // 100 + 1
        out.append(morpho_flash_leg(
            market=env.weth_usdc_market, debt=env.tokens["USDC"].address,
            collateral=env.tokens["WETH"].address, borrower=who, repaid_shares=shares,
            max_repay=max_repay, swap_pairs=[pair(env, "WETH", "USDC")],
        ))
        if len(out) == count:
            return out
    pytest.fail(f"only {len(out)} liquidatable Morpho WETH/USDC borrowers, {count} wanted")


def plan_for(
    env: Env, liquidations: Sequence[FlashLeg], funding: Funding = Funding.MORPHO_FLASH_LOAN,
    **extra: Any,
) -> FlashPlan:
    return FlashPlan(
        funding=funding, debt_token=env.tokens["USDC"].address,
        flash_amount=sum(liq.max_repay for liq in liquidations),
        liquidations=tuple(liquidations), **extra,
    )


def assert_realized(env: Env, plan: FlashPlan) -> tuple[int, int]:
    """Simulate, send, and check the owner got exactly the simulated profit; (profit, gas)."""
    usdc_before = balance(env, "USDC", env.owner)
    simulated = simulate(env, plan)
    assert simulated > 0
    receipt = send(env, encode_execute(plan))
    assert receipt["status"] == 1
    assert balance(env, "USDC", env.owner) - usdc_before == simulated
    (event,) = env.executor.events.Executed().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["profit"] == simulated
    assert event["args"]["liquidations"] == len(plan.liquidations)
    # Nothing stays behind in the executor, and no allowance survives.
    assert balance(env, "USDC", env.executor.address) == 0
    assert balance(env, "WETH", env.executor.address) == 0
    for spender in (env.pool.address, env.morpho.address):
        for symbol in ("USDC", "WETH"):
            allowance = env.tokens[symbol].functions.allowance(env.executor.address, spender)
            assert allowance.call() == 0
    return simulated, int(receipt["gasUsed"])


# ---------------------------------------------------------------------------- tests


def test_build_is_reproducible(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A compile into an empty cache (so solcjs really runs) gives the bytes that were deployed.
    monkeypatch.setenv("KEEPER_CACHE_DIR", str(tmp_path))
    fresh = deploy_executor.compile_executor()
    assert list(tmp_path.glob("solc/*.json")), "the compile did not run in the empty cache"
    assert deploy_executor.deployed_creation_code(env.w3, env.deployed.tx_hash) == bytes.fromhex(
        fresh.bytecode
    )
    assert fresh.abi == deploy_executor.compile_flash_liquidator().abi
    assert env.executor.functions.owner().call() == env.owner
    assert env.executor.functions.AAVE_POOL().call() == env.pool.address
    assert env.executor.functions.MORPHO().call() == env.morpho.address


def test_capital_free_aave_and_morpho_liquidations_profit_to_the_wei(env: Env) -> None:
    crash(env)
    assert balance(env, "USDC", env.owner) == 0 == balance(env, "USDC", env.executor.address)
    (aave_liq,) = aave_targets(env, 1)
    (morpho_liq,) = morpho_targets(env, 1)
    aave_profit, aave_gas = assert_realized(env, plan_for(env, [aave_liq]))
    morpho_profit, morpho_gas = assert_realized(env, plan_for(env, [morpho_liq]))
    print(f"\nMorpho-flash-funded: Aave liquidation profit {aave_profit / 1e6:.2f} USDC, "
          f"gas {aave_gas}; Morpho liquidation profit {morpho_profit / 1e6:.2f} USDC, "
          f"gas {morpho_gas}")


def test_aave_flash_loan_uniswap_flash_swap_and_own_balance_funding(env: Env) -> None:
    crash(env)
    targets = aave_targets(env, 3)
    usdc = env.tokens["USDC"]
    # Aave flash loans are off on the devnet's reserves: turn them on with a 0.09 % premium.
    configurator = contract(
        env.devnet, aave("protocol/pool/PoolConfigurator.sol/PoolConfigurator.json"),
        env.devnet.info.aave_v3.pool_configurator,
    )
    admin = deployer(env.devnet)
    admin.send(configurator.functions.setReserveFlashLoaning(usdc.address, True))
    admin.send(configurator.functions.updateFlashloanPremiumTotal(9))
    assert env.pool.functions.FLASHLOAN_PREMIUM_TOTAL().call() == 9

    # The same liquidation would pay the fee out of its profit: compare with a free loan.
    aave_plan = plan_for(env, [targets[0]], Funding.AAVE_FLASH_LOAN)
    free = simulate(env, plan_for(env, [targets[0]]))
    paid, _ = assert_realized(env, aave_plan)
    assert free - paid == flash.flash_fee(aave_plan, aave_premium_bps=9) > 0

    swap_plan = plan_for(env, [targets[1]], Funding.UNISWAP_V2_FLASH_SWAP,
                         flash_pair=pair(env, "USDC", "DAI"))
    free = simulate(env, plan_for(env, [targets[1]]))
    paid, _ = assert_realized(env, swap_plan)
    assert free - paid == flash.flash_fee(swap_plan) > 0

    # Own balance: working capital in the contract stays there; only the surplus moves.
    own_plan = plan_for(env, [targets[2]], Funding.OWN_BALANCE)
    capital = own_plan.flash_amount
    admin.send(usdc.functions.mint(env.executor.address, capital))
    before = balance(env, "USDC", env.owner)
    profit = simulate(env, own_plan)
    assert send(env, encode_execute(own_plan))["status"] == 1
    assert balance(env, "USDC", env.owner) - before == profit > 0
    assert balance(env, "USDC", env.executor.address) == capital


def test_profit_can_be_taken_in_another_token(env: Env) -> None:
    crash(env)
    (liq,) = aave_targets(env, 1)
    plan = plan_for(env, [liq], profit_pairs=(pair(env, "USDC", "WETH"),))
    profit = simulate(env, plan)
    assert send(env, encode_execute(plan))["status"] == 1
    assert balance(env, "WETH", env.owner) == profit > 0
    assert balance(env, "USDC", env.owner) == 0


def test_only_the_owner_may_execute_sweep_or_hand_over(env: Env) -> None:
    crash(env)
    (liq,) = aave_targets(env, 1)
    data = encode_execute(plan_for(env, [liq]))
    expect_error(env, data, env.stranger, "NotOwner")
    functions = env.executor.functions
    usdc = env.tokens["USDC"].address
    for call in (functions.sweep(usdc, env.stranger, 1), functions.transferOwnership(env.stranger)):
        expect_error(env, call._encode_transaction_data(), env.stranger, "NotOwner")
    expect_error(env, functions.acceptOwnership()._encode_transaction_data(), env.stranger,
                 "NotPendingOwner")

    # Two-step rotation: the old owner loses execute at once the new one accepts.
    admin = deployer(env.devnet)
    admin.send(functions.transferOwnership(env.stranger), sender=env.owner)
    assert functions.owner().call() == env.owner
    admin.send(functions.acceptOwnership(), sender=env.stranger)
    assert functions.owner().call() == env.stranger
    expect_error(env, data, env.owner, "NotOwner")
    assert eth_call(env, data, env.stranger)[0]

    # Sweep: stray tokens leave only at the owner's word.
    admin.send(env.tokens["DAI"].functions.mint(env.executor.address, 5))
    admin.send(functions.sweep(env.tokens["DAI"].address, env.owner, 5), sender=env.stranger)
    assert balance(env, "DAI", env.owner) == 5


def test_flash_callbacks_reject_anyone_but_the_lender_in_its_own_call(env: Env) -> None:
    crash(env)
    (liq,) = aave_targets(env, 1)
    plan = plan_for(env, [liq])
    payload = bytes.fromhex(encode_execute(plan)[10:])
    functions = env.executor.functions
    executor = env.executor.address
    usdc = env.tokens["USDC"].address
    callbacks = {
        "morpho": functions.onMorphoFlashLoan(plan.flash_amount, payload),
        "aave": functions.executeOperation(usdc, plan.flash_amount, 0, executor, payload),
        "uniswap": functions.uniswapV2Call(executor, plan.flash_amount, 0, payload),
    }
    # Anyone, the owner included, calling a callback directly.
    for who in (env.stranger, env.owner):
        for call in callbacks.values():
            expect_error(env, call._encode_transaction_data(), who, "UnexpectedCallback")
    # The lenders themselves, while no flash loan of ours is in progress.
    lenders = {"morpho": env.morpho.address, "aave": env.pool.address,
               "uniswap": pair(env, "USDC", "DAI")}
    for name, call in callbacks.items():
        expect_error(env, call._encode_transaction_data(), lenders[name], "UnexpectedCallback")
    # Aave's and Uniswap's callbacks also want the loan to be ours.
    foreign = {
        "aave": functions.executeOperation(usdc, 1, 0, env.stranger, payload),
        "uniswap": functions.uniswapV2Call(env.stranger, 1, 0, payload),
    }
    for name, call in foreign.items():
        expect_error(env, call._encode_transaction_data(), lenders[name], "BadInitiator")
    # Nothing moved: a state-changing attempt by a stranger reverts on chain too.
    tx = {"from": env.stranger, "to": executor, "gas": hex(TX_GAS),
          "data": callbacks["morpho"]._encode_transaction_data()}
    reply = env.w3.provider.make_request(RPCEndpoint("eth_sendTransaction"), [tx])
    assert mined_receipt(env.w3, reply["result"])["status"] == 0


def test_min_profit_above_what_is_achievable_reverts(env: Env) -> None:
    crash(env)
    (liq,) = morpho_targets(env, 1)
    profit = simulate(env, plan_for(env, [liq]))
    exact = plan_for(env, [liq], min_profit=profit)
    assert simulate(env, exact) == profit
    too_high = encode_execute(plan_for(env, [liq], min_profit=profit + 1))
    assert expect_error(env, too_high, env.owner, "ProfitTooLow") == (profit, profit + 1)
    receipt = send(env, too_high)
    assert receipt["status"] == 0
    assert balance(env, "USDC", env.owner) == 0


def test_min_out_violated_by_a_moved_pool_reverts(env: Env) -> None:
    crash(env)
    (liq,) = aave_targets(env, 1)
    # The revert of an impossible min-out reports what the swap gives now: ask for exactly that.
    impossible = replace(liq, min_out=2**256 - 1)
    index, amount_out, _ = expect_error(
        env, encode_execute(plan_for(env, [impossible])), env.owner, "MinOut"
    )
    assert index == 0 and amount_out > 0
    tight = replace(liq, min_out=amount_out)
    plan = plan_for(env, [tight])
    assert simulate(env, plan) > 0

    # Someone sells WETH into the pool between our simulation and our transaction.
    weth, usdc = env.tokens["WETH"], env.tokens["USDC"]
    pool_pair = contract(env.devnet, pair_artifact(), pair(env, "WETH", "USDC"))
    admin = deployer(env.devnet)
    sold = 100 * 10**18
    admin.send(weth.functions.mint(pool_pair.address, sold))
    reserve0, reserve1, _ = pool_pair.functions.getReserves().call()
    weth_is_0 = pool_pair.functions.token0().call() == weth.address
    r_in, r_out = (reserve0, reserve1) if weth_is_0 else (reserve1, reserve0)
    got = sold * 997 * r_out // (r_in * 1000 + sold * 997)
    admin.send(pool_pair.functions.swap(0 if weth_is_0 else got, got if weth_is_0 else 0,
                                        env.stranger, b""))
    assert balance(env, "USDC", env.stranger) == got > 0
    assert usdc.functions.balanceOf(env.owner).call() == 0

    receipt = send(env, encode_execute(plan))
    assert receipt["status"] == 0
    index, now_out, wanted = expect_error(env, encode_execute(plan), env.owner, "MinOut")
    assert (index, wanted) == (0, amount_out) and now_out < amount_out
    assert balance(env, "USDC", env.owner) == 0


def test_batch_of_five_costs_less_gas_than_five_transactions(env: Env) -> None:
    crash(env)
    batch = [*aave_targets(env, 3), *morpho_targets(env, 2)]

    snapshot = env.devnet.rpc("evm_snapshot")
    single_gas: list[int] = []
    single_profit = 0
    for liq in batch:
        profit, gas = assert_realized(env, plan_for(env, [liq]))
        single_gas.append(gas)
        single_profit += profit
    assert env.devnet.rpc("evm_revert", snapshot) is True

    batch_profit, batch_gas = assert_realized(env, plan_for(env, batch))
    print(f"\ngas: 5 liquidations in one transaction {batch_gas:,}; in five transactions "
          f"{sum(single_gas):,} ({' + '.join(f'{g:,}' for g in single_gas)}); "
          f"saved {sum(single_gas) - batch_gas:,}")
    assert batch_gas < sum(single_gas)
    assert batch_profit > 0 and single_profit > 0


def _cli_config(devnet: Devnet, tmp_path: Path, chain_id: int | None = None) -> Path:
    info = devnet.info
    path = tmp_path / "keeper.toml"
    path.write_text(
        f'[chain]\nchain_id = {chain_id or info.chain_id}\nhttp_urls = ["{info.rpc_url}"]\n\n'
        '[execution]\nmode = "dry-run"\n\n'
        f'[strategies.aave_v3]\naddresses_provider = "{info.aave_v3.addresses_provider}"\n\n'
        f'[strategies.morpho_blue]\nmorpho = "{info.morpho_blue.morpho}"\n'
    )
    return path


def test_deploy_executor_command(
    devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("KEEPER_") and name.upper() not in KEEP_ENV:
            monkeypatch.delenv(name)
    secrets.clear_secrets()
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", owner_account().key.hex())
    result = CliRunner().invoke(main, ["--config", str(_cli_config(devnet, tmp_path)),
                                       "deploy-executor"])
    assert result.exit_code == 0, result.output
    hint = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r'\[execution\] flash_executor = "(0x[0-9a-fA-F]{40})"', hint)
    assert match, hint
    executor = contract(devnet, deploy_executor.compile_flash_liquidator(), match.group(1))
    assert executor.functions.owner().call() == owner_account().address
    assert executor.functions.AAVE_POOL().call() == devnet.info.aave_v3.pool
    assert executor.functions.MORPHO().call() == devnet.info.morpho_blue.morpho

    wrong_chain = _cli_config(devnet, tmp_path, chain_id=1)
    result = CliRunner().invoke(main, ["--config", str(wrong_chain), "deploy-executor"])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("keeper: error:") and "chain id" in line

    monkeypatch.delenv("KEEPER_ACCOUNT__PRIVATE_KEY")
    result = CliRunner().invoke(main, ["--config", str(_cli_config(devnet, tmp_path)),
                                       "deploy-executor"])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "needs an account" in line
    secrets.clear_secrets()


# ---------------------------------------------------------------------------- Uniswap V3 exits


def v3_pool(env: Env, key: str) -> str:
    info = env.devnet.info.uniswap_v3
    assert info is not None
    return info.pools[key]


def seized_and_sold(env: Env, receipt: dict[str, Any], pool: str) -> tuple[int, int]:
    """(WETH paid into, token received from) the V3 pool, from the receipt's Transfer logs."""
    transfer = "0x" + Web3.keccak(text="Transfer(address,address,uint256)").hex().removeprefix("0x")
    pool_topic = "0x" + "00" * 12 + pool.lower()[2:]
    paid = received = 0
    for log in receipt["logs"]:
        topics = ["0x" + bytes(t).hex() for t in log["topics"]]
        if topics[0] != transfer:
            continue
        amount = int(bytes(log["data"]).hex(), 16)
        if topics[2] == pool_topic:
            paid += amount
        if topics[1] == pool_topic:
            received += amount
    return paid, received


def v3_book(env: Env, pools: Sequence[str]) -> V3Book:
    async def load() -> V3Book:
        rpc = await HttpRpc.open(env.devnet.info.rpc_url)
        try:
            return await V3Book.load(rpc, pools, env.w3.eth.block_number)
        finally:
            await rpc.aclose()
    return asyncio.run(load())


def test_exits_through_uniswap_v3_pools_and_mixed_routes(env: Env) -> None:
    """A V3 pool alone, V3 then V2, and V2 then V3: profits to the wei, the V3 pool paying
    exactly what the mirrored quote of what it was sold says, nothing left behind."""
    crash(env)
    targets = aave_targets(env, 3)
    weth_usdc = v3_pool(env, "WETH/USDC/500")
    routes = [
        [weth_usdc],
        [v3_pool(env, "WETH/DAI/3000"), pair(env, "USDC", "DAI")],
        [pair(env, "WETH", "DAI"), v3_pool(env, "USDC/DAI/500")],
    ]
    for target, route in zip(targets, routes, strict=True):
        plan = plan_for(env, [replace(target, swap_pairs=tuple(route))])
        book = v3_book(env, [weth_usdc])
        before = balance(env, "USDC", env.owner)
        simulated = simulate(env, plan)
        receipt = send(env, encode_execute(plan))
        assert receipt["status"] == 1
        assert balance(env, "USDC", env.owner) - before == simulated > 0
        for symbol in ("USDC", "WETH", "DAI"):
            assert balance(env, symbol, env.executor.address) == 0
        if route == [weth_usdc]:
            paid, received = seized_and_sold(env, receipt, weth_usdc)
            leg = book.quote(env.tokens["WETH"].address, env.tokens["USDC"].address, paid)
            assert leg is not None and leg.amount_out == received > 0
        print(f"\nexit along {route}: gas {receipt['gasUsed']}")


def test_v3_swap_callback_pays_only_the_pool_inside_its_own_swap(env: Env) -> None:
    crash(env)
    weth = env.tokens["WETH"].address
    data = encode(["address", "uint256"], [weth, 10**18])
    call = env.executor.functions.uniswapV3SwapCallback(10**18, -1, data)
    pool = v3_pool(env, "WETH/USDC/500")
    # Anyone, the owner and the pool itself included, while no swap of ours is under way.
    for who in (env.stranger, env.owner, pool):
        expect_error(env, call._encode_transaction_data(), who, "UnexpectedCallback")


# ---------------------------------------------------------------------------- Uniswap V3 flash


def test_uniswap_v3_flash_funds_a_plan_for_its_fee_tier(env: Env) -> None:
    """A V3 pool's `flash` lends the debt token for its fee tier (rounded up, as the pool
    charges): the profit is the free loan's less exactly that fee, and the pool's balance
    grows by it. The lending pool is locked: a plan selling through it is refused."""
    crash(env)
    (target,) = aave_targets(env, 1)  # sells WETH for USDC on the V2 pair
    lender = v3_pool(env, "USDC/DAI/500")
    plan = plan_for(env, [target], Funding.UNISWAP_V3_FLASH, flash_pair=lender)
    free = simulate(env, plan_for(env, [target]))
    pool_before = balance(env, "USDC", lender)
    paid, _ = assert_realized(env, plan)
    fee = flash.flash_fee(plan, v3_fee_pips=500)
    assert fee == -(-plan.flash_amount * 500 // 10**6) > 0
    assert free - paid == fee
    assert balance(env, "USDC", lender) - pool_before == fee
    with pytest.raises(flash.FlashPlanError, match="locked"):
        encode_execute(replace(plan, liquidations=(replace(target, swap_pairs=(lender,)),)))


def test_v3_flash_callback_runs_only_for_the_lending_pool_inside_our_call(env: Env) -> None:
    crash(env)
    (liq,) = aave_targets(env, 1)
    lender = v3_pool(env, "USDC/DAI/500")
    plan = plan_for(env, [liq], Funding.UNISWAP_V3_FLASH, flash_pair=lender)
    payload = bytes.fromhex(encode_execute(plan)[10:])
    call = env.executor.functions.uniswapV3FlashCallback(0, 1, payload)
    # Anyone, the owner and the lending pool itself included, outside our own flash call.
    for who in (env.stranger, env.owner, lender, v3_pool(env, "WETH/USDC/500")):
        expect_error(env, call._encode_transaction_data(), who, "UnexpectedCallback")
    # A plan naming a pool that holds no debt token is refused before any loan.
    wrong = replace(plan, flash_pair=v3_pool(env, "WBTC/WETH/500"))
    expect_error(env, encode_execute(wrong), env.owner, "BadPlan")


def test_the_deployed_runtime_fits_the_contract_size_limit(env: Env) -> None:
    """EIP-170: a contract's runtime code may be at most 24,576 bytes."""
    runtime = env.w3.eth.get_code(env.executor.address)
    print(f"\nFlashLiquidator runtime: {len(runtime):,} bytes of 24,576")
    assert 0 < len(runtime) <= 24_576

"""PARITY: the local health factor (market.py + math.py) equals Pool.getUserAccountData.

For every seeded Aave V3 account, at one block, the locally computed account data must equal
the contract's view at the same block, bit for bit: at the devnet's head, after time jumps of
an hour, 30 days and 365 days, after a price drop, a partial repay, a withdrawal and a
liquidation made through the real contracts.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from eth_abi.abi import decode
from eth_typing import ChecksumAddress
from eth_utils.abi import function_signature_to_4byte_selector
from web3 import Web3

from keeper.chain.http import HttpRpc
from keeper.devnet.artifacts import aave
from keeper.devnet.borrowers import BorrowerPlan
from keeper.devnet.deployer import Deployer, rpc
from keeper.devnet.tokens import post_price
from strategies.aave_v3 import market as aave_market
from strategies.aave_v3.math import UINT256_MAX, calculate_available_borrows
from tests.conftest import Devnet, seeded_borrowers
from tests.integration.helpers import MAX_UINT, SPECS, WAD, contract, liquidator, tokens

PLANS = seeded_borrowers("aave_v3")
USERS = [p.address for p in PLANS]
ACCOUNT_DATA = "0x" + function_signature_to_4byte_selector("getUserAccountData(address)").hex()
HOUR, DAY = 3600, 86_400


def _account_data_call(pool: str, user: str, block: int) -> tuple[str, list[object]]:
    data = ACCOUNT_DATA + "00" * 12 + user.lower().removeprefix("0x")
    return ("eth_call", [{"to": pool, "data": data}, hex(block)])


async def check_parity(rpc: HttpRpc, devnet: Devnet, block: int) -> list[int]:
    """Compare every seeded account at `block`; returns the health factors (wad)."""
    head = await rpc.call("eth_getBlockByNumber", [hex(block), False])
    timestamp = int(head["timestamp"], 16)
    market = await aave_market.discover(rpc, devnet.info.aave_v3.addresses_provider, block)
    sent = rpc.requests_sent
    accounts = await aave_market.read_accounts(rpc, market, USERS, block)
    assert rpc.requests_sent - sent <= -(-len(USERS) * 27 // rpc.max_batch)  # batched
    answers = await rpc.batch([_account_data_call(market.pool, u, block) for u in USERS])
    assert any(a.emode_category == 1 for a in accounts.values())  # e-mode users
    assert any(len(a.config.collateral_indices) > 1 for a in accounts.values())  # multi
    factors = []
    for user, answer in zip(USERS, answers, strict=True):
        chain = decode(["uint256"] * 6, bytes.fromhex(answer.removeprefix("0x")))
        local = aave_market.account_data(market, accounts[user], timestamp)
        available = calculate_available_borrows(
            local.total_collateral_base, local.total_debt_base, local.avg_ltv
        )
        mine = (
            local.total_collateral_base, local.total_debt_base, available,
            local.avg_liquidation_threshold, local.avg_ltv, local.health_factor,
        )
        assert mine == tuple(chain), f"{user} at block {block}: local {mine} != chain {chain}"
        factors.append(local.health_factor)
    return factors


def mine(devnet: Devnet, seconds: int) -> int:
    devnet.rpc("evm_increaseTime", seconds)
    devnet.rpc("evm_mine")
    return devnet.w3.eth.block_number


def test_the_population_has_every_kind() -> None:
    kinds = {p.kind for p in PLANS}
    assert {"emode-stable", "multi", "weth-usdc", "short-eth"} <= kinds
    assert len(PLANS) >= 200  # the issue asks for parity on at least 200 accounts


async def test_parity_now_and_after_time_jumps(devnet: Devnet) -> None:
    compared = 0
    async with HttpRpc(devnet.info.rpc_url) as rpc:
        blocks: list[int] = [devnet.w3.eth.block_number]
        for seconds in (HOUR, 30 * DAY, 365 * DAY):
            blocks.append(mine(devnet, seconds))
        history = []
        for block in blocks:
            factors = await check_parity(rpc, devnet, block)
            assert all(0 < f < UINT256_MAX for f in factors)  # every account borrows
            history.append(factors)
            compared += len(factors)
        first = history[0]
        # A year of interest lowers every health factor: the indexes really moved.
        assert all(late < early for early, late in zip(first, factors, strict=True))
        # Reading an old block still agrees (the pinned block, not the head, is read).
        compared += len(await check_parity(rpc, devnet, blocks[1]))
    assert compared == 5 * len(PLANS)


def _plan(kind: str, exclude: Sequence[str] = ()) -> BorrowerPlan:
    return next(p for p in PLANS if p.kind == kind and p.address not in exclude)


async def test_parity_after_repay_withdraw_and_liquidation(devnet: Devnet) -> None:
    w3 = devnet.w3
    erc20 = tokens(devnet)
    pool = contract(devnet, aave("protocol/pool/Pool.sol/Pool.json"), devnet.info.aave_v3.pool)
    send = Deployer(w3, Web3.to_checksum_address(devnet.info.accounts.deployer)).send
    async with HttpRpc(devnet.info.rpc_url) as client:
        # A partial repay (half of an e-mode account's USDC debt, from the USDC it borrowed).
        emode = _plan("emode-stable")
        usdc, dai, weth = erc20["USDC"], erc20["DAI"], erc20["WETH"]
        rpc(w3, "anvil_impersonateAccount", emode.address)
        send(usdc.functions.approve(pool.address, MAX_UINT), sender=emode.address)
        debt = pool.functions.getUserAccountData(emode.address).call()[1]
        repay = debt // 2 // 10**2  # base currency has 8 decimals, USDC 6
        send(pool.functions.repay(usdc.address, repay, 2, emode.address), sender=emode.address)
        # A withdrawal: 5% of a multi-collateral account's WETH, keeping it healthy.
        multi = _plan("multi")
        rpc(w3, "anvil_impersonateAccount", multi.address)
        a_weth = pool.functions.getReserveData(weth.address).call()[8]
        held = w3.eth.contract(address=a_weth, abi=aave(
            "protocol/tokenization/AToken.sol/AToken.json").abi).functions.balanceOf(
            multi.address).call()
        send(pool.functions.withdraw(weth.address, held // 20, multi.address),
             sender=multi.address)
        # A stable-rate borrow: 10 DAI at the stable rate by the healthiest weth-usdc account.
        healthy = max((p for p in PLANS if p.kind == "weth-usdc"), key=lambda p: p.target_health)
        configurator = contract(
            devnet, aave("protocol/pool/PoolConfigurator.sol/PoolConfigurator.json"),
            devnet.info.aave_v3.pool_configurator,
        )
        send(configurator.functions.setReserveStableRateBorrowing(dai.address, True))
        rpc(w3, "anvil_impersonateAccount", healthy.address)
        send(pool.functions.borrow(dai.address, 10 * WAD, 1, 0, healthy.address),
             sender=healthy.address)
        await check_parity(client, devnet, w3.eth.block_number)
        stable = await aave_market.read_accounts(
            client, await aave_market.discover(
                client, devnet.info.aave_v3.addresses_provider, w3.eth.block_number),
            [healthy.address], w3.eth.block_number)
        assert any(b.stable_principal > 0 for b in stable[healthy.address].balances.values())
        await check_parity(client, devnet, mine(devnet, 7 * DAY))

        # WETH falls 12%: the closest weth-usdc accounts become liquidatable.
        price = SPECS["WETH"].usd_price * Decimal("0.88")
        post_price(w3, devnet.info.feeds["WETH"], price, devnet.info.accounts.deployer)
        factors = dict(zip(USERS, await check_parity(client, devnet, w3.eth.block_number),
                           strict=True))
        weak = [p for p in PLANS if p.kind == "weth-usdc" and factors[p.address] < WAD]
        assert weak, "the price drop made no weth-usdc account liquidatable"
        victim: ChecksumAddress = weak[0].address
        keeper = liquidator(devnet)
        send(usdc.functions.approve(pool.address, MAX_UINT), sender=keeper)
        send(dai.functions.approve(pool.address, MAX_UINT), sender=keeper)
        send(pool.functions.liquidationCall(weth.address, usdc.address, victim, MAX_UINT, False),
             sender=keeper)
        after = dict(zip(USERS, await check_parity(client, devnet, w3.eth.block_number),
                         strict=True))
        assert after[victim] > factors[victim]
        # ... and a month later, with the moved price and the changed positions.
        await check_parity(client, devnet, mine(devnet, 30 * DAY))


async def test_parity_with_an_emode_price_source(devnet: Devnet) -> None:
    """Category 1 priced by its own source (the WBTC feed): e-mode assets use that price."""
    w3 = devnet.w3
    send = Deployer(w3, Web3.to_checksum_address(devnet.info.accounts.deployer)).send
    info = devnet.info.aave_v3
    source = Web3.to_checksum_address("0x" + "5e" * 20)
    oracle = contract(devnet, aave("misc/AaveOracle.sol/AaveOracle.json"), info.oracle)
    send(oracle.functions.setAssetSources([source], [devnet.info.feeds["WBTC"]]))
    configurator = contract(
        devnet, aave("protocol/pool/PoolConfigurator.sol/PoolConfigurator.json"),
        info.pool_configurator,
    )
    send(configurator.functions.setEModeCategory(1, 9_300, 9_500, 10_100, source, "Stablecoins"))
    async with HttpRpc(devnet.info.rpc_url) as client:
        block = w3.eth.block_number
        market = await aave_market.discover(client, info.addresses_provider, block)
        assert market.emode_categories[1].price == oracle.functions.getAssetPrice(
            Web3.to_checksum_address(devnet.info.tokens["WBTC"].address)).call()
        await check_parity(client, devnet, block)
        await check_parity(client, devnet, mine(devnet, 30 * DAY))

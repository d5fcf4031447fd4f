"""The real Aave V3 from npm on the session devnet: a liquidation, e-mode, and the configuration.

Every test runs inside the `devnet` fixture's snapshot, which is reverted
afterwards, so a price drop in one test never leaks into another. The test's
own borrowers are fresh anvil accounts, apart from the seeded population.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from keeper.devnet.aave import DEFAULT_RESERVES, STABLECOINS_EMODE, deploy_aave_v3
from keeper.devnet.artifacts import aave
from keeper.devnet.deploy import TREASURY_INDEX
from keeper.devnet.deployer import Deployer
from keeper.devnet.info import AaveV3Info
from keeper.devnet.tokens import mintable_erc20, to_feed_answer
from keeper.errors import DevnetError
from tests.conftest import Devnet
from tests.integration.helpers import (
    MAX_UINT,
    SPECS,
    WAD,
    contract,
    deployer,
    feeds,
    fresh_accounts,
    liquidator,
    set_price,
    tokens,
    units,
)

VARIABLE_RATE = 2


@dataclass
class Env:
    devnet: Devnet
    w3: Web3
    deployer: Deployer
    tokens: dict[str, Contract]
    feeds: dict[str, Contract]
    info: AaveV3Info
    pool: Contract
    oracle: Contract
    data_provider: Contract
    addresses_provider: Contract
    acl_manager: Contract
    liquidator: ChecksumAddress
    treasury: ChecksumAddress
    borrower: ChecksumAddress
    emode_user: ChecksumAddress


@pytest.fixture
def env(devnet: Devnet) -> Iterator[Env]:
    info = devnet.info.aave_v3

    def at(artifact: str, address: str) -> Contract:
        return contract(devnet, aave(artifact), address)

    borrower, emode_user = fresh_accounts(devnet, 2)
    yield Env(
        devnet=devnet,
        w3=devnet.w3,
        deployer=deployer(devnet),
        tokens=tokens(devnet),
        feeds=feeds(devnet),
        info=info,
        pool=at("protocol/pool/Pool.sol/Pool.json", info.pool),
        oracle=at("misc/AaveOracle.sol/AaveOracle.json", info.oracle),
        data_provider=at(
            "misc/AaveProtocolDataProvider.sol/AaveProtocolDataProvider.json", info.data_provider
        ),
        addresses_provider=at(
            "protocol/configuration/PoolAddressesProvider.sol/PoolAddressesProvider.json",
            info.addresses_provider,
        ),
        acl_manager=at("protocol/configuration/ACLManager.sol/ACLManager.json", info.acl_manager),
        liquidator=liquidator(devnet),
        treasury=devnet.w3.eth.accounts[TREASURY_INDEX],
        borrower=borrower,
        emode_user=emode_user,
    )


def supply(env: Env, who: ChecksumAddress, symbol: str, amount: int) -> None:
    token, pool = env.tokens[symbol], env.pool
    env.deployer.send(token.functions.mint(who, amount))
    env.deployer.send(token.functions.approve(pool.address, MAX_UINT), sender=who)
    env.deployer.send(pool.functions.supply(token.address, amount, who, 0), sender=who)


def health_factor(env: Env, who: ChecksumAddress) -> int:
    return int(env.pool.functions.getUserAccountData(who).call()[5])


def variable_debt(env: Env, symbol: str, who: ChecksumAddress) -> int:
    data = env.data_provider.functions.getUserReserveData(env.tokens[symbol].address, who)
    return int(data.call()[2])  # currentVariableDebt


def test_deploy_rejects_token_without_reserve_parameters(env: Env) -> None:
    extra = {**env.tokens, "PEPE": env.tokens["DAI"]}
    with pytest.raises(DevnetError, match="PEPE"):
        deploy_aave_v3(env.deployer, extra, env.feeds, treasury=env.treasury)


def test_liquidation_call_after_feed_drop(env: Env) -> None:
    pool, weth, usdc = env.pool, env.tokens["WETH"], env.tokens["USDC"]
    supply(env, env.borrower, "WETH", units("WETH", 10))  # $20,000 at $2,000
    # 79% of the collateral value: just under the 80% LTV.
    borrow = units("USDC", 15_800)
    env.deployer.send(
        pool.functions.borrow(usdc.address, borrow, VARIABLE_RATE, 0, env.borrower),
        sender=env.borrower,
    )
    assert health_factor(env, env.borrower) > WAD

    # $2,000 -> $1,900: HF = 19,000 * 0.825 / 15,800 ~ 0.99.
    set_price(env.devnet, "WETH", Decimal(1900))
    hf_before = health_factor(env, env.borrower)
    assert hf_before < WAD

    liquidator = env.liquidator
    debt_to_cover = units("USDC", 7_900)  # half the debt: the close factor above HF 0.95
    env.deployer.send(usdc.functions.approve(pool.address, MAX_UINT), sender=liquidator)
    a_weth_address = pool.functions.getReserveData(weth.address).call()[8]
    a_weth = contract(env.devnet, mintable_erc20(), a_weth_address)  # an ERC-20 like any other
    weth_before = weth.functions.balanceOf(liquidator).call()
    usdc_before = usdc.functions.balanceOf(liquidator).call()
    debt_before = variable_debt(env, "USDC", env.borrower)
    treasury_before = a_weth.functions.balanceOf(env.treasury).call()
    # The population keeps USDC utilised, so a second of interest is several units of debt:
    # mine the liquidation at the timestamp `debt_before` was read at (the latest block's).
    latest = env.w3.eth.get_block("latest")["timestamp"]
    env.devnet.rpc("evm_setNextBlockTimestamp", latest)

    receipt = env.deployer.send(
        pool.functions.liquidationCall(
            weth.address, usdc.address, env.borrower, debt_to_cover, False
        ),
        sender=liquidator,
    )

    # The receipt also holds token and reserve events; only LiquidationCall is wanted.
    (event,) = pool.events.LiquidationCall().process_receipt(receipt, errors=DISCARD)
    args = event["args"]
    assert args["collateralAsset"] == weth.address
    assert args["debtAsset"] == usdc.address
    assert args["user"] == env.borrower
    assert args["liquidator"] == liquidator
    assert args["debtToCover"] == debt_to_cover
    assert args["receiveAToken"] is False
    seized = args["liquidatedCollateralAmount"]
    assert weth.functions.balanceOf(liquidator).call() - weth_before == seized
    assert usdc_before - usdc.functions.balanceOf(liquidator).call() == debt_to_cover

    # Value seized vs value repaid, both in the oracle's 8-decimal USD.
    oracle = env.oracle.functions
    seized_usd = seized * oracle.getAssetPrice(weth.address).call() // 10**18
    repaid_usd = debt_to_cover * oracle.getAssetPrice(usdc.address).call() // 10**6
    bonus = Decimal(seized_usd) / Decimal(repaid_usd)
    # 5% bonus, of which the 10% protocol fee takes a tenth: the liquidator nets ~4.5%.
    assert Decimal("1.044") < bonus < Decimal("1.046")
    assert a_weth.functions.balanceOf(env.treasury).call() > treasury_before

    assert variable_debt(env, "USDC", env.borrower) <= debt_before - debt_to_cover + 1
    assert health_factor(env, env.borrower) > hf_before


def test_liquidation_reverts_while_healthy(env: Env) -> None:
    pool, weth, usdc = env.pool, env.tokens["WETH"], env.tokens["USDC"]
    supply(env, env.borrower, "WETH", units("WETH", 10))
    env.deployer.send(
        pool.functions.borrow(usdc.address, units("USDC", 10_000), VARIABLE_RATE, 0, env.borrower),
        sender=env.borrower,
    )
    with pytest.raises(ContractLogicError, match="45"):  # HEALTH_FACTOR_NOT_BELOW_THRESHOLD
        pool.functions.liquidationCall(
            weth.address, usdc.address, env.borrower, units("USDC", 1_000), False
        ).call({"from": env.liquidator})


def test_emode_lifts_borrowing_power_to_93_percent(env: Env) -> None:
    pool, usdc, user = env.pool, env.tokens["USDC"], env.emode_user
    supply(env, user, "DAI", units("DAI", 10_000))
    borrow = pool.functions.borrow(usdc.address, units("USDC", 9_200), VARIABLE_RATE, 0, user)

    # Outside e-mode DAI's 75% LTV caps the loan at $7,500.
    with pytest.raises(ContractLogicError, match="36"):  # COLLATERAL_CANNOT_COVER_NEW_BORROW
        borrow.call({"from": user})

    env.deployer.send(pool.functions.setUserEMode(STABLECOINS_EMODE.id), sender=user)
    assert pool.functions.getUserEMode(user).call() == STABLECOINS_EMODE.id
    account = pool.functions.getUserAccountData(user).call()
    assert account[3] == STABLECOINS_EMODE.liquidation_threshold
    assert account[4] == STABLECOINS_EMODE.ltv

    env.deployer.send(borrow, sender=user)
    assert usdc.functions.balanceOf(user).call() == units("USDC", 9_200)
    assert health_factor(env, user) > WAD
    # ...and 93% is the new limit: another $200 would make it 94%.
    with pytest.raises(ContractLogicError, match="36"):
        pool.functions.borrow(usdc.address, units("USDC", 200), VARIABLE_RATE, 0, user).call(
            {"from": user}
        )


def test_reserve_configuration_reads_back(env: Env) -> None:
    data = env.data_provider.functions
    pool = env.pool.functions
    listed = [Web3.to_checksum_address(a) for a in pool.getReservesList().call()]
    assert listed == [env.tokens[s].address for s in DEFAULT_RESERVES]

    for symbol, params in DEFAULT_RESERVES.items():
        asset = env.tokens[symbol].address
        (decimals, ltv, lt, bonus, reserve_factor, collateral, borrowing, stable_borrowing,
         active, frozen) = data.getReserveConfigurationData(asset).call()  # fmt: skip
        assert decimals == SPECS[symbol].decimals
        assert (ltv, lt, bonus) == (
            params.ltv,
            params.liquidation_threshold,
            params.liquidation_bonus,
        )
        assert reserve_factor == params.reserve_factor
        assert (collateral, borrowing, stable_borrowing) == (True, True, False)
        assert (active, frozen, data.getPaused(asset).call()) == (True, False, False)
        assert data.getLiquidationProtocolFee(asset).call() == params.liquidation_protocol_fee
        assert data.getReserveCaps(asset).call() == [0, 0]
        assert data.getReserveEModeCategory(asset).call() == params.emode_category
        expected_price = to_feed_answer(SPECS[symbol].usd_price)
        assert env.oracle.functions.getAssetPrice(asset).call() == expected_price
        a_token_address = data.getReserveTokensAddresses(asset).call()[0]
        a_token = contract(
            env.devnet,
            [{"type": "function", "name": "RESERVE_TREASURY_ADDRESS", "inputs": [],
              "outputs": [{"type": "address", "name": ""}], "stateMutability": "view"}],
            a_token_address,
        )  # fmt: skip
        assert a_token.functions.RESERVE_TREASURY_ADDRESS().call() == env.treasury

    category = pool.getEModeCategoryData(STABLECOINS_EMODE.id).call()
    assert tuple(category) == (
        STABLECOINS_EMODE.ltv,
        STABLECOINS_EMODE.liquidation_threshold,
        STABLECOINS_EMODE.liquidation_bonus,
        "0x0000000000000000000000000000000000000000",
        "Stablecoins",
    )
    provider = env.addresses_provider.functions
    info = env.info
    assert provider.getPool().call() == info.pool
    assert provider.getPoolConfigurator().call() == info.pool_configurator
    assert provider.getPriceOracle().call() == info.oracle
    assert provider.getPoolDataProvider().call() == info.data_provider
    assert provider.getACLManager().call() == info.acl_manager
    acl = env.acl_manager.functions
    admin = env.deployer.sender
    assert acl.isPoolAdmin(admin).call()
    assert acl.isEmergencyAdmin(admin).call()
    assert acl.isRiskAdmin(admin).call()

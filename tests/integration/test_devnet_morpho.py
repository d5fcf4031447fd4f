"""The real Morpho Blue (compiled from npm) on the session devnet: markets, oracle, liquidation."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from keeper.devnet.deploy import MORPHO_LIQUIDITY_USD
from keeper.devnet.deployer import Deployer
from keeper.devnet.info import MorphoMarketInfo
from keeper.devnet.morpho import (
    DEFAULT_LLTV,
    DEFAULT_MARKETS,
    ORACLE_PRICE_SCALE,
    feed_oracle_artifact,
    market_id,
    market_params,
    morpho_abi,
)
from keeper.devnet.tokens import FEED_DECIMALS, price_feed
from keeper.devnet.uniswap import pool_amount
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
)

# Morpho's virtual shares: the first supply of `a` assets to an empty market mints a * 1e6 shares.
VIRTUAL_SHARES = 10**6


@dataclass
class Env:
    devnet: Devnet
    w3: Web3
    deployer: Deployer
    tokens: dict[str, Contract]
    feeds: dict[str, Contract]
    morpho: Contract
    markets: dict[str, MorphoMarketInfo]  # "COLLATERAL/LOAN", e.g. "WETH/USDC"
    oracles: dict[str, Contract]  # same keys


@pytest.fixture
def env(devnet: Devnet) -> Env:
    erc20s = tokens(devnet)
    symbol = {token.address: s for s, token in erc20s.items()}
    markets = {
        f"{symbol[Web3.to_checksum_address(m.collateral_token)]}/"
        f"{symbol[Web3.to_checksum_address(m.loan_token)]}": m
        for m in devnet.info.morpho_blue.markets
    }
    oracle_artifact = feed_oracle_artifact()
    return Env(
        devnet=devnet,
        w3=devnet.w3,
        deployer=deployer(devnet),
        tokens=erc20s,
        feeds=feeds(devnet),
        morpho=contract(devnet, morpho_abi(), devnet.info.morpho_blue.morpho),
        markets=markets,
        oracles={key: contract(devnet, oracle_artifact, m.oracle) for key, m in markets.items()},
    )


def expected_price(env: Env, collateral: str, loan: str) -> int:
    """ChainlinkOracle's formula, from the feeds' current answers, in exact integers."""
    c_answer = env.feeds[collateral].functions.latestAnswer().call()
    l_answer = env.feeds[loan].functions.latestAnswer().call()
    scale: int = 10 ** (36 + SPECS[loan].decimals - SPECS[collateral].decimals)
    return int(c_answer) * scale // int(l_answer)


def test_merged_abi_decodes_every_morpho_event() -> None:
    events = {item["name"] for item in morpho_abi() if item["type"] == "event"}
    assert {"CreateMarket", "Supply", "Borrow", "Liquidate", "AccrueInterest"} <= events


def test_markets_are_created_and_funded(env: Env) -> None:
    morpho = env.morpho
    assert morpho.functions.owner().call() == env.deployer.sender
    assert morpho.functions.isLltvEnabled(DEFAULT_LLTV).call()
    assert set(env.markets) == {"WETH/USDC", "WBTC/USDC"}
    # devnet.json lists the markets in the order they were created.
    assert list(env.markets) == [f"{c}/{loan}" for c, loan in DEFAULT_MARKETS]
    usdc_supply = pool_amount(Decimal(MORPHO_LIQUIDITY_USD), SPECS["USDC"])
    usdc_in_morpho = 0
    for key, market in env.markets.items():
        collateral, loan = key.split("/")
        params = market_params(market)
        assert morpho.functions.isIrmEnabled(params[3]).call()
        assert params[:2] == (env.tokens[loan].address, env.tokens[collateral].address)
        assert market.id == "0x" + market_id(*params).hex()
        assert morpho.functions.idToMarketParams(market.id).call() == list(params)
        state = morpho.functions.market(market.id).call()
        supply_assets, supply_shares, borrow_assets, _, last_update, _ = state
        # The deployer funded the empty market with exactly `usdc_supply` and is its only
        # supplier; the population's borrows only add interest to the supplied assets since.
        assert supply_shares == usdc_supply * VIRTUAL_SHARES
        assert morpho.functions.position(market.id, env.deployer.sender).call()[0] == (
            supply_shares
        )
        assert supply_assets >= usdc_supply
        assert last_update > 0
        usdc_in_morpho += supply_assets - borrow_assets
    # Every supplied USDC sits in Morpho except what the borrowers took out.
    assert env.tokens["USDC"].functions.balanceOf(morpho.address).call() == usdc_in_morpho


def test_oracle_price_matches_the_1e36_formula(env: Env) -> None:
    weth_price = env.oracles["WETH/USDC"].functions.price().call()
    assert weth_price == expected_price(env, "WETH", "USDC") == 2000 * 10**24
    wbtc_price = env.oracles["WBTC/USDC"].functions.price().call()
    assert wbtc_price == expected_price(env, "WBTC", "USDC") == 30_000 * 10**34
    # 1 WETH (1e18 units) is worth 2000 USDC (2000e6 units) at that price.
    assert 10**18 * weth_price // ORACLE_PRICE_SCALE == 2000 * 10**6
    assert env.feeds["WETH"].functions.decimals().call() == FEED_DECIMALS


def test_liquidate_reverts_while_healthy_and_pays_an_incentive_after_a_feed_drop(
    env: Env,
) -> None:
    deployer, morpho = env.deployer, env.morpho
    weth, usdc = env.tokens["WETH"], env.tokens["USDC"]
    keeper = liquidator(env.devnet)  # funded with $5M USDC by the devnet deploy
    (borrower,) = fresh_accounts(env.devnet, 1)
    market = env.markets["WETH/USDC"]
    params = market_params(market)

    # Borrower: 10 WETH ($20,000) collateral, borrows 17,000 USDC; max at 86 % LLTV is 17,200.
    collateral = 10 * 10**18
    borrowed = 17_000 * 10**6
    deployer.send(weth.functions.mint(borrower, collateral))
    deployer.send(weth.functions.approve(morpho.address, collateral), sender=borrower)
    deployer.send(
        morpho.functions.supplyCollateral(params, collateral, borrower, b""), sender=borrower
    )
    deployer.send(morpho.functions.borrow(params, borrowed, 0, borrower, borrower), sender=borrower)
    assert usdc.functions.balanceOf(borrower).call() == borrowed

    # Liquidator: USDC working capital, Morpho approved.
    assert usdc.functions.balanceOf(keeper).call() >= 1_000_000 * 10**6
    deployer.send(usdc.functions.approve(morpho.address, MAX_UINT), sender=keeper)
    seized = 2 * 10**18
    liquidate = morpho.functions.liquidate(params, borrower, seized, 0, b"")

    with pytest.raises(ContractLogicError, match="position is healthy"):
        liquidate.call({"from": keeper})

    # WETH $2000 -> $1900: 19,000 * 0.86 = 16,340 < 17,000 borrowed.
    set_price(env.devnet, "WETH", Decimal(1900))
    price = env.oracles["WETH/USDC"].functions.price().call()
    assert price == expected_price(env, "WETH", "USDC") == 1900 * 10**24

    _, shares_before, _ = morpho.functions.position(market.id, borrower).call()
    weth_before = weth.functions.balanceOf(keeper).call()
    usdc_before = usdc.functions.balanceOf(keeper).call()
    receipt = deployer.send(liquidate, sender=keeper)

    (event,) = morpho.events.Liquidate().process_receipt(receipt, errors=DISCARD)
    args = event["args"]
    assert "0x" + bytes(args["id"]).hex() == market.id
    assert (args["caller"], args["borrower"]) == (keeper, borrower)
    assert args["seizedAssets"] == seized
    assert args["badDebtAssets"] == 0 and args["badDebtShares"] == 0
    repaid = args["repaidAssets"]

    assert weth.functions.balanceOf(keeper).call() - weth_before == seized
    paid = usdc_before - usdc.functions.balanceOf(keeper).call()
    assert paid == repaid
    received_value = seized * price // ORACLE_PRICE_SCALE  # in USDC units
    assert paid < received_value
    # Morpho's incentive: min(1.15, 1 / (1 - 0.3 * (1 - LLTV))) ~ 1.0438 at 86 %.
    incentive = min(115 * WAD // 100, WAD * WAD // (WAD - 3 * (WAD - DEFAULT_LLTV) // 10))
    assert abs(paid - received_value * WAD // incentive) <= 2

    _, shares_after, left_collateral = morpho.functions.position(market.id, borrower).call()
    assert left_collateral == collateral - seized
    assert shares_after == shares_before - args["repaidShares"] > 0


@pytest.mark.parametrize(
    ("collateral_feed", "loan_feed", "collateral_decimals", "loan_decimals"),
    [
        # feed (decimals, answer); scale 1e62 * 1e20 overflows 256 bits before the division.
        ((0, 10**20), (8, 10**10), 0, 18),
        # A cheap 24-decimal collateral against a 2-decimal loan token: tiny but exact.
        ((8, 3), (18, 7 * 10**21), 24, 2),
    ],
)
def test_oracle_is_exact_at_extreme_decimals(
    env: Env,
    collateral_feed: tuple[int, int],
    loan_feed: tuple[int, int],
    collateral_decimals: int,
    loan_decimals: int,
) -> None:
    # Fresh feeds and oracle on the shared devnet; the `devnet` fixture's revert removes them.
    feed_artifact, oracle_artifact = price_feed(), feed_oracle_artifact()
    c_feed = env.deployer.deploy(feed_artifact, collateral_feed[0], "C / USD", collateral_feed[1])
    l_feed = env.deployer.deploy(feed_artifact, loan_feed[0], "L / USD", loan_feed[1])
    oracle = env.deployer.deploy(
        oracle_artifact, c_feed.address, l_feed.address, collateral_decimals, loan_decimals
    )
    scale: int = 10 ** (
        36 + loan_decimals + loan_feed[0] - collateral_decimals - collateral_feed[0]
    )
    assert oracle.functions.SCALE_FACTOR().call() == scale
    assert collateral_feed[1] * scale >= 2**256 or collateral_feed[1] * scale < 10**36
    assert oracle.functions.price().call() == scale * collateral_feed[1] // loan_feed[1]

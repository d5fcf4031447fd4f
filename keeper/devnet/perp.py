"""Perpetual Protocol v2 ("Curie") on the devnet: contracts from npm, markets on the devnet's feeds.

`deploy_perp` puts Curie 2.8.4 (`@perp/curie-contract` artifacts) on a running default devnet:
ClearingHouseConfig, MarketRegistry, OrderBook, AccountBalance, Exchange, InsuranceFund, Vault,
CollateralManager and ClearingHouse, wired as Perp's own deploy scripts wire them; one vUSD
QuoteToken; and one market per `PerpMarketSpec`: a BaseToken whose index is the devnet's own
PriceFeed for that token (behind Perp's ChainlinkPriceFeedV3 and PriceFeedDispatcher from
`@perp/perp-oracle-contract`), and its Uniswap V3 pool (`@uniswap/v3-core` 1.0.1, a factory
of its own so the devnet's V3 venues never see the virtual tokens). The settlement token is
the devnet's USDC (6 decimals, as on Optimism).

Gotchas the deploy keeps: a base token's address must sort below the quote token's (the pool's
token0 is the base), so deployer nonces are spent until the next CREATE address is lower; the
pool needs observation cardinality for the mark price's TWAPs; and `maxTickCrossedWithinBlock`
bounds how far one block may move the pool (keeper/devnet/perp_drive.py moves it in steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from math import isqrt

import rlp  # type: ignore[import-untyped]
from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from pydantic import BaseModel, ConfigDict
from web3 import Web3
from web3.contract import Contract

from keeper.devnet.artifacts import Artifact, hardhat
from keeper.devnet.deployer import Deployer, rpc
from keeper.devnet.info import DevnetInfo
from keeper.devnet.tokens import mintable_erc20, price_feed

CURIE = "@perp/curie-contract"
ORACLE = "@perp/perp-oracle-contract"
FEE_TIER = 3000  # the vAMM pools' Uniswap fee tier (tick spacing 60)
EXCHANGE_FEE_RATIO = 1000  # Perp's own trading fee: 0.1 % (pips)
INSURANCE_FUND_FEE_RATIO = 100_000  # 10 % of trading fees go to the insurance fund
MAX_TICK_CROSSED_WITHIN_BLOCK = 1000  # about 10.5 % per block
CHAINLINK_TIMEOUT = 40 * 60  # ChainlinkPriceFeedV3's timeout (unused without a Uniswap fallback)
CHAINLINK_TWAP_INTERVAL = 15 * 60  # the index TWAP window the price feed caches
OBSERVATION_CARDINALITY = 500
SETTLEMENT_SYMBOL = "USDC"
POOL_HISTORY_SECONDS = 3600


@dataclass(frozen=True)
class PerpMarketSpec:
    """One market: its base token's symbol, and the devnet token whose feed is its index."""

    symbol: str  # e.g. "vETH"
    underlying: str  # e.g. "WETH": the devnet feed that prices it


DEFAULT_MARKETS = (PerpMarketSpec("vETH", "WETH"), PerpMarketSpec("vBTC", "WBTC"))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PerpMarketInfo(_Frozen):
    base_token: str
    pool: str
    underlying: str  # the devnet token symbol whose feed is the index
    feed: str  # the devnet PriceFeed (AnswerUpdated) behind the index
    chainlink_price_feed: str  # Perp's ChainlinkPriceFeedV3 over `feed`
    price_feed_dispatcher: str


class PerpInfo(_Frozen):
    """What the Perp profile holds (`perp.json`), beside the default devnet's devnet.json."""

    clearing_house: str
    clearing_house_config: str
    market_registry: str
    order_book: str
    account_balance: str
    exchange: str
    insurance_fund: str
    vault: str
    collateral_manager: str
    quote_token: str
    uniswap_factory: str
    settlement_token: str
    markets: dict[str, PerpMarketInfo]  # by base symbol
    makers: dict[str, str] = {}  # name -> address
    traders: dict[str, str] = {}  # name -> address
    whale: str = ""  # the account the devnet helper trades the vAMM with
    liquidator: str = ""
    deploy_block: int = 0


def curie(name: str) -> Artifact:
    """A Curie 2.8.4 contract artifact, e.g. `ClearingHouse`."""
    return hardhat(CURIE, f"artifacts/contracts/{name}.sol/{name}.json")


def perp_oracle(name: str) -> Artifact:
    return hardhat(ORACLE, f"artifacts/contracts/{name}.sol/{name}.json")


def uniswap_v3_core(name: str) -> Artifact:
    return hardhat("@uniswap/v3-core", f"artifacts/contracts/{name}.sol/{name}.json")


def sqrt_price_x96(usd: Decimal) -> int:
    """sqrt(price) * 2^96 of a base/quote pool (both 18 decimals) at `usd` per base."""
    return isqrt(int(usd * 10**18) * 2**192 // 10**18)


def _next_address(w3: Web3, sender: ChecksumAddress) -> int:
    nonce = w3.eth.get_transaction_count(sender)
    return int.from_bytes(keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:], "big")


def _spend_nonces_below(deployer: Deployer, bound: str) -> None:
    """Send empty transactions until the deployer's next contract sorts below `bound`."""
    w3 = deployer.w3
    while _next_address(w3, deployer.sender) >= int(bound, 16):
        rpc(w3, "eth_sendTransaction", {"from": deployer.sender, "to": deployer.sender})


@dataclass
class PerpContracts:
    """The deployed contracts, as web3 objects, for seeding and driving."""

    clearing_house: Contract
    config: Contract
    registry: Contract
    order_book: Contract
    account_balance: Contract
    exchange: Contract
    insurance_fund: Contract
    vault: Contract
    collateral_manager: Contract
    quote: Contract
    factory: Contract
    usdc: Contract
    bases: dict[str, Contract]
    pools: dict[str, Contract]


def attach(w3: Web3, info: PerpInfo) -> PerpContracts:
    """The contracts of a deployed profile."""

    def at(artifact: Artifact, address: str) -> Contract:
        return w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact.abi)

    return PerpContracts(
        clearing_house=at(curie("ClearingHouse"), info.clearing_house),
        config=at(curie("ClearingHouseConfig"), info.clearing_house_config),
        registry=at(curie("MarketRegistry"), info.market_registry),
        order_book=at(curie("OrderBook"), info.order_book),
        account_balance=at(curie("AccountBalance"), info.account_balance),
        exchange=at(curie("Exchange"), info.exchange),
        insurance_fund=at(curie("InsuranceFund"), info.insurance_fund),
        vault=at(curie("Vault"), info.vault),
        collateral_manager=at(curie("CollateralManager"), info.collateral_manager),
        quote=at(curie("QuoteToken"), info.quote_token),
        factory=at(uniswap_v3_core("UniswapV3Factory"), info.uniswap_factory),
        usdc=at(mintable_erc20(), info.settlement_token),
        bases={s: at(curie("BaseToken"), m.base_token) for s, m in info.markets.items()},
        pools={s: at(uniswap_v3_core("UniswapV3Pool"), m.pool) for s, m in info.markets.items()},
    )


def _core(deployer: Deployer, usdc: str) -> dict[str, Contract]:
    """The protocol's core contracts, initialized and wired (no market yet)."""
    send, deploy = deployer.send, deployer.deploy
    quote = deploy(curie("QuoteToken"))
    send(quote.functions.initialize("vUSD", "vUSD"))
    factory = deploy(uniswap_v3_core("UniswapV3Factory"))
    config = deploy(curie("ClearingHouseConfig"))
    send(config.functions.initialize())
    registry = deploy(curie("MarketRegistry"))
    send(registry.functions.initialize(factory.address, quote.address))
    book = deploy(curie("OrderBook"))
    send(book.functions.initialize(registry.address))
    balance = deploy(curie("AccountBalance"))
    exchange = deploy(curie("Exchange"))
    fund = deploy(curie("InsuranceFund"))
    send(fund.functions.initialize(Web3.to_checksum_address(usdc)))
    send(exchange.functions.initialize(registry.address, book.address, config.address))
    send(exchange.functions.setAccountBalance(balance.address))
    send(book.functions.setExchange(exchange.address))
    send(balance.functions.initialize(config.address, book.address))
    vault = deploy(curie("Vault"))
    send(vault.functions.initialize(fund.address, config.address, balance.address,
                                     exchange.address))
    manager = deploy(curie("CollateralManager"))
    # Perp's mainnet parameters: 5 collateral tokens, 75 % debt ratio, 50 % liquidation
    # ratio, 0.2 % mm buffer, 3 % fee, 10k USD debt threshold, 500 USD dust (6-dec ratios).
    send(manager.functions.initialize(config.address, vault.address, 5, 750_000, 500_000,
                                      2000, 30_000, 10_000 * 10**18, 500 * 10**18))
    send(vault.functions.setCollateralManager(manager.address))
    send(fund.functions.setVault(vault.address))
    send(balance.functions.setVault(vault.address))
    house = deploy(curie("ClearingHouse"))
    send(house.functions.initialize(config.address, vault.address, quote.address,
                                    factory.address, exchange.address, balance.address,
                                    fund.address))
    send(config.functions.setSettlementTokenBalanceCap(2**256 - 1))
    send(quote.functions.mintMaximumTo(house.address))
    send(quote.functions.addWhitelist(house.address))
    for contract in (registry, book, exchange, balance, vault):
        send(contract.functions.setClearingHouse(house.address))
    return {"quote": quote, "factory": factory, "config": config, "registry": registry,
            "book": book, "balance": balance, "exchange": exchange, "fund": fund,
            "vault": vault, "manager": manager, "house": house}


def _market(
    deployer: Deployer, core: dict[str, Contract], spec: PerpMarketSpec, feed: str, usd: Decimal,
) -> PerpMarketInfo:
    """One market: index from the devnet feed `feed`, pool opened at `usd`."""
    send, deploy = deployer.send, deployer.deploy
    chainlink = deploy(perp_oracle("ChainlinkPriceFeedV3"), Web3.to_checksum_address(feed),
                       CHAINLINK_TIMEOUT, CHAINLINK_TWAP_INTERVAL)
    dispatcher = deploy(perp_oracle("PriceFeedDispatcher"), chainlink.address)
    quote, house = core["quote"], core["house"]
    _spend_nonces_below(deployer, str(quote.address))
    base = deploy(curie("BaseToken"))
    send(base.functions.initialize(spec.symbol, spec.symbol, dispatcher.address))
    factory = core["factory"]
    send(factory.functions.createPool(base.address, quote.address, FEE_TIER))
    pool_address = factory.functions.getPool(base.address, quote.address, FEE_TIER).call()
    pool = deployer.at(uniswap_v3_core("UniswapV3Pool"), pool_address)
    for token in (base, quote):
        send(token.functions.addWhitelist(pool.address))
    send(base.functions.mintMaximumTo(house.address))
    send(base.functions.addWhitelist(house.address))
    send(pool.functions.initialize(sqrt_price_x96(usd)))
    send(pool.functions.increaseObservationCardinalityNext(OBSERVATION_CARDINALITY))
    registry = core["registry"]
    send(registry.functions.addPool(base.address, FEE_TIER))
    send(registry.functions.setFeeRatio(base.address, EXCHANGE_FEE_RATIO))
    send(registry.functions.setInsuranceFundFeeRatio(base.address, INSURANCE_FUND_FEE_RATIO))
    send(core["exchange"].functions.setMaxTickCrossedWithinBlock(
        base.address, MAX_TICK_CROSSED_WITHIN_BLOCK))
    return PerpMarketInfo(
        base_token=base.address, pool=pool.address, underlying=spec.underlying, feed=feed,
        chainlink_price_feed=chainlink.address, price_feed_dispatcher=dispatcher.address,
    )


def feed_usd(w3: Web3, feed: str) -> Decimal:
    """A devnet feed's latest answer in USD."""
    contract = w3.eth.contract(address=Web3.to_checksum_address(feed), abi=price_feed().abi)
    return Decimal(int(contract.functions.latestAnswer().call())) / Decimal(10**8)


def deploy_perp(
    deployer: Deployer, devnet: DevnetInfo, markets: tuple[PerpMarketSpec, ...] = DEFAULT_MARKETS,
) -> PerpInfo:
    """Deploy and wire Curie on the default devnet at `deployer.w3` (no accounts seeded)."""
    usdc = devnet.tokens[SETTLEMENT_SYMBOL].address
    core = _core(deployer, usdc)
    deployed = {
        spec.symbol: _market(deployer, core, spec, devnet.feeds[spec.underlying],
                             feed_usd(deployer.w3, devnet.feeds[spec.underlying]))
        for spec in markets
    }
    # Uniswap's observe() answers "OLD" for a window older than the pool: the spread guard
    # (15 min) and the mark price (30 min) need that much history before the first trade.
    rpc(deployer.w3, "evm_increaseTime", POOL_HISTORY_SECONDS)
    rpc(deployer.w3, "evm_mine")
    return PerpInfo(
        clearing_house=core["house"].address, clearing_house_config=core["config"].address,
        market_registry=core["registry"].address, order_book=core["book"].address,
        account_balance=core["balance"].address, exchange=core["exchange"].address,
        insurance_fund=core["fund"].address, vault=core["vault"].address,
        collateral_manager=core["manager"].address, quote_token=core["quote"].address,
        uniswap_factory=core["factory"].address, settlement_token=Web3.to_checksum_address(usdc),
        markets=deployed,
    )

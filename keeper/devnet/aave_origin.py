"""A second Aave market on the devnet: v3.6, from @aave-dao/aave-v3-origin 3.6.0.

Its contracts are compiled from the package's sources (keeper/devnet/aave_origin_artifacts.py);
its liquidity, WSTETH's pool and its borrowers are in keeper/devnet/aave_origin_seed.py.
Nothing is mocked but the stable-debt placeholder that v3.2+ markets register
(`MOCK_STABLE_DEBT`).

The market lists the devnet's WETH, WBTC, USDC and DAI (the same tokens as the v3.0
market) and WSTETH, a token of its own:

- WETH is priced through Chainlink's EACAggregatorProxy (@chainlink/contracts 0.8.0)
  over the devnet WETH feed, so a test can switch the proxy's aggregator; WSTETH through
  a RatioCappedAdapter (contracts/devnet), which emits no AnswerUpdated; WBTC, USDC and
  DAI through their devnet feeds directly.
- E-mode 1 "Stablecoins" (collateral and borrowable: USDC, DAI), e-mode 2 "ETH
  correlated" (collateral: WETH and WSTETH, borrowable: WETH) and e-mode 3 "USDC borrow"
  (collateral: WETH and DAI, borrowable: USDC, WETH on its ltvzero bitmap). WSTETH has
  LTV 0 and LT 0 outside e-mode: since v3.6 it still counts as collateral inside e-mode 2.
- WBTC is put in a liquidation grace period (the longest the configurator allows, 4 h
  from the end of the deploy); `start_grace_period` / `end_grace_period` set it.
- A PriceOracleSentinel over a SequencerOracle that reports the sequencer up since
  timestamp 1, so liquidations are allowed until a test reports it down.

Deploy order (each step was needed): the provider and ACL as for v3.0; the interest-rate
strategy *before* the Pool (v3.6's Pool takes one strategy for every reserve in its
constructor); the Pool, then the configurator (it caches the pool proxy); token
implementations with the pool proxy (the AToken takes the treasury in its constructor).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from eth_abi.abi import encode
from web3 import Web3
from web3.contract import Contract

from keeper.devnet.aave import (
    ZERO_ADDRESS,
    EModeCategory,
    ReserveParams,
    configure_reserve,
    deploy_configurator,
    deploy_oracle,
    deploy_pool,
    deploy_provider_and_acl,
)
from keeper.devnet.aave_origin_artifacts import (
    POOL_LIBRARIES,
    configurator_artifact,
    eac_aggregator_proxy,
    origin_artifact,
    origin_artifacts,
    pool_artifact,
)
from keeper.devnet.deployer import Deployer
from keeper.devnet.info import AaveV36Info, TokenInfo
from keeper.devnet.tokens import FEED_DECIMALS, TokenSpec, devnet_contracts, mintable_erc20
from keeper.errors import DevnetError

MARKET_ID = "Keeper Devnet Market v3.6"
VERSION = "3.6.0"
# The token only this market lists: a liquid-staking token priced by a ratio adapter over WETH.
WSTETH = TokenSpec("WSTETH", 18, Decimal("2400"))
WSTETH_RATIO = 12 * 10**17  # 1.2 WETH per WSTETH at deploy: 2000 x 1.2 = 2400 USD
# The ratio grows ~3.5 % a year (per second, in 1e18 units); the cap allows 5 % a year.
WSTETH_RATIO_GROWTH_PER_SECOND = WSTETH_RATIO * 350 // 10_000 // (365 * 86_400)
WSTETH_MAX_YEARLY_GROWTH_BPS = 500
# The longest liquidation grace period PoolConfigurator.setReservePause accepts (MAX_GRACE_PERIOD).
MAX_GRACE_PERIOD = 4 * 3600
GRACE_PERIOD_RESERVE = "WBTC"
# The PriceOracleSentinel's grace period after the sequencer comes back up.
SENTINEL_GRACE_PERIOD = 3600

STABLECOINS = EModeCategory(
    id=1, ltv=9_300, liquidation_threshold=9_500, liquidation_bonus=10_100, label="Stablecoins"
)
ETH_CORRELATED = EModeCategory(
    id=2, ltv=9_000, liquidation_threshold=9_300, liquidation_bonus=10_100, label="ETH correlated"
)
USDC_BORROW = EModeCategory(
    id=3, ltv=8_500, liquidation_threshold=8_800, liquidation_bonus=10_300, label="USDC borrow"
)


@dataclass(frozen=True)
class EModeMembers:
    """An e-mode category of v3.2+: its parameters and its two membership bitmaps."""

    category: EModeCategory
    collateral: tuple[str, ...]
    borrowable: tuple[str, ...]
    # Collateral whose LTV is 0 in this category (v3.6 ltvzeroBitmap): it still counts at the
    # category's LT, but backs no new borrowing. Set after the borrowers open, as a market
    # winding an asset down would.
    ltvzero: tuple[str, ...] = ()


EMODES: tuple[EModeMembers, ...] = (
    EModeMembers(STABLECOINS, collateral=("USDC", "DAI"), borrowable=("USDC", "DAI")),
    EModeMembers(ETH_CORRELATED, collateral=("WETH", "WSTETH"), borrowable=("WETH",)),
    EModeMembers(USDC_BORROW, collateral=("WETH", "DAI"), borrowable=("USDC",), ltvzero=("WETH",)),
)

# Close to Aave's v3.6 Ethereum core market. WSTETH: LTV 0 / LT 0 outside e-mode.
RESERVES: Mapping[str, ReserveParams] = {
    "WETH": ReserveParams(8_050, 8_300, 10_500, 1_500, 1_000, stable=False),
    "WBTC": ReserveParams(7_300, 7_800, 10_500, 2_000, 1_000, stable=False),
    "USDC": ReserveParams(7_500, 7_800, 10_450, 1_000, 1_000, stable=True),
    "DAI": ReserveParams(7_700, 8_000, 10_500, 1_000, 1_000, stable=True),
    "WSTETH": ReserveParams(0, 0, 0, 1_500, 1_000, stable=False),
}
# Reserves users may borrow (WSTETH is collateral only).
BORROWABLE = ("WETH", "WBTC", "USDC", "DAI")

# DefaultReserveInterestRateStrategyV2 data, in bps: (optimal usage, base, slope1, slope2).
VOLATILE_RATES = (4_500, 0, 700, 30_000)
STABLE_RATES = (9_000, 0, 400, 6_000)
_MARKET = "Aave v3.6"  # how this market's deploy errors name it

@dataclass(frozen=True)
class AaveOriginDeployment:
    """The deployed v3.6 market: web3 contracts for the parts set-up and tests drive."""

    info: AaveV36Info
    pool: Contract
    pool_configurator: Contract
    oracle: Contract
    tokens: Mapping[str, Contract]  # every listed reserve's underlying, by symbol
    specs: Mapping[str, TokenSpec]
    weth_proxy: Contract
    wsteth_adapter: Contract
    sequencer_oracle: Contract


def deploy_aave_v36(
    deployer: Deployer,
    tokens: Mapping[str, Contract],
    feeds: Mapping[str, Contract],
    specs: Mapping[str, TokenSpec],
    treasury: str,
) -> AaveOriginDeployment:
    """Deploy and configure the v3.6 market over the devnet's tokens and feeds, plus WSTETH."""
    missing = sorted(s for s in ("WETH", "WBTC", "USDC", "DAI") if s not in tokens)
    if missing:
        raise DevnetError(f"deploy Aave v3.6: the devnet has no {', '.join(missing)}")
    wsteth = deployer.deploy(mintable_erc20(), "Devnet WSTETH", WSTETH.symbol, WSTETH.decimals)
    listed = {**{s: tokens[s] for s in ("WETH", "WBTC", "USDC", "DAI")}, WSTETH.symbol: wsteth}
    all_specs = {**{s: specs[s] for s in listed if s in specs}, WSTETH.symbol: WSTETH}

    provider, acl = deploy_provider_and_acl(
        deployer, origin_artifact("PoolAddressesProvider"), origin_artifact("ACLManager"), MARKET_ID
    )
    strategy = origin_artifact("DefaultReserveInterestRateStrategyV2")
    rates = deployer.deploy(strategy, provider.address)
    libraries = {name: origin_artifact(name) for name in POOL_LIBRARIES}
    pool_impl = origin_artifact("PoolInstance")
    # v3.6's Pool takes the one interest-rate strategy of every reserve in its constructor.
    pool = deploy_pool(deployer, provider, pool_impl, libraries, rates.address, market=_MARKET)
    configurator = deploy_configurator(
        deployer,
        provider,
        origin_artifact("ConfiguratorLogic"),
        origin_artifact("PoolConfiguratorInstance"),
        market=_MARKET,
    )
    data_provider = deployer.deploy(origin_artifact("AaveProtocolDataProvider"), provider.address)
    deployer.send(provider.functions.setPoolDataProvider(data_provider.address))
    stable_mock = deployer.deploy(devnet_contracts()["MockStableDebt"])
    deployer.send(provider.functions.setAddress(_key("MOCK_STABLE_DEBT"), stable_mock.address))

    # Price sources: a switchable Chainlink proxy for WETH, a silent ratio adapter for WSTETH.
    weth_proxy = deployer.deploy(eac_aggregator_proxy(), feeds["WETH"].address, ZERO_ADDRESS)
    adapter = deployer.deploy(
        devnet_contracts()["RatioCappedAdapter"],
        feeds["WETH"].address,
        FEED_DECIMALS,
        "WSTETH / USD (ratio x ETH / USD, capped)",
        WSTETH_RATIO,
        WSTETH_RATIO_GROWTH_PER_SECOND,
        WSTETH_MAX_YEARLY_GROWTH_BPS,
    )
    sources = {
        "WETH": weth_proxy.address,
        "WBTC": feeds["WBTC"].address,
        "USDC": feeds["USDC"].address,
        "DAI": feeds["DAI"].address,
        "WSTETH": adapter.address,
    }
    oracle = deploy_oracle(
        deployer,
        origin_artifact("AaveOracle"),
        provider,
        [listed[s].address for s in sources],
        list(sources.values()),
    )

    sequencer = deployer.deploy(origin_artifact("SequencerOracle"), deployer.sender)
    # Up (answer 0) since timestamp 1: the sentinel's grace period passed long ago.
    deployer.send(sequencer.functions.setAnswer(False, 1))
    sentinel = deployer.deploy(
        origin_artifact("PriceOracleSentinel"),
        provider.address,
        sequencer.address,
        SENTINEL_GRACE_PERIOD,
    )
    deployer.send(provider.functions.setPriceOracleSentinel(sentinel.address))

    _list_reserves(deployer, pool, configurator, listed, treasury)
    _configure_reserves(deployer, configurator, listed)

    info = AaveV36Info(
        version=VERSION,
        pool=pool.address,
        addresses_provider=provider.address,
        oracle=oracle.address,
        data_provider=data_provider.address,
        pool_configurator=configurator.address,
        acl_manager=acl.address,
        interest_rate_strategy=rates.address,
        price_oracle_sentinel=sentinel.address,
        sequencer_oracle=sequencer.address,
        mock_stable_debt=stable_mock.address,
        tokens={
            s: TokenInfo(address=c.address, decimals=all_specs[s].decimals)
            for s, c in listed.items()
        },
        price_sources=sources,
        eac_proxies={"WETH": weth_proxy.address},
        ratio_adapters={"WSTETH": adapter.address},
        emode_categories={m.category.id: m.category.label for m in EMODES},
        grace_period_reserve=GRACE_PERIOD_RESERVE,
        borrowers={},
    )
    return AaveOriginDeployment(
        info=info,
        pool=pool,
        pool_configurator=configurator,
        oracle=oracle,
        tokens=listed,
        specs=all_specs,
        weth_proxy=weth_proxy,
        wsteth_adapter=adapter,
        sequencer_oracle=sequencer,
    )


def _key(name: str) -> bytes:
    """A PoolAddressesProvider id: the name as bytes32 (Solidity's `bytes32('NAME')`)."""
    return name.encode().ljust(32, b"\0")


def _list_reserves(
    deployer: Deployer,
    pool: Contract,
    configurator: Contract,
    listed: Mapping[str, Contract],
    treasury: str,
) -> None:
    a_token = deployer.deploy(
        origin_artifact("ATokenInstance"),
        pool.address,
        ZERO_ADDRESS,
        Web3.to_checksum_address(treasury),
    )
    variable_debt = deployer.deploy(
        origin_artifact("VariableDebtTokenInstance"), pool.address, ZERO_ADDRESS
    )
    inputs = []
    for symbol, token in listed.items():
        rates = STABLE_RATES if RESERVES[symbol].stable else VOLATILE_RATES
        inputs.append(
            (
                a_token.address,
                variable_debt.address,
                token.address,
                f"Aave Devnet v3.6 {symbol}",
                f"a36{symbol}",
                f"Aave Devnet v3.6 Variable Debt {symbol}",
                f"variableDebt36{symbol}",
                b"",
                encode(["(uint16,uint32,uint32,uint32)"], [rates]),
            )
        )
    deployer.send(configurator.functions.initReserves(inputs))


def _configure_reserves(
    deployer: Deployer, configurator: Contract, listed: Mapping[str, Contract]
) -> None:
    fn = configurator.functions
    for symbol, token in listed.items():
        p = RESERVES[symbol]
        # A reserve with LT 0 (WSTETH) is left out of collateral outside e-mode.
        configure_reserve(
            deployer, configurator, token.address, p,
            collateral=bool(p.liquidation_threshold), borrowing=symbol in BORROWABLE,
        )
    for members in EMODES:
        c = members.category
        deployer.send(
            fn.setEModeCategory(c.id, c.ltv, c.liquidation_threshold, c.liquidation_bonus, c.label)
        )
        for symbol in members.collateral:
            deployer.send(fn.setAssetCollateralInEMode(listed[symbol].address, c.id, True))
        for symbol in members.borrowable:
            deployer.send(fn.setAssetBorrowableInEMode(listed[symbol].address, c.id, True))


def start_grace_period(
    deployer: Deployer, configurator: Contract, asset: str, seconds: int = MAX_GRACE_PERIOD
) -> None:
    """Start a liquidation grace period on a reserve (PoolConfigurator.setReservePause(false, s)).

    The pool refuses liquidations whose collateral or debt is this reserve until the grace
    period ends (`liquidationGracePeriodUntil` = block time + seconds).
    """
    call = configurator.functions.setReservePause(Web3.to_checksum_address(asset), False, seconds)
    deployer.send(call)


def end_grace_period(deployer: Deployer, configurator: Contract, asset: str) -> None:
    """End a reserve's liquidation grace period now (disableLiquidationGracePeriod).

    The deploy's grace period is wall-clock bound (anvil stamps blocks with the clock, also
    after loading a cached state), so whether it is still on depends on the cache's age; a
    test that liquidates the grace reserve calls this or `start_grace_period` first.
    """
    call = configurator.functions.disableLiquidationGracePeriod(Web3.to_checksum_address(asset))
    deployer.send(call)


__all__ = [
    "BORROWABLE",
    "EMODES",
    "GRACE_PERIOD_RESERVE",
    "MAX_GRACE_PERIOD",
    "RESERVES",
    "WSTETH",
    "WSTETH_RATIO",
    "AaveOriginDeployment",
    "EModeMembers",
    "configurator_artifact",  # re-exported from aave_origin_artifacts, where they live
    "deploy_aave_v36",
    "eac_aggregator_proxy",
    "end_grace_period",
    "origin_artifacts",
    "pool_artifact",
    "start_grace_period",
]

"""Deploy the real Aave V3 protocol (@aave/core-v3 1.19.3 artifacts) on a devnet.

Nothing here is a mock: the Pool, PoolConfigurator, oracle, tokens and data
provider are the audited bytecode from the npm package, wired the way Aave's
own deploy scripts wire a market. Prices come from our Chainlink-style feeds
through AaveOracle, so moving a feed moves every health factor.

The order of steps matters (each was found to revert otherwise):

1. PoolAddressesProvider, then `setACLAdmin` *before* ACLManager is deployed
   (its constructor reads the ACL admin and rejects 0x0).
2. Pool and PoolConfigurator implementations go in through `setPoolImpl` /
   `setPoolConfiguratorImpl`, which create the proxies and call `initialize`;
   the configurator must come after the pool because it caches the pool proxy.
3. AToken / debt-token implementations are built with the pool *proxy*.
4. Reserves are listed with `initReserves`, then configured one setter at a
   time (collateral, borrowing, reserve factor, protocol fee, e-mode).

Steps 1 and 2, the oracle and the per-reserve setters are the same on the v3.6 market
(keeper/devnet/aave_origin.py), which deploys them through this module's public helpers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from web3 import Web3
from web3.contract import Contract

from keeper.devnet.artifacts import Artifact, aave
from keeper.devnet.borrowers import RiskParams
from keeper.devnet.deployer import Deployer
from keeper.devnet.info import AaveV3Info
from keeper.errors import DevnetError

MARKET_ID = "Keeper Devnet Market"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
# AaveOracle's base currency: USD with 8 decimals, the unit Chainlink USD feeds use.
BASE_CURRENCY_UNIT = 10**8
RAY = 10**27

_LOGIC = "protocol/libraries/logic"
# Pool links these seven; FlashLoanLogic itself links BorrowLogic, so BorrowLogic goes first.
POOL_LIBRARIES = (
    "BorrowLogic",
    "BridgeLogic",
    "EModeLogic",
    "FlashLoanLogic",
    "LiquidationLogic",
    "PoolLogic",
    "SupplyLogic",
)
# The roles the deployer takes in a market's ACLManager.
ADMIN_ROLES = ("addPoolAdmin", "addEmergencyAdmin", "addRiskAdmin", "addAssetListingAdmin")


@dataclass(frozen=True)
class ReserveParams:
    """Risk parameters of one reserve, in basis points (10_000 = 100%)."""

    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int  # 10_500 = the liquidator gets 5% over the debt repaid
    reserve_factor: int
    liquidation_protocol_fee: int  # share of the bonus that goes to the treasury
    stable: bool  # picks the stablecoin or the volatile interest-rate curve
    emode_category: int = 0


@dataclass(frozen=True)
class EModeCategory:
    id: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    label: str


@dataclass(frozen=True)
class RateCurve:
    """DefaultReserveInterestRateStrategy parameters, as fractions in ray (1e27)."""

    optimal_usage: int
    base_variable: int
    variable_slope1: int
    variable_slope2: int


def _pct(value: float) -> int:
    """A fraction (0.8 = 80%) as a ray."""
    return round(value * 10**6) * 10**21


STABLECOINS_EMODE = EModeCategory(
    id=1, ltv=9_300, liquidation_threshold=9_500, liquidation_bonus=10_100, label="Stablecoins"
)

# Close to Aave's Ethereum market (2023); supply/borrow caps stay 0 (no cap).
DEFAULT_RESERVES: Mapping[str, ReserveParams] = {
    "WETH": ReserveParams(8_000, 8_250, 10_500, 1_500, 1_000, stable=False),
    "WBTC": ReserveParams(7_300, 7_800, 10_650, 2_000, 1_000, stable=False),
    "USDC": ReserveParams(7_700, 8_000, 10_450, 1_000, 1_000, stable=True, emode_category=1),
    "DAI": ReserveParams(7_500, 8_000, 10_500, 1_000, 1_000, stable=True, emode_category=1),
}

VOLATILE_CURVE = RateCurve(_pct(0.45), 0, _pct(0.07), _pct(3.00))
STABLE_CURVE = RateCurve(_pct(0.90), 0, _pct(0.04), _pct(0.60))


@dataclass(frozen=True)
class AaveDeployment:
    """The deployed market: web3 contracts for the parts the keeper and tests drive."""

    info: AaveV3Info
    addresses_provider: Contract
    acl_manager: Contract
    pool: Contract  # the proxy, with the Pool ABI
    pool_configurator: Contract  # the proxy, with the PoolConfigurator ABI
    oracle: Contract
    data_provider: Contract
    reserves: Mapping[str, ReserveParams]
    emode: EModeCategory

    def risk_params(self, *, morpho_lltv_wad: int) -> RiskParams:
        """What borrower sizing needs from this market (plus Morpho's LLTV)."""
        return RiskParams(
            aave_ltv_bps={s: r.ltv for s, r in self.reserves.items()},
            aave_lt_bps={s: r.liquidation_threshold for s, r in self.reserves.items()},
            emode_ltv_bps=self.emode.ltv,
            emode_lt_bps=self.emode.liquidation_threshold,
            morpho_lltv_wad=morpho_lltv_wad,
        )


def deploy_aave_v3(
    deployer: Deployer,
    tokens: Mapping[str, Contract],
    feeds: Mapping[str, Contract],
    treasury: str,
    *,
    reserves: Mapping[str, ReserveParams] = DEFAULT_RESERVES,
    emode: EModeCategory = STABLECOINS_EMODE,
) -> AaveDeployment:
    """Deploy and configure a full Aave V3 market listing every token in `tokens`.

    Each token needs a feed (same symbol) and an entry in `reserves`. The
    deployer account becomes owner, ACL admin, pool admin, emergency admin and
    risk admin. Raises DevnetError naming the step if anything reverts.
    """
    missing = sorted(s for s in tokens if s not in feeds or s not in reserves)
    if missing:
        raise DevnetError(f"deploy Aave V3: no feed or reserve parameters for {', '.join(missing)}")
    listed = {s: reserves[s] for s in tokens}

    provider_artifact = _artifact("configuration/PoolAddressesProvider")
    acl_artifact = _artifact("configuration/ACLManager")
    provider, acl = deploy_provider_and_acl(deployer, provider_artifact, acl_artifact, MARKET_ID)
    libraries = {name: _artifact(f"libraries/logic/{name}") for name in POOL_LIBRARIES}
    pool = deploy_pool(deployer, provider, _artifact("pool/Pool"), libraries, market=_MARKET)
    logic = _artifact("libraries/logic/ConfiguratorLogic")
    configurator_impl = _artifact("pool/PoolConfigurator")
    configurator = deploy_configurator(deployer, provider, logic, configurator_impl, market=_MARKET)

    data_provider = deployer.deploy(
        aave("misc/AaveProtocolDataProvider.sol/AaveProtocolDataProvider.json"), provider.address
    )
    deployer.send(provider.functions.setPoolDataProvider(data_provider.address))
    oracle = deploy_oracle(
        deployer,
        aave("misc/AaveOracle.sol/AaveOracle.json"),
        provider,
        [tokens[s].address for s in listed],
        [feeds[s].address for s in listed],
    )

    _list_reserves(
        deployer, provider, pool, configurator, tokens=tokens, listed=listed, treasury=treasury
    )
    _configure_reserves(deployer, configurator, tokens, listed, emode)

    info = AaveV3Info(
        pool=pool.address,
        addresses_provider=provider.address,
        oracle=oracle.address,
        data_provider=data_provider.address,
        pool_configurator=configurator.address,
        acl_manager=acl.address,
    )
    return AaveDeployment(
        info=info,
        addresses_provider=provider,
        acl_manager=acl,
        pool=pool,
        pool_configurator=configurator,
        oracle=oracle,
        data_provider=data_provider,
        reserves=listed,
        emode=emode,
    )


def _artifact(path: str) -> Artifact:
    """`configuration/ACLManager` -> protocol/configuration/ACLManager.sol/ACLManager.json."""
    name = path.rsplit("/", 1)[-1]
    return aave(f"protocol/{path}.sol/{name}.json")


_MARKET = "Aave V3"  # how this market's deploy errors name it


def deploy_provider_and_acl(
    deployer: Deployer, provider_artifact: Artifact, acl_artifact: Artifact, market_id: str
) -> tuple[Contract, Contract]:
    """A market's PoolAddressesProvider and ACLManager; the deployer owns the provider and
    takes every role in `ADMIN_ROLES`. The ACL admin is set before the ACLManager is deployed
    (its constructor reads it and rejects 0x0)."""
    me = deployer.sender
    provider = deployer.deploy(provider_artifact, market_id, me)
    deployer.send(provider.functions.setACLAdmin(me))
    acl = deployer.deploy(acl_artifact, provider.address)
    deployer.send(provider.functions.setACLManager(acl.address))
    for role in ADMIN_ROLES:
        deployer.send(acl.functions[role](me))
    return provider, acl


def deploy_pool(
    deployer: Deployer, provider: Contract, artifact: Artifact, libraries: Mapping[str, Artifact],
    *args: Any, market: str,
) -> Contract:
    """The Pool proxy: `libraries` deployed in order (each linked to those before it), then
    the implementation, built with (provider, *args), handed to the provider."""
    linked: dict[str, str] = {}
    for name, library in libraries.items():
        linked[name] = deployer.deploy(library, libraries=linked).address
    impl = deployer.deploy(artifact, provider.address, *args, libraries=linked)
    # The provider creates the proxy and calls initialize(provider) on it.
    deployer.send(provider.functions.setPoolImpl(impl.address))
    return _proxy(deployer, artifact, provider.functions.getPool().call(), "Pool", market)


def deploy_configurator(
    deployer: Deployer, provider: Contract, logic: Artifact, artifact: Artifact, *, market: str
) -> Contract:
    """The PoolConfigurator proxy (after the Pool's: it caches the pool proxy), its
    implementation linked to ConfiguratorLogic (`logic`)."""
    library = deployer.deploy(logic)
    impl = deployer.deploy(artifact, libraries={"ConfiguratorLogic": library.address})
    deployer.send(provider.functions.setPoolConfiguratorImpl(impl.address))
    address = provider.functions.getPoolConfigurator().call()
    return _proxy(deployer, artifact, address, "PoolConfigurator", market)


def _proxy(
    deployer: Deployer, artifact: Artifact, address: str, what: str, market: str
) -> Contract:
    if int(address, 16) == 0 or not deployer.w3.eth.get_code(Web3.to_checksum_address(address)):
        raise DevnetError(f"deploy {market}: the addresses provider created no {what} proxy")
    return deployer.at(artifact, address)


def deploy_oracle(
    deployer: Deployer, artifact: Artifact, provider: Contract, assets: list[str],
    sources: list[str],
) -> Contract:
    """The market's AaveOracle, prices in USD (8 decimals) from `sources` (one per asset, in
    order), no fallback oracle; set as the provider's price oracle."""
    # No fallback oracle (0x0); base currency 0x0 = USD, in BASE_CURRENCY_UNIT.
    oracle = deployer.deploy(
        artifact, provider.address, assets, sources, ZERO_ADDRESS, ZERO_ADDRESS, BASE_CURRENCY_UNIT
    )
    deployer.send(provider.functions.setPriceOracle(oracle.address))
    return oracle


def configure_reserve(
    deployer: Deployer, configurator: Contract, asset: str, params: ReserveParams, *,
    collateral: bool, borrowing: bool,
) -> None:
    """A listed reserve's setters: collateral parameters (if `collateral`), borrowing on or
    off, reserve factor, liquidation protocol fee."""
    fn = configurator.functions
    if collateral:
        deployer.send(
            fn.configureReserveAsCollateral(
                asset, params.ltv, params.liquidation_threshold, params.liquidation_bonus
            )
        )
    deployer.send(fn.setReserveBorrowing(asset, borrowing))
    deployer.send(fn.setReserveFactor(asset, params.reserve_factor))
    deployer.send(fn.setLiquidationProtocolFee(asset, params.liquidation_protocol_fee))


def _list_reserves(
    deployer: Deployer,
    provider: Contract,
    pool: Contract,
    configurator: Contract,
    *,
    tokens: Mapping[str, Contract],
    listed: Mapping[str, ReserveParams],
    treasury: str,
) -> None:
    # Token implementations are shared by every reserve; each reserve gets its own proxies.
    a_token = deployer.deploy(_artifact("tokenization/AToken"), pool.address)
    stable_debt = deployer.deploy(_artifact("tokenization/StableDebtToken"), pool.address)
    variable_debt = deployer.deploy(_artifact("tokenization/VariableDebtToken"), pool.address)
    strategy_artifact = _artifact("pool/DefaultReserveInterestRateStrategy")
    strategies = {
        stable: deployer.deploy(
            strategy_artifact,
            provider.address,
            curve.optimal_usage,
            curve.base_variable,
            curve.variable_slope1,
            curve.variable_slope2,
            # Stable-rate borrowing stays disabled; these only need to be valid.
            0,  # stableRateSlope1
            0,  # stableRateSlope2
            _pct(0.02),  # baseStableRateOffset
            _pct(0.05),  # stableRateExcessOffset
            _pct(0.20),  # optimalStableToTotalDebtRatio
        ).address
        for stable, curve in ((False, VOLATILE_CURVE), (True, STABLE_CURVE))
    }
    inputs = []
    for symbol, params in listed.items():
        token = tokens[symbol]
        inputs.append(
            (
                a_token.address,
                stable_debt.address,
                variable_debt.address,
                token.functions.decimals().call(),
                strategies[params.stable],
                token.address,
                Web3.to_checksum_address(treasury),
                ZERO_ADDRESS,  # no incentives controller
                f"Aave Devnet {symbol}",
                f"a{symbol}",
                f"Aave Devnet Variable Debt {symbol}",
                f"variableDebt{symbol}",
                f"Aave Devnet Stable Debt {symbol}",
                f"stableDebt{symbol}",
                b"",
            )
        )
    # ~2.3M gas per reserve: one batch of four fits anvil's 30M block gas limit.
    deployer.send(configurator.functions.initReserves(inputs))


def _configure_reserves(
    deployer: Deployer,
    configurator: Contract,
    tokens: Mapping[str, Contract],
    listed: Mapping[str, ReserveParams],
    emode: EModeCategory,
) -> None:
    fn = configurator.functions
    for symbol, p in listed.items():
        asset = tokens[symbol].address
        configure_reserve(deployer, configurator, asset, p, collateral=True, borrowing=True)
    # The category must exist before assets join it, and its LT must exceed each member's.
    members = [s for s, p in listed.items() if p.emode_category == emode.id]
    if members:
        deployer.send(
            fn.setEModeCategory(
                emode.id,
                emode.ltv,
                emode.liquidation_threshold,
                emode.liquidation_bonus,
                ZERO_ADDRESS,  # no category price source: members use their own feeds
                emode.label,
            )
        )
        for symbol in members:
            deployer.send(fn.setAssetEModeCategory(tokens[symbol].address, emode.id))


__all__ = [
    "ADMIN_ROLES",
    "DEFAULT_RESERVES",
    "STABLECOINS_EMODE",
    "AaveDeployment",
    "EModeCategory",
    "RateCurve",
    "ReserveParams",
    "configure_reserve",
    "deploy_aave_v3",
    "deploy_configurator",
    "deploy_oracle",
    "deploy_pool",
    "deploy_provider_and_acl",
]

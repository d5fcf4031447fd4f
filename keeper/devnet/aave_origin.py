"""A second Aave market on the devnet: v3.6, built from @aave-dao/aave-v3-origin 3.6.0 sources.

The package ships Solidity only, so the contracts that get deployed are compiled here,
offline, with solcjs 0.8.27 (the npm alias `solc-0.8.27`) and the settings of the
package's foundry.toml (optimizer 200 runs, evm shanghai, no metadata hash). Its
`openzeppelin-contracts/` imports are remapped to the OpenZeppelin 5 that
@bgd-labs/solidity-utils (the package's one dependency) brings. The Pool links
BorrowLogic, FlashLoanLogic (which links BorrowLogic), LiquidationLogic, PoolLogic and
SupplyLogic; the PoolConfigurator links ConfiguratorLogic. Nothing is mocked but the
stable-debt placeholder that v3.2+ markets register (`MOCK_STABLE_DEBT`).

The market lists the devnet's WETH, WBTC, USDC and DAI (the same tokens as the v3.0
market) and WSTETH, a token of its own:

- WETH is priced through Chainlink's EACAggregatorProxy (@chainlink/contracts 0.8.0,
  compiled with solcjs 0.6.6) over the devnet WETH feed, so a test can switch the
  proxy's aggregator; WSTETH through a RatioCappedAdapter (contracts/devnet), which
  emits no AnswerUpdated; WBTC, USDC and DAI through their devnet feeds directly.
- E-mode 1 "Stablecoins" (collateral and borrowable: USDC, DAI), e-mode 2 "ETH
  correlated" (collateral: WETH and WSTETH, borrowable: WETH) and e-mode 3 "USDC borrow"
  (collateral: WETH and DAI, borrowable: USDC, WETH on its ltvzero bitmap). WSTETH has
  LTV 0 and LT 0 outside e-mode: since v3.6 it still counts as collateral inside e-mode 2.
- WBTC is put in a liquidation grace period (the longest the configurator allows, 4 h
  from the deploy block) after the borrowers open; `start_grace_period` starts another.
- A PriceOracleSentinel over a SequencerOracle that reports the sequencer up since
  timestamp 1, so liquidations are allowed until a test reports it down.
- WSTETH's exit is a Uniswap V2 WSTETH/WETH pair in the devnet's factory.
- Borrowers: one of each named shape (`SHAPES`: under and over $2k, multi-debt, every
  e-mode shape, the grace reserve, a deficit) and borrowers.plan_population's Aave plans
  for seed 36. E-mode 3's ltvzero bit is set after they open (nobody could supply into it).

Deploy order (each step was needed): the provider and ACL as for v3.0; the interest-rate
strategy *before* the Pool (v3.6's Pool takes one strategy for every reserve in its
constructor); the Pool, then the configurator (it caches the pool proxy); token
implementations with the pool proxy (the AToken takes the treasury in its constructor).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from eth_abi.abi import encode
from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract

from keeper.devnet.aave import BASE_CURRENCY_UNIT, ZERO_ADDRESS, EModeCategory, ReserveParams
from keeper.devnet.artifacts import Artifact, compile_solidity
from keeper.devnet.borrowers import (
    MAX_UINT,
    BorrowerPlan,
    RiskParams,
    SeedTargets,
    plan_population,
    seed_population,
    token_amount,
)
from keeper.devnet.deployer import Deployer, rpc
from keeper.devnet.info import AaveV36Info, TokenInfo
from keeper.devnet.tokens import FEED_DECIMALS, TokenSpec, devnet_contracts, mintable_erc20
from keeper.devnet.uniswap import pair_artifact, pool_amount
from keeper.errors import DevnetError
from keeper.paths import node_modules

MARKET_ID = "Keeper Devnet Market v3.6"
VERSION = "3.6.0"
ORIGIN_PACKAGE = "@aave-dao/aave-v3-origin"
SOLC_PACKAGE = "solc-0.8.27"
# The token only this market lists: a liquid-staking token priced by a ratio adapter over WETH.
WSTETH = TokenSpec("WSTETH", 18, Decimal("2400"))
WSTETH_RATIO = 12 * 10**17  # 1.2 WETH per WSTETH at deploy: 2000 x 1.2 = 2400 USD
# The ratio grows ~3.5 % a year (per second, in 1e18 units); the cap allows 5 % a year.
WSTETH_RATIO_GROWTH_PER_SECOND = WSTETH_RATIO * 350 // 10_000 // (365 * 86_400)
WSTETH_MAX_YEARLY_GROWTH_BPS = 500
# The longest liquidation grace period PoolConfigurator.setReservePause accepts (MAX_GRACE_PERIOD).
MAX_GRACE_PERIOD = 4 * 3600
GRACE_PERIOD_RESERVE = "WBTC"
# WSTETH's exit: a Uniswap V2 WSTETH/WETH pool in the devnet's factory, this deep each side
# (the keeper values and sells seized collateral through the V2 pairs).
WSTETH_POOL_USD = Decimal(50_000_000)
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

# The contracts that get deployed, by source unit (paths inside the package's src/).
_UNITS: Mapping[str, tuple[str, ...]] = {
    "contracts/protocol/configuration/PoolAddressesProvider.sol": ("PoolAddressesProvider",),
    "contracts/protocol/configuration/ACLManager.sol": ("ACLManager",),
    "contracts/instances/PoolInstance.sol": ("PoolInstance",),
    "contracts/instances/PoolConfiguratorInstance.sol": ("PoolConfiguratorInstance",),
    "contracts/instances/ATokenInstance.sol": ("ATokenInstance",),
    "contracts/instances/VariableDebtTokenInstance.sol": ("VariableDebtTokenInstance",),
    "contracts/misc/AaveOracle.sol": ("AaveOracle",),
    "contracts/misc/DefaultReserveInterestRateStrategyV2.sol": (
        "DefaultReserveInterestRateStrategyV2",
    ),
    "contracts/misc/PriceOracleSentinel.sol": ("PriceOracleSentinel",),
    "contracts/mocks/oracle/SequencerOracle.sol": ("SequencerOracle",),
    "contracts/helpers/AaveProtocolDataProvider.sol": ("AaveProtocolDataProvider",),
    "contracts/protocol/libraries/logic/BorrowLogic.sol": ("BorrowLogic",),
    "contracts/protocol/libraries/logic/ConfiguratorLogic.sol": ("ConfiguratorLogic",),
    "contracts/protocol/libraries/logic/FlashLoanLogic.sol": ("FlashLoanLogic",),
    "contracts/protocol/libraries/logic/LiquidationLogic.sol": ("LiquidationLogic",),
    "contracts/protocol/libraries/logic/PoolLogic.sol": ("PoolLogic",),
    "contracts/protocol/libraries/logic/SupplyLogic.sol": ("SupplyLogic",),
}
# Pool's libraries in deploy order: FlashLoanLogic links BorrowLogic, so BorrowLogic goes first.
POOL_LIBRARIES = ("BorrowLogic", "FlashLoanLogic", "LiquidationLogic", "PoolLogic", "SupplyLogic")


def origin_sources() -> tuple[str, ...]:
    """The source units compiled for the v3.6 market (the deployed contracts' files)."""
    return tuple(_UNITS)


@cache
def origin_artifacts() -> dict[str, Artifact]:
    """The v3.6 contracts, compiled with solcjs 0.8.27 as foundry.toml says (cached on disk)."""
    src = node_modules() / ORIGIN_PACKAGE / "src"
    oz = node_modules() / "@bgd-labs" / "solidity-utils" / "node_modules" / "@openzeppelin"
    oz = oz / "contracts"
    if not src.is_dir() or not oz.is_dir():
        raise DevnetError(f"{ORIGIN_PACKAGE} sources or OpenZeppelin 5 not found: run `npm ci`")
    return compile_solidity(
        {unit: src / unit for unit in _UNITS},
        roots=[src],
        optimizer_runs=200,
        evm_version="shanghai",
        solc=SOLC_PACKAGE,
        remappings={"openzeppelin-contracts/contracts/": oz},
        only={unit: list(names) for unit, names in _UNITS.items()},
        bytecode_hash="none",
    )


@cache
def eac_aggregator_proxy() -> Artifact:
    """Chainlink's EACAggregatorProxy (@chainlink/contracts 0.8.0), compiled with solcjs 0.6.6."""
    root = node_modules() / "@chainlink" / "contracts" / "src" / "v0.6"
    if not root.is_dir():
        raise DevnetError("@chainlink/contracts not found: run `npm ci`")
    unit = "EACAggregatorProxy.sol"
    return compile_solidity(
        {unit: root / unit},
        roots=[root],
        optimizer_runs=200,
        evm_version="istanbul",
        solc="solc-0.6.6",
        only={unit: ["EACAggregatorProxy"]},
    )["EACAggregatorProxy"]


def _artifact(name: str) -> Artifact:
    return origin_artifacts()[name]


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
    me = deployer.sender
    missing = sorted(s for s in ("WETH", "WBTC", "USDC", "DAI") if s not in tokens)
    if missing:
        raise DevnetError(f"deploy Aave v3.6: the devnet has no {', '.join(missing)}")
    wsteth = deployer.deploy(mintable_erc20(), "Devnet WSTETH", WSTETH.symbol, WSTETH.decimals)
    listed = {**{s: tokens[s] for s in ("WETH", "WBTC", "USDC", "DAI")}, WSTETH.symbol: wsteth}
    all_specs = {**{s: specs[s] for s in listed if s in specs}, WSTETH.symbol: WSTETH}

    provider = deployer.deploy(_artifact("PoolAddressesProvider"), MARKET_ID, me)
    deployer.send(provider.functions.setACLAdmin(me))
    acl = deployer.deploy(_artifact("ACLManager"), provider.address)
    deployer.send(provider.functions.setACLManager(acl.address))
    for role in ("addPoolAdmin", "addEmergencyAdmin", "addRiskAdmin", "addAssetListingAdmin"):
        deployer.send(acl.functions[role](me))

    rates = deployer.deploy(_artifact("DefaultReserveInterestRateStrategyV2"), provider.address)
    pool = _deploy_pool(deployer, provider, rates.address)
    configurator = _deploy_configurator(deployer, provider)
    data_provider = deployer.deploy(_artifact("AaveProtocolDataProvider"), provider.address)
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
    oracle = deployer.deploy(
        _artifact("AaveOracle"),
        provider.address,
        [listed[s].address for s in sources],
        list(sources.values()),
        ZERO_ADDRESS,  # no fallback oracle
        ZERO_ADDRESS,  # base currency 0x0 = USD
        BASE_CURRENCY_UNIT,
    )
    deployer.send(provider.functions.setPriceOracle(oracle.address))

    sequencer = deployer.deploy(_artifact("SequencerOracle"), me)
    # Up (answer 0) since timestamp 1: the sentinel's grace period passed long ago.
    deployer.send(sequencer.functions.setAnswer(False, 1))
    sentinel = deployer.deploy(
        _artifact("PriceOracleSentinel"), provider.address, sequencer.address, SENTINEL_GRACE_PERIOD
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


def _deploy_pool(deployer: Deployer, provider: Contract, rates: str) -> Contract:
    libraries: dict[str, str] = {}
    for name in POOL_LIBRARIES:
        libraries[name] = deployer.deploy(_artifact(name), libraries=libraries).address
    artifact = _artifact("PoolInstance")
    impl = deployer.deploy(artifact, provider.address, rates, libraries=libraries)
    # The provider creates the proxy and calls initialize(provider) on it.
    deployer.send(provider.functions.setPoolImpl(impl.address))
    return _proxy(deployer, artifact, provider.functions.getPool().call(), "Pool")


def _deploy_configurator(deployer: Deployer, provider: Contract) -> Contract:
    logic = deployer.deploy(_artifact("ConfiguratorLogic"))
    artifact = _artifact("PoolConfiguratorInstance")
    impl = deployer.deploy(artifact, libraries={"ConfiguratorLogic": logic.address})
    deployer.send(provider.functions.setPoolConfiguratorImpl(impl.address))
    address = provider.functions.getPoolConfigurator().call()
    return _proxy(deployer, artifact, address, "PoolConfigurator")


def _proxy(deployer: Deployer, artifact: Artifact, address: str, what: str) -> Contract:
    if int(address, 16) == 0 or not deployer.w3.eth.get_code(Web3.to_checksum_address(address)):
        raise DevnetError(f"deploy Aave v3.6: the addresses provider created no {what} proxy")
    return deployer.at(artifact, address)


def _list_reserves(
    deployer: Deployer,
    pool: Contract,
    configurator: Contract,
    listed: Mapping[str, Contract],
    treasury: str,
) -> None:
    a_token = deployer.deploy(
        _artifact("ATokenInstance"), pool.address, ZERO_ADDRESS, Web3.to_checksum_address(treasury)
    )
    variable_debt = deployer.deploy(
        _artifact("VariableDebtTokenInstance"), pool.address, ZERO_ADDRESS
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
        if p.liquidation_threshold:
            deployer.send(
                fn.configureReserveAsCollateral(
                    token.address, p.ltv, p.liquidation_threshold, p.liquidation_bonus
                )
            )
        deployer.send(fn.setReserveBorrowing(token.address, symbol in BORROWABLE))
        deployer.send(fn.setReserveFactor(token.address, p.reserve_factor))
        deployer.send(fn.setLiquidationProtocolFee(token.address, p.liquidation_protocol_fee))
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


def pool_artifact() -> Artifact:
    """The v3.6 Pool ABI (for the proxy at `AaveV36Info.pool`)."""
    return _artifact("PoolInstance")


def configurator_artifact() -> Artifact:
    return _artifact("PoolConfiguratorInstance")


def supply_liquidity(
    deployer: Deployer, market: AaveOriginDeployment, lender: ChecksumAddress, usd: Decimal
) -> None:
    """The lender supplies `usd` of every borrowable reserve so borrowers can borrow."""
    for symbol in BORROWABLE:
        token = market.tokens[symbol]
        amount = token_amount(usd, market.specs[symbol])
        deployer.send(token.functions.mint(lender, amount))
        deployer.send(token.functions.approve(market.pool.address, amount), sender=lender)
        deployer.send(market.pool.functions.supply(token.address, amount, lender, 0), sender=lender)


# The v3.6 market's share of the random population: its own seed, so its addresses differ.
POPULATION_SEED = 36
POPULATION_COUNT = 60


@dataclass(frozen=True)
class ShapePlan:
    """A named borrower shape: USD per asset, the e-mode, and the health factor aimed at."""

    name: str
    collateral_usd: Mapping[str, Decimal]
    debt_assets: tuple[str, ...]
    target_health: Decimal
    emode: int = 0


def _d(value: str) -> Decimal:
    return Decimal(value)


# One borrower of each shape the issue names; `borrowers` in devnet.json maps name -> address.
SHAPES: tuple[ShapePlan, ...] = (
    # Under $2k (the v3.3+ dust rule: all debt, all collateral, or leave $1k of both).
    ShapePlan("under_2k", {"WETH": _d("1500")}, ("USDC",), _d("1.04")),
    ShapePlan("under_2k_multi_debt", {"WETH": _d("1800")}, ("USDC", "DAI"), _d("1.04")),
    # Over $2k: the 50 % close factor applies only if both reserves are worth >= $2k.
    ShapePlan("over_2k", {"WETH": _d("40000")}, ("USDC",), _d("1.04")),
    ShapePlan("multi_debt", {"WETH": _d("30000"), "DAI": _d("8000")}, ("USDC", "WETH"), _d("1.05")),
    # E-mode 1: collateral in the bitmap, and collateral outside it (counts at its base LT).
    ShapePlan("emode_member", {"DAI": _d("20000")}, ("USDC",), _d("1.02"), emode=1),
    ShapePlan(
        "emode_non_member_collateral",
        {"DAI": _d("10000"), "WETH": _d("10000")},
        ("USDC",),
        _d("1.03"),
        emode=1,
    ),
    # E-mode 2: WSTETH has LT 0 outside e-mode and still counts inside it (v3.6).
    ShapePlan("emode_lt0_collateral", {"WSTETH": _d("25000")}, ("WETH",), _d("1.03"), emode=2),
    ShapePlan(
        "emode_mixed", {"WETH": _d("10000"), "WSTETH": _d("10000")}, ("WETH",), _d("1.04"), emode=2
    ),
    # E-mode 3: WETH is on the category's ltvzero bitmap (set after this borrower opened).
    ShapePlan(
        "emode_ltvzero", {"WETH": _d("10000"), "DAI": _d("10000")}, ("USDC",), _d("1.05"), emode=3
    ),
    # Collateral in the reserve put in a liquidation grace period.
    ShapePlan("grace_period", {"WBTC": _d("30000")}, ("USDC",), _d("1.04")),
    # Priced only by the silent adapter; a WSTETH ratio drop of ~10 % leaves a deficit.
    ShapePlan("deficit", {"WSTETH": _d("5000")}, ("WETH",), _d("1.01"), emode=2),
)


def shape_address(name: str) -> ChecksumAddress:
    """The seeded borrower of a named shape (a hash of the name: no key, impersonated)."""
    return Web3.to_checksum_address(keccak(f"keeper-devnet-aave36:{name}".encode())[12:])


def _thresholds(symbol: str, emode: int) -> tuple[int, int]:
    """(LTV, LT) in bps that v3.6 applies to a collateral (GenericLogic, by bitmap)."""
    for members in EMODES:
        if emode == members.category.id and symbol in members.collateral:
            return members.category.ltv, members.category.liquidation_threshold
    return RESERVES[symbol].ltv, RESERVES[symbol].liquidation_threshold


def shape_debts(shape: ShapePlan) -> dict[str, Decimal]:
    """USD debt per asset for the target health, below the borrow limit."""
    lt = sum(v * _thresholds(s, shape.emode)[1] for s, v in shape.collateral_usd.items()) / 10_000
    ltv = sum(v * _thresholds(s, shape.emode)[0] for s, v in shape.collateral_usd.items()) / 10_000
    total = min(Decimal(lt) / shape.target_health, Decimal(ltv) * Decimal("0.995"))
    share = total / len(shape.debt_assets)
    return {symbol: share for symbol in shape.debt_assets}


def risk_params() -> RiskParams:
    """What borrowers.size_debts needs for the random population on this market."""
    return RiskParams(
        aave_ltv_bps={s: r.ltv for s, r in RESERVES.items()},
        aave_lt_bps={s: r.liquidation_threshold for s, r in RESERVES.items()},
        emode_ltv_bps=STABLECOINS.ltv,
        emode_lt_bps=STABLECOINS.liquidation_threshold,
        morpho_lltv_wad=0,
    )


def population_plans() -> list[BorrowerPlan]:
    """The random part: borrowers.plan_population's Aave plans (stable e-mode is category 1)."""
    plans = plan_population(POPULATION_COUNT, POPULATION_SEED)
    return [p for p in plans if p.protocol == "aave_v3"]


def seed_borrowers(
    deployer: Deployer, market: AaveOriginDeployment, morpho: Contract
) -> dict[str, str]:
    """Open the named shapes and the random population; returns shape name -> address."""
    w3 = deployer.w3
    seed_population(
        w3,
        population_plans(),
        risk_params(),
        SeedTargets(
            tokens=market.tokens,
            specs=market.specs,
            aave_pool=market.pool,
            morpho=morpho,  # unused: the plans are Aave's only
            morpho_markets={},
        ),
    )
    opened: dict[str, str] = {}
    rpc(w3, "anvil_autoImpersonateAccount", True)
    try:
        for shape in SHAPES:
            who = shape_address(shape.name)
            rpc(w3, "anvil_setBalance", who, hex(10**20))
            try:
                _open_shape(market, shape, who)
            except DevnetError as exc:
                raise DevnetError(f"seeding v3.6 borrower {shape.name} ({who}): {exc}") from None
            opened[shape.name] = who
    finally:
        rpc(w3, "anvil_autoImpersonateAccount", False)
    return opened


def _open_shape(market: AaveOriginDeployment, shape: ShapePlan, who: ChecksumAddress) -> None:
    pool = market.pool
    as_user = Deployer(pool.w3, who)
    # E-mode first: WSTETH (LTV 0 outside e-mode) is enabled as collateral on supply only then.
    if shape.emode:
        as_user.send(pool.functions.setUserEMode(shape.emode))
    for symbol, usd in shape.collateral_usd.items():
        token = market.tokens[symbol]
        amount = token_amount(usd, market.specs[symbol])
        as_user.send(token.functions.mint(who, amount))
        as_user.send(token.functions.approve(pool.address, MAX_UINT))
        as_user.send(pool.functions.supply(token.address, amount, who, 0))
    for symbol, usd in shape_debts(shape).items():
        amount = token_amount(usd, market.specs[symbol])
        as_user.send(pool.functions.borrow(market.tokens[symbol].address, amount, 2, 0, who))


def deploy_v36_market(
    deployer: Deployer,
    tokens: Mapping[str, Contract],
    feeds: Mapping[str, Contract],
    specs: Mapping[str, TokenSpec],
    *,
    treasury: str,
    lender: ChecksumAddress,
    liquidator: ChecksumAddress,
    morpho: Contract,
    uniswap_factory: Contract,
    liquidity_usd: Decimal,
    liquidator_usd: Decimal,
) -> tuple[AaveV36Info, dict[str, str]]:
    """The whole v3.6 part of the devnet: market, liquidity, borrowers, grace period, and
    WSTETH's Uniswap V2 pool. Returns the market and the new pair ({"WSTETH/WETH": pair})."""
    market = deploy_aave_v36(deployer, tokens, feeds, specs, treasury)
    pairs = {"WSTETH/WETH": _wsteth_pool(deployer, market, uniswap_factory)}
    supply_liquidity(deployer, market, lender, liquidity_usd)
    # The liquidator already holds the devnet tokens; WSTETH is this market's own.
    wsteth = market.tokens[WSTETH.symbol]
    deployer.send(wsteth.functions.mint(liquidator, token_amount(liquidator_usd, WSTETH)))
    borrowers = seed_borrowers(deployer, market, morpho)
    for members in EMODES:
        for symbol in members.ltvzero:
            call = market.pool_configurator.functions.setAssetLtvzeroInEMode(
                market.tokens[symbol].address, members.category.id, True
            )
            deployer.send(call)
    # After the borrowers: a reserve in its grace period cannot be liquidated, but can be used.
    grace_asset = market.tokens[GRACE_PERIOD_RESERVE].address
    start_grace_period(deployer, market.pool_configurator, grace_asset)
    return market.info.model_copy(update={"borrowers": borrowers}), pairs


def _wsteth_pool(deployer: Deployer, market: AaveOriginDeployment, factory: Contract) -> str:
    """A WSTETH/WETH pair at the adapter's deploy price (1.2 WETH), minted straight in."""
    wsteth, weth = market.tokens[WSTETH.symbol], market.tokens["WETH"]
    deployer.send(factory.functions.createPair(wsteth.address, weth.address))
    address = factory.functions.getPair(wsteth.address, weth.address).call()
    pair = deployer.at(pair_artifact(), address)
    for token, spec in ((wsteth, WSTETH), (weth, market.specs["WETH"])):
        deployer.send(token.functions.mint(pair.address, pool_amount(WSTETH_POOL_USD, spec)))
    deployer.send(pair.functions.mint(deployer.sender))
    return str(address)


__all__ = [
    "EMODES",
    "RESERVES",
    "SHAPES",
    "WSTETH",
    "AaveOriginDeployment",
    "EModeMembers",
    "ShapePlan",
    "deploy_aave_v36",
    "deploy_v36_market",
    "eac_aggregator_proxy",
    "end_grace_period",
    "origin_artifacts",
    "seed_borrowers",
    "start_grace_period",
]

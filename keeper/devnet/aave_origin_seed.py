"""The v3.6 market's side of the devnet: liquidity, WSTETH's pool, and its borrowers.

`deploy_v36_market` is what deploy_devnet calls (after Uniswap V3): the market
(keeper/devnet/aave_origin.py), the lender's liquidity, a Uniswap V2 WSTETH/WETH pair (the
keeper values and sells seized WSTETH through the V2 pairs), one borrower of each named
shape (`SHAPES`) plus borrowers.plan_population's Aave plans for seed 36, then the ltvzero
bit of e-mode 3 and the grace period of WBTC (both after the borrowers: nobody could open
into them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract

from keeper.devnet.aave_origin import (
    BORROWABLE,
    EMODES,
    GRACE_PERIOD_RESERVE,
    RESERVES,
    STABLECOINS,
    WSTETH,
    AaveOriginDeployment,
    deploy_aave_v36,
    start_grace_period,
)
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
from keeper.devnet.info import AaveV36Info
from keeper.devnet.tokens import TokenSpec
from keeper.devnet.uniswap import pair_artifact, pool_amount
from keeper.errors import DevnetError

# WSTETH's exit: a Uniswap V2 WSTETH/WETH pool in the devnet's factory, this deep each side.
WSTETH_POOL_USD = Decimal(50_000_000)

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
    # Over $2k in all, but one collateral reserve under it: seizing DAI may take 100 %.
    ShapePlan("one_reserve_under_2k", {"WETH": _d("20000"), "DAI": _d("1500")}, ("USDC",),
              _d("1.04")),
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
    "SHAPES",
    "ShapePlan",
    "deploy_v36_market",
    "population_plans",
    "seed_borrowers",
    "shape_address",
]

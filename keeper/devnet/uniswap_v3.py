"""Deploy the real Uniswap V3 (factory, pools, SwapRouter, QuoterV2) on the devnet.

The contracts come unchanged from the npm build artifacts of @uniswap/v3-core 1.0.1
and @uniswap/v3-periphery. The periphery computes pool addresses from the pool
init-code hash compiled into it (PoolAddress.POOL_INIT_CODE_HASH, 0xe34f…8b54),
which matches only the npm UniswapV3Pool creation code the factory deploys; a test
checks both.

Each pool of `V3_POOLS` starts at the feed prices and gets positions minted through
the NonfungiblePositionManager (several per transaction, through its `multicall`):
some concentrated around the price, some wide or full-range, and on two pools a
ladder of narrow one-sided positions (range orders) that swaps cross one after
another. Some pairs are deeper here than on the devnet's Uniswap V2 near the price
(WETH/USDC, WETH/DAI, USDC/DAI), one is shallower (WBTC/USDC), one has no V3 pool at
all (WBTC/DAI) and one tier holds a single range that a large swap exhausts
(WETH/USDC 1 %).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from math import isqrt

from web3.contract import Contract

from keeper.devnet.artifacts import Artifact, hardhat
from keeper.devnet.deployer import Deployer
from keeper.devnet.info import UniswapV3Info
from keeper.devnet.tokens import TokenSpec
from keeper.devnet.uniswap import pool_amount
from keeper.errors import DevnetError

# The pool init-code hash PoolAddress.computeAddress has compiled in (mainnet's value).
POOL_INIT_CODE_HASH = bytes.fromhex(
    "e34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54"
)
TICK_SPACINGS = {500: 10, 3000: 60, 10000: 200}  # the factory's default fee tiers
MINTS_PER_TRANSACTION = 20
_MAX_TICK = 887272
_NO_DEADLINE = 2**64


@dataclass(frozen=True)
class Range:
    """A position: its price range relative to the start price (None: full range) and the
    most it deposits of each token, in USD."""

    low: Decimal | None
    high: Decimal | None
    usd: Decimal


@dataclass(frozen=True)
class PoolPlan:
    """One pool: its tokens, fee tier, positions and an optional ladder of `ladder`
    one-sided positions on each side of the price, `ladder_usd` each."""

    a: str
    b: str
    fee: int
    ranges: tuple[Range, ...]
    ladder: int = 0
    ladder_usd: Decimal = Decimal(0)


def _r(low: str | None, high: str | None, usd: int) -> Range:
    return Range(None if low is None else Decimal(low), None if high is None else Decimal(high),
                 Decimal(usd))


V3_POOLS: tuple[PoolPlan, ...] = (
    PoolPlan("WETH", "USDC", 500, (_r("0.99", "1.01", 4_000_000), _r("0.95", "1.05", 10_000_000),
                                   _r(None, None, 1_000_000))),
    PoolPlan("WETH", "USDC", 3000, (_r(None, None, 3_000_000), _r("0.5", "2", 5_000_000)),
             ladder=50, ladder_usd=Decimal(100_000)),
    PoolPlan("WETH", "USDC", 10000, (_r("0.8", "1.25", 2_000_000),)),
    PoolPlan("WETH", "DAI", 500, (_r("0.98", "1.02", 3_000_000),)),
    PoolPlan("WETH", "DAI", 3000, (_r(None, None, 4_000_000), _r("0.9", "1.1", 6_000_000))),
    PoolPlan("WBTC", "WETH", 500, (_r("0.98", "1.02", 4_000_000),),
             ladder=50, ladder_usd=Decimal(50_000)),
    PoolPlan("WBTC", "WETH", 3000, (_r(None, None, 5_000_000), _r("0.9", "1.1", 5_000_000))),
    PoolPlan("WBTC", "USDC", 3000, (_r(None, None, 2_000_000),)),
    PoolPlan("WBTC", "USDC", 10000, (_r("0.7", "1.3", 1_000_000),)),
    PoolPlan("USDC", "DAI", 500, (_r("0.995", "1.005", 20_000_000), _r(None, None, 1_000_000))),
)


def _core(relative: str) -> Artifact:
    return hardhat("@uniswap/v3-core", f"artifacts/contracts/{relative}")


def factory_artifact() -> Artifact:
    return _core("UniswapV3Factory.sol/UniswapV3Factory.json")


def pool_artifact() -> Artifact:
    return _core("UniswapV3Pool.sol/UniswapV3Pool.json")


def _periphery(relative: str) -> Artifact:
    return hardhat("@uniswap/v3-periphery", f"artifacts/contracts/{relative}")


def router_artifact() -> Artifact:
    return _periphery("SwapRouter.sol/SwapRouter.json")


def quoter_artifact() -> Artifact:
    return _periphery("lens/QuoterV2.sol/QuoterV2.json")


def position_manager_artifact() -> Artifact:
    return _periphery("NonfungiblePositionManager.sol/NonfungiblePositionManager.json")


def pool_key(a: str, b: str, fee: int) -> str:
    """The `pools` key: symbols as the plan lists them and the fee, e.g. "WETH/USDC/500"."""
    return f"{a}/{b}/{fee}"


def start_sqrt_price(spec0: TokenSpec, spec1: TokenSpec) -> int:
    """sqrtPriceX96 of token1 per token0 (base units) at the specs' USD prices, rounded down."""
    price = Fraction(spec0.usd_price) / Fraction(spec1.usd_price) \
        * Fraction(10) ** (spec1.decimals - spec0.decimals)
    return isqrt(price.numerator * 2**192 // price.denominator)


def _tick_of(sqrt_price: int) -> int:
    """The tick at a sqrt price (floats: only to place position bounds)."""
    return math.floor(math.log((sqrt_price / 2**96) ** 2) / math.log(1.0001))


def _bounds(plan_range: Range, tick: int, spacing: int, token0_first: bool) -> tuple[int, int]:
    """Spaced ticks of a range given as price multiples of the plan's first token in the
    second; the pool's price is token1 per token0, so the range flips when they swap."""
    top = (_MAX_TICK // spacing) * spacing
    if plan_range.low is None or plan_range.high is None:
        return -top, top
    low, high = plan_range.low, plan_range.high
    if not token0_first:
        low, high = 1 / high, 1 / low
    lower = tick + math.floor(math.log(float(low)) / math.log(1.0001))
    upper = tick + math.ceil(math.log(float(high)) / math.log(1.0001))
    return max(-top, lower // spacing * spacing), min(top, -(-upper // spacing) * spacing)


def _ladder(count: int, tick: int, spacing: int) -> list[tuple[int, int]]:
    """`count` one-spacing-wide ranges on each side of the current tick, one spacing apart:
    each initializes two ticks of its own."""
    base = tick // spacing * spacing
    above = [(base + spacing * (2 * i + 2), base + spacing * (2 * i + 3)) for i in range(count)]
    below = [(base - spacing * (2 * i + 2), base - spacing * (2 * i + 1)) for i in range(count)]
    return above + below


@dataclass(frozen=True)
class UniswapV3Deployment:
    """The deployed contracts and their devnet.json description."""

    info: UniswapV3Info
    factory: Contract
    router: Contract
    quoter: Contract
    position_manager: Contract
    pools: Mapping[str, Contract]


def deploy_uniswap_v3(
    deployer: Deployer,
    tokens: Mapping[str, Contract],
    specs: tuple[TokenSpec, ...],
    plans: tuple[PoolPlan, ...] = V3_POOLS,
    *,
    weth_symbol: str = "WETH",
) -> UniswapV3Deployment:
    """Factory, NonfungiblePositionManager, SwapRouter, QuoterV2 and the planned pools."""
    by_symbol = {s.symbol: s for s in specs}
    symbols = {s for p in plans for s in (p.a, p.b)} | {weth_symbol}
    missing = sorted(s for s in symbols if s not in tokens or s not in by_symbol)
    if missing:
        raise DevnetError(f"uniswap v3: no deployed token for {', '.join(missing)}")
    weth = tokens[weth_symbol].address
    factory = deployer.deploy(factory_artifact())
    manager = deployer.deploy(position_manager_artifact(), factory.address, weth,
                              "0x" + "00" * 20)
    router = deployer.deploy(router_artifact(), factory.address, weth)
    quoter = deployer.deploy(quoter_artifact(), factory.address, weth)

    # Fund the deployer with what every position may take, and let the manager pull it.
    needed: dict[str, int] = {}
    for plan in plans:
        usd = sum((r.usd for r in plan.ranges), Decimal(0)) + plan.ladder * plan.ladder_usd
        for symbol in (plan.a, plan.b):
            needed[symbol] = needed.get(symbol, 0) + pool_amount(usd, by_symbol[symbol])
    for symbol, amount in needed.items():
        deployer.send(tokens[symbol].functions.mint(deployer.sender, amount))
        deployer.send(tokens[symbol].functions.approve(manager.address, amount))

    pools: dict[str, Contract] = {}
    mints: list[str] = []
    for plan in plans:
        key = pool_key(plan.a, plan.b, plan.fee)
        spec_a, spec_b = by_symbol[plan.a], by_symbol[plan.b]
        token_a, token_b = tokens[plan.a].address, tokens[plan.b].address
        a_first = int(token_a, 16) < int(token_b, 16)
        (token0, spec0), (token1, spec1) = sorted(
            ((token_a, spec_a), (token_b, spec_b)), key=lambda t: int(t[0], 16))
        sqrt_price = start_sqrt_price(spec0, spec1)
        deployer.send(manager.functions.createAndInitializePoolIfNecessary(
            token0, token1, plan.fee, sqrt_price))
        address = factory.functions.getPool(token0, token1, plan.fee).call()
        pools[key] = deployer.at(pool_artifact(), address)
        tick, spacing = _tick_of(sqrt_price), TICK_SPACINGS[plan.fee]
        positions = [(*_bounds(r, tick, spacing, a_first), r.usd) for r in plan.ranges]
        positions += [(lo, hi, plan.ladder_usd) for lo, hi in _ladder(plan.ladder, tick, spacing)]
        for lower, upper, usd in positions:
            mints.append(manager.encode_abi("mint", args=[(
                token0, token1, plan.fee, lower, upper, pool_amount(usd, spec0),
                pool_amount(usd, spec1), 0, 0, deployer.sender, _NO_DEADLINE,
            )]))
    for start in range(0, len(mints), MINTS_PER_TRANSACTION):
        deployer.send(manager.functions.multicall(mints[start : start + MINTS_PER_TRANSACTION]))
    for key, pool in pools.items():
        if pool.functions.liquidity().call() == 0:
            raise DevnetError(f"uniswap v3: pool {key} has no liquidity at its price")

    info = UniswapV3Info(
        factory=factory.address, router=router.address, quoter=quoter.address,
        position_manager=manager.address,
        pools={key: pool.address for key, pool in pools.items()},
    )
    return UniswapV3Deployment(info=info, factory=factory, router=router, quoter=quoter,
                               position_manager=manager, pools=pools)


def encode_path(*hops: str | int) -> bytes:
    """A V3 router/quoter path: token, fee, token, fee, token ... (20 + 3 + 20 bytes ...)."""
    out = b""
    for i, hop in enumerate(hops):
        out += bytes.fromhex(str(hop).removeprefix("0x")) if i % 2 == 0 \
            else int(hop).to_bytes(3, "big")
    return out

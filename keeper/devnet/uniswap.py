"""Deploy the real Uniswap V2 (factory, router, pairs) on the devnet.

The contracts come unchanged from the npm build artifacts of @uniswap/v2-core
and @uniswap/v2-periphery. They must not be recompiled: UniswapV2Router02
computes pair addresses from an init-code hash baked into its bytecode
(0x96e8ac42…845f), which matches only the npm UniswapV2Pair creation code.

Every pair among the tokens gets a deep pool seeded at the feed prices, so
the keeper's swaps on the devnet see realistic, low-slippage quotes.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, localcontext

from eth_utils.crypto import keccak
from web3.contract import Contract

from keeper.devnet.artifacts import Artifact, hardhat
from keeper.devnet.deployer import Deployer
from keeper.devnet.info import UniswapV2Info
from keeper.devnet.tokens import TokenSpec
from keeper.errors import DevnetError

# USD depth of each side of every pool.
DEFAULT_LIQUIDITY_USD = Decimal(50_000_000)
# The pair init-code hash UniswapV2Library.pairFor has compiled in (mainnet's value).
ROUTER_INIT_CODE_HASH = bytes.fromhex(
    "96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f"
)


def factory_artifact() -> Artifact:
    return hardhat("@uniswap/v2-core", "build/UniswapV2Factory.json")


def pair_artifact() -> Artifact:
    return hardhat("@uniswap/v2-core", "build/UniswapV2Pair.json")


def router_artifact() -> Artifact:
    return hardhat("@uniswap/v2-periphery", "build/UniswapV2Router02.json")


def pair_init_code_hash() -> bytes:
    """keccak256 of the npm UniswapV2Pair creation code (what CREATE2 in the factory uses)."""
    return keccak(pair_artifact().linked({}))


def pair_key(a: str, b: str) -> str:
    """The `pairs` key: symbols in the order the caller lists them, e.g. "WETH/USDC"."""
    return f"{a}/{b}"


def pool_amount(usd: Decimal, spec: TokenSpec) -> int:
    """Token base units worth `usd` at the spec price, rounded down."""
    with localcontext() as ctx:
        ctx.prec = 80  # exact for any realistic depth and decimals
        units = usd * Decimal(10) ** spec.decimals / spec.usd_price
        return int(units.to_integral_value(rounding=ROUND_FLOOR))


@dataclass(frozen=True)
class UniswapV2Deployment:
    """The deployed contracts and their devnet.json description."""

    info: UniswapV2Info
    factory: Contract
    router: Contract
    pairs: Mapping[str, Contract]


def deploy_uniswap_v2(
    deployer: Deployer,
    tokens: Mapping[str, Contract],
    specs: tuple[TokenSpec, ...],
    liquidity_usd: Decimal = DEFAULT_LIQUIDITY_USD,
    *,
    weth_symbol: str = "WETH",
) -> UniswapV2Deployment:
    """Factory, Router02 and a seeded pool for every pair of `specs` tokens.

    The router's WETH is our `weth_symbol` token when present. It is a plain
    mintable ERC-20 (no deposit/withdraw), so the router's *ETH* entry points
    do not work; the token-to-token ones, which the keeper uses, do.
    """
    if liquidity_usd <= 0:
        raise DevnetError(f"uniswap v2: liquidity_usd must be positive, got {liquidity_usd}")
    missing = [s.symbol for s in specs if s.symbol not in tokens]
    if missing:
        raise DevnetError(f"uniswap v2: no deployed token for {', '.join(missing)}")
    if weth_symbol not in tokens:
        raise DevnetError(f"uniswap v2: the router needs a {weth_symbol} token")
    factory = deployer.deploy(factory_artifact(), deployer.sender)
    router = deployer.deploy(router_artifact(), factory.address, tokens[weth_symbol].address)
    pair_abi = pair_artifact()

    pairs: dict[str, Contract] = {}
    for spec_a, spec_b in itertools.combinations(specs, 2):
        key = pair_key(spec_a.symbol, spec_b.symbol)
        token_a, token_b = tokens[spec_a.symbol], tokens[spec_b.symbol]
        deployer.send(factory.functions.createPair(token_a.address, token_b.address))
        address = factory.functions.getPair(token_a.address, token_b.address).call()
        pair = deployer.at(pair_abi, address)
        # Minting straight into the pair is the same as mint-then-transfer, one tx cheaper.
        for token, spec in ((token_a, spec_a), (token_b, spec_b)):
            deployer.send(token.functions.mint(pair.address, pool_amount(liquidity_usd, spec)))
        deployer.send(pair.functions.mint(deployer.sender))
        if pair.functions.totalSupply().call() == 0:
            raise DevnetError(f"uniswap v2: pool {key} has no liquidity after mint")
        pairs[key] = pair

    info = UniswapV2Info(
        factory=factory.address,
        router=router.address,
        pairs={key: pair.address for key, pair in pairs.items()},
    )
    return UniswapV2Deployment(info=info, factory=factory, router=router, pairs=pairs)

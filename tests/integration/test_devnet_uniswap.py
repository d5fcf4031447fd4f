"""The real Uniswap V2 from npm on the session devnet: init-code hash, pools, quotes and a swap."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal

import pytest
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD

from keeper.devnet.deployer import Deployer
from keeper.devnet.info import UniswapV2Info
from keeper.devnet.uniswap import (
    DEFAULT_LIQUIDITY_USD,
    ROUTER_INIT_CODE_HASH,
    factory_artifact,
    pair_artifact,
    pair_init_code_hash,
    pool_amount,
    router_artifact,
)
from tests.conftest import TEST_SPEC, Devnet
from tests.integration.helpers import SPECS, contract, deployer, fresh_accounts, tokens


@dataclass
class Env:
    devnet: Devnet
    w3: Web3
    deployer: Deployer
    tokens: dict[str, Contract]
    info: UniswapV2Info
    factory: Contract
    router: Contract
    pairs: dict[str, Contract]


@pytest.fixture
def env(devnet: Devnet) -> Env:
    info = devnet.info.uniswap_v2
    pair_abi = pair_artifact()
    return Env(
        devnet=devnet,
        w3=devnet.w3,
        deployer=deployer(devnet),
        tokens=tokens(devnet),
        info=info,
        factory=contract(devnet, factory_artifact(), info.factory),
        router=contract(devnet, router_artifact(), info.router),
        pairs={key: contract(devnet, pair_abi, address) for key, address in info.pairs.items()},
    )


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountOut (0.3 % fee), written out independently."""
    return amount_in * 997 * reserve_out // (reserve_in * 1000 + amount_in * 997)


def reserves(env: Env, token_in: str, token_out: str) -> tuple[int, int]:
    pair = env.pairs.get(f"{token_in}/{token_out}") or env.pairs[f"{token_out}/{token_in}"]
    r0, r1, _ = pair.functions.getReserves().call()
    token0 = pair.functions.token0().call()
    return (r0, r1) if token0 == env.tokens[token_in].address else (r1, r0)


def test_router_init_code_hash_matches_npm_pair_bytecode(env: Env) -> None:
    assert pair_init_code_hash() == ROUTER_INIT_CODE_HASH
    router_code = bytes(env.w3.eth.get_code(env.router.address))
    assert ROUTER_INIT_CODE_HASH in router_code


def test_every_pair_exists_with_pools_at_feed_prices(env: Env) -> None:
    symbols = [s.symbol for s in TEST_SPEC.tokens]
    expected_keys = {f"{a}/{b}" for a, b in itertools.combinations(symbols, 2)}
    # Plus the v3.6 Aave market's WSTETH/WETH (keeper/devnet/aave_origin.py, deployed later;
    # tests/integration/test_devnet_aave_origin.py checks its pool).
    assert set(env.info.pairs) == expected_keys | {"WSTETH/WETH"}
    assert len(expected_keys) == 6
    factory = env.factory
    assert factory.functions.allPairsLength().call() == 7
    assert env.router.functions.factory().call() == factory.address
    assert env.router.functions.WETH().call() == env.tokens["WETH"].address
    for key, address in env.info.pairs.items():
        if key not in expected_keys:
            continue
        a, b = key.split("/")
        assert factory.functions.getPair(env.tokens[a].address, env.tokens[b].address).call() == (
            address
        )
        reserve_a, reserve_b = reserves(env, a, b)
        assert reserve_a == pool_amount(DEFAULT_LIQUIDITY_USD, SPECS[a])
        assert reserve_b == pool_amount(DEFAULT_LIQUIDITY_USD, SPECS[b])
        # The pool's mid price is the feed price ratio (to 1e-6, the rounding of the amounts).
        mid = (Decimal(reserve_b) / 10 ** SPECS[b].decimals) / (
            Decimal(reserve_a) / 10 ** SPECS[a].decimals
        )
        assert abs(mid / (SPECS[a].usd_price / SPECS[b].usd_price) - 1) < Decimal("1e-6")


def test_router_quotes_against_factory_pairs(env: Env) -> None:
    amount_in = 10 * 10**18  # 10 WETH
    path = [env.tokens["WETH"].address, env.tokens["USDC"].address]
    quote = env.router.functions.getAmountsOut(amount_in, path).call()
    reserve_in, reserve_out = reserves(env, "WETH", "USDC")
    assert quote == [amount_in, get_amount_out(amount_in, reserve_in, reserve_out)]
    # About $20,000 minus the 0.3 % fee and a tiny price impact on a $50M pool.
    assert 19_930 * 10**6 < quote[1] < 19_940 * 10**6

    # A two-hop path routes through the intermediate pair.
    hop = [env.tokens["WBTC"].address, env.tokens["WETH"].address, env.tokens["DAI"].address]
    amounts = env.router.functions.getAmountsOut(10**8, hop).call()
    mid = get_amount_out(10**8, *reserves(env, "WBTC", "WETH"))
    assert amounts == [10**8, mid, get_amount_out(mid, *reserves(env, "WETH", "DAI"))]


def test_swap_exact_tokens_for_tokens_pays_the_quote(env: Env) -> None:
    (trader,) = fresh_accounts(env.devnet, 1)
    weth, usdc = env.tokens["WETH"], env.tokens["USDC"]
    amount_in = 25 * 10**18
    env.deployer.send(weth.functions.mint(trader, amount_in))
    env.deployer.send(weth.functions.approve(env.router.address, amount_in), sender=trader)

    path = [weth.address, usdc.address]
    reserve_in, reserve_out = reserves(env, "WETH", "USDC")
    quote = env.router.functions.getAmountsOut(amount_in, path).call()[-1]
    expected = get_amount_out(amount_in, reserve_in, reserve_out)
    assert quote == expected
    usdc_before = usdc.functions.balanceOf(trader).call()
    deadline = env.w3.eth.get_block("latest")["timestamp"] + 600

    receipt = env.deployer.send(
        env.router.functions.swapExactTokensForTokens(amount_in, expected, path, trader, deadline),
        sender=trader,
    )

    assert receipt["status"] == 1
    assert usdc.functions.balanceOf(trader).call() - usdc_before == expected
    assert weth.functions.balanceOf(trader).call() == 0
    assert reserves(env, "WETH", "USDC") == (reserve_in + amount_in, reserve_out - expected)
    # The pair's Swap event reports the same amounts.
    pair = env.pairs["WETH/USDC"]
    # DISCARD: the receipt also holds the tokens' Transfer logs, which are not Swaps.
    (swap,) = pair.events.Swap().process_receipt(receipt, errors=DISCARD)
    assert swap["address"] == pair.address
    weth_is_token0 = pair.functions.token0().call() == weth.address
    amount_in_logged = swap["args"]["amount0In"] if weth_is_token0 else swap["args"]["amount1In"]
    out_logged = swap["args"]["amount1Out"] if weth_is_token0 else swap["args"]["amount0Out"]
    assert (amount_in_logged, out_logged) == (amount_in, expected)

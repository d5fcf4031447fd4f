"""The devnet arbitrageur (keeper/devnet/arbitrage.py) brings every Uniswap pool of two
priced tokens to the ratio of their prices: after WETH's price falls 20 % (and WBTC's
rises 10 %), each V2 pair and V3 pool holding WETH or WBTC reads within its tolerance of the
new ratio, and a second call with the same prices sends nothing."""

from __future__ import annotations

from decimal import Decimal

from web3 import Web3

from keeper.devnet.arbitrage import Arbitrageur
from keeper.devnet.tokens import DEFAULT_TOKENS
from keeper.devnet.uniswap import pair_artifact
from keeper.devnet.uniswap_v3 import pool_artifact
from tests.conftest import Devnet

Q96 = 2**96


def test_pools_follow_the_prices(devnet: Devnet) -> None:
    info = devnet.info
    prices = {t.symbol: t.usd_price for t in DEFAULT_TOKENS}
    prices["WETH"] *= Decimal("0.8")
    prices["WBTC"] *= Decimal("1.1")
    arbitrageur = Arbitrageur(info, info.rpc_url, tolerance_bps=20)
    assert arbitrageur.follow(prices) > 0
    symbol = {t.address.lower(): s for s, t in info.tokens.items()}
    w3 = devnet.w3
    checked = 0

    def ratio_ok(token0: str, token1: str, price: Decimal) -> bool:
        s0, s1 = symbol.get(token0.lower()), symbol.get(token1.lower())
        if s0 not in prices or s1 not in prices:  # a token with no price: left alone
            return True
        assert s0 is not None and s1 is not None
        scale = Decimal(10) ** (info.tokens[s1].decimals - info.tokens[s0].decimals)
        target = prices[s0] / prices[s1] * scale
        return abs(price / target - 1) < Decimal("0.003")  # the tolerance and a fee's round

    for address in info.uniswap_v2.pairs.values():
        pair = w3.eth.contract(address=Web3.to_checksum_address(address), abi=pair_artifact().abi)
        t0, t1 = pair.functions.token0().call(), pair.functions.token1().call()
        r0, r1, _ = pair.functions.getReserves().call()
        assert ratio_ok(t0, t1, Decimal(r1) / Decimal(r0)), (address, r0, r1)
        checked += 1
    assert info.uniswap_v3 is not None
    for address in info.uniswap_v3.pools.values():
        pool = w3.eth.contract(address=Web3.to_checksum_address(address), abi=pool_artifact().abi)
        t0, t1 = pool.functions.token0().call(), pool.functions.token1().call()
        sqrt_price = pool.functions.slot0().call()[0]
        assert ratio_ok(t0, t1, (Decimal(sqrt_price) / Q96) ** 2), address
        checked += 1
    assert checked >= 4
    assert arbitrageur.follow(prices) == 0  # at the prices already

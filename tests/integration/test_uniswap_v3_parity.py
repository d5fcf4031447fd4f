"""Uniswap V3 on the session devnet: the npm contracts as deployed, and the local quotes
(keeper.dex.uniswap_v3) equal to QuoterV2's to the unit, before and after mints, burns and
swaps that the book learns from the pools' logs only.

The swaps are random (seeded; the seed is printed, and KEEPER_V3_PARITY_SEED replays one),
on every pool and fee tier, both directions, exact input and exact output, from one unit to
more than the pool holds: many cross dozens of initialized ticks (the ladders), some exhaust
every range (a partial fill for exact input, a revert for exact output).
"""

from __future__ import annotations

import json
import math
import os
import random
import urllib.request
from typing import Any

from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError

from keeper.chain.http import HttpRpc
from keeper.devnet.info import UniswapV3Info
from keeper.devnet.uniswap_v3 import (
    POOL_INIT_CODE_HASH,
    V3_POOLS,
    factory_artifact,
    pool_artifact,
    pool_key,
    position_manager_artifact,
    quoter_artifact,
    router_artifact,
)
from keeper.dex.uniswap_v2 import PairBook
from keeper.dex.uniswap_v3 import V3Book
from keeper.dex.v3_math import UniswapV3Error
from keeper.dex.v3_pool import (
    V3Pool,
    amount_in_of,
    amount_out_of,
    default_limit,
    quote_exact_input_single,
    quote_exact_output_single,
)
from keeper.errors import DevnetError
from tests.conftest import Devnet
from tests.integration.helpers import contract, deployer, fresh_accounts, tokens

SWAPS_PER_SIDE = 10  # per pool, direction and kind (exact in / exact out)
NO_DEADLINE = 2**64


def v3_info(devnet: Devnet) -> UniswapV3Info:
    info = devnet.info.uniswap_v3
    assert info is not None
    return info


def raw_batch(url: str, calls: list[dict[str, Any]]) -> list[tuple[str | None, str | None]]:
    """eth_calls in one JSON-RPC batch: (result, None) or (None, error message) each."""
    body = [{"jsonrpc": "2.0", "id": i, "method": "eth_call", "params": [c, "latest"]}
            for i, c in enumerate(calls)]
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        answers = {a["id"]: a for a in json.loads(response.read())}
    return [(answers[i].get("result"), (answers[i].get("error") or {}).get("message"))
            for i in range(len(calls))]


def local(pool: V3Pool, zero_for_one: bool, amount: int, exact_in: bool) -> tuple[int, int] | None:
    """(amount out or in, sqrt price after) as the mirror computes it; None where it reverts."""
    try:
        if exact_in:
            result = quote_exact_input_single(pool, zero_for_one, amount)
            return amount_out_of(result, zero_for_one), result.sqrt_price_x96
        result = quote_exact_output_single(pool, zero_for_one, amount)
        return amount_in_of(result, zero_for_one), result.sqrt_price_x96
    except UniswapV3Error:
        return None


def random_swaps(book: V3Book, rng: random.Random) -> list[tuple[V3Pool, bool, int, bool]]:
    """Per pool, direction and kind: amounts log-uniform from 1 unit to what exhausts every
    range that way, and two beyond it."""
    swaps = []
    for pool in book.by_address.values():
        for zero_for_one in (True, False):
            try:
                drained = quote_exact_input_single(pool, zero_for_one, 2**200)
            except UniswapV3Error:  # no liquidity at all that way
                continue
            most_in = amount_in_of(drained, zero_for_one)
            most_out = amount_out_of(drained, zero_for_one)
            for exact_in, top in ((True, most_in), (False, most_out)):
                if top < 2:
                    continue
                amounts = [max(1, int(10 ** rng.uniform(0, math.log10(top))))
                           for _ in range(SWAPS_PER_SIDE - 2)]
                amounts += [int(top * rng.uniform(1.0, 3.0)) for _ in range(2)]  # exhaust it
                swaps += [(pool, zero_for_one, amount, exact_in) for amount in amounts]
    return swaps


def check_parity(devnet: Devnet, book: V3Book, rng: random.Random) -> dict[str, int]:
    """Every random swap quoted locally and by QuoterV2 (one batch): equal, reverts included."""
    quoter = contract(devnet, quoter_artifact(), v3_info(devnet).quoter)
    swaps = random_swaps(book, rng)
    calls = []
    for pool, zero_for_one, amount, exact_in in swaps:
        token_in, token_out = (pool.token0, pool.token1) if zero_for_one \
            else (pool.token1, pool.token0)
        params = (Web3.to_checksum_address(token_in), Web3.to_checksum_address(token_out),
                  amount, pool.fee, 0)
        name = "quoteExactInputSingle" if exact_in else "quoteExactOutputSingle"
        calls.append({"to": quoter.address, "data": quoter.encode_abi(name, args=[params])})
    seen = {"quotes": 0, "reverts": 0, "partial": 0, "max_crossed": 0}
    for (pool, zero_for_one, amount, exact_in), (result, error) in zip(
        swaps, raw_batch(devnet.info.rpc_url, calls), strict=True
    ):
        mine = local(pool, zero_for_one, amount, exact_in)
        where = f"{pool.address} fee {pool.fee} zeroForOne={zero_for_one} " \
            f"{'in' if exact_in else 'out'} {amount}"
        if result is None:
            assert mine is None, f"{where}: the quoter reverted ({error}), the mirror gave {mine}"
            seen["reverts"] += 1
            continue
        words = [int(result[2 + 64 * i : 66 + 64 * i], 16) for i in range(3)]
        assert mine == (words[0], words[1]), f"{where}: mirror {mine} != quoter {words[:2]}"
        seen["quotes"] += 1
        swap = pool.swap(zero_for_one, amount if exact_in else -amount,
                         default_limit(zero_for_one))
        seen["max_crossed"] = max(seen["max_crossed"], swap.initialized_crossed)
        if exact_in and amount_in_of(swap, zero_for_one) < amount:
            seen["partial"] += 1
    return seen


def seed() -> int:
    value = int(os.environ.get("KEEPER_V3_PARITY_SEED") or random.randrange(2**32))
    print(f"uniswap v3 parity seed: {value} (KEEPER_V3_PARITY_SEED={value} replays it)")
    return value


async def load(devnet: Devnet, addresses: list[str]) -> V3Book:
    rpc = await HttpRpc.open(devnet.info.rpc_url)
    try:
        return await V3Book.load(rpc, addresses, devnet.w3.eth.block_number)
    finally:
        await rpc.aclose()


def test_npm_contracts_and_pools_as_planned(devnet: Devnet) -> None:
    info = v3_info(devnet)
    pool_code = bytes.fromhex(pool_artifact().bytecode.removeprefix("0x"))
    assert keccak(pool_code) == POOL_INIT_CODE_HASH
    for periphery in (info.router, info.quoter, info.position_manager):
        code = devnet.w3.eth.get_code(Web3.to_checksum_address(periphery))
        assert POOL_INIT_CODE_HASH in bytes(code)
    factory = contract(devnet, factory_artifact(), info.factory)
    erc20s = tokens(devnet)
    assert set(info.pools) == {pool_key(p.a, p.b, p.fee) for p in V3_POOLS}
    for plan in V3_POOLS:
        address = info.pools[pool_key(plan.a, plan.b, plan.fee)]
        a, b = erc20s[plan.a].address, erc20s[plan.b].address
        assert factory.functions.getPool(a, b, plan.fee).call() == address
        # CREATE2 with the init-code hash the periphery uses: its computed address is this one.
        token0, token1 = sorted((a, b), key=lambda t: int(t, 16))
        salt = keccak(bytes(12) + bytes.fromhex(token0[2:]) + bytes(12)
                      + bytes.fromhex(token1[2:]) + plan.fee.to_bytes(32, "big"))
        computed = keccak(b"\xff" + bytes.fromhex(info.factory[2:]) + salt + POOL_INIT_CODE_HASH)
        assert Web3.to_checksum_address(computed[12:]) == address
    zero = "0x" + "00" * 20
    assert factory.functions.getPool(erc20s["WBTC"].address, erc20s["DAI"].address, 3000).call() \
        == Web3.to_checksum_address(zero)  # WBTC/DAI is only on Uniswap V2


async def test_v3_deeper_than_v2_on_some_pairs_and_shallower_on_others(devnet: Devnet) -> None:
    info = v3_info(devnet)
    erc20s = {s: c.address.lower() for s, c in tokens(devnet).items()}
    book = await load(devnet, list(info.pools.values()))
    rpc = await HttpRpc.open(devnet.info.rpc_url)
    try:
        v2 = await PairBook.load(rpc, devnet.info.uniswap_v2.factory, devnet.w3.eth.block_number)
    finally:
        await rpc.aclose()
    assert len(v2.pairs) == len(devnet.info.uniswap_v2.pairs) and all(a in v2.pairs for a in
                                      (p.lower() for p in devnet.info.uniswap_v2.pairs.values()))
    for sell, buy, amount, v3_wins in (("WETH", "USDC", 1_000 * 10**18, True),
                                       ("WETH", "DAI", 1_000 * 10**18, True),
                                       ("USDC", "DAI", 5_000_000 * 10**6, True),
                                       ("WBTC", "USDC", 100 * 10**8, False)):
        on_v3 = book.quote(erc20s[sell], erc20s[buy], amount)
        on_v2 = v2.quote(erc20s[sell], erc20s[buy], amount)
        assert on_v3 is not None and on_v2 is not None
        assert (on_v3.amount_out > on_v2.amount_out) is v3_wins, (sell, buy, on_v3, on_v2)
    assert book.quote(erc20s["WBTC"], erc20s["DAI"], 10**8) is None


async def test_quotes_equal_quoter_v2_on_every_pool(devnet: Devnet) -> None:
    info = v3_info(devnet)
    book = await load(devnet, list(info.pools.values()))
    assert len(book.by_address) == len(V3_POOLS)
    seen = check_parity(devnet, book, random.Random(seed()))
    assert seen["quotes"] > 300 and seen["reverts"] > 0 and seen["partial"] > 0
    assert seen["max_crossed"] >= 100  # a ladder crossed end to end
    # The book's quote is the best fee tier's, and a partial fill is no quote at all.
    weth, usdc = (tokens(devnet)[s].address.lower() for s in ("WETH", "USDC"))
    for amount in (10**15, 50 * 10**18, 3_000 * 10**18):
        leg = book.quote(weth, usdc, amount)
        assert leg is not None and leg.venue == "uniswap_v3"
        fills = [local(p, p.zero_for_one(weth), amount, True) for p in book.pools_for(weth, usdc)]
        assert leg.amount_out == max(f[0] for f in fills if f is not None)
        back = book.quote_exact_out(weth, usdc, leg.amount_out)
        assert back is not None and back.amount_in <= amount
    assert book.quote(weth, usdc, 2**200) is None  # more than every range takes


def manager(devnet: Devnet) -> Contract:
    return contract(devnet, position_manager_artifact(), v3_info(devnet).position_manager)


async def test_book_follows_mints_burns_swaps_and_initialize_from_logs(devnet: Devnet) -> None:
    """A series of position changes and swaps on chain; the book applies only their logs and
    ends equal to a fresh load, and still quotes what QuoterV2 quotes."""
    rng = random.Random(seed())
    info = v3_info(devnet)
    send = deployer(devnet)
    erc20s = tokens(devnet)
    npm = manager(devnet)
    factory = contract(devnet, factory_artifact(), info.factory)
    router = contract(devnet, router_artifact(), info.router)
    quoter = contract(devnet, quoter_artifact(), info.quoter)
    # A pool created now and initialized later: the book loads it uninitialized.
    wbtc, dai = erc20s["WBTC"], erc20s["DAI"]
    send.send(factory.functions.createPool(wbtc.address, dai.address, 3000))
    fresh_pool = factory.functions.getPool(wbtc.address, dai.address, 3000).call()
    addresses = [*info.pools.values(), fresh_pool]
    start = devnet.w3.eth.block_number
    book = await load(devnet, addresses)
    assert book.by_address[fresh_pool.lower()].sqrt_price_x96 == 0

    (trader,) = fresh_accounts(devnet, 1)
    for token in erc20s.values():
        send.send(token.functions.mint(send.sender, 10**40))
        send.send(token.functions.approve(npm.address, 2**256 - 1))
        send.send(token.functions.mint(trader, 10**40))
        send.send(token.functions.approve(router.address, 2**256 - 1), sender=trader)
    pool_abi = pool_artifact()
    new_pool = contract(devnet, pool_abi, fresh_pool)
    token0 = min(wbtc.address, dai.address, key=lambda t: int(t, 16))
    price = 30_000 * 10**10 if token0 == wbtc.address else 10**-10 / 30_000
    send.send(new_pool.functions.initialize(int(math.sqrt(price) * 2**96)))
    tick = new_pool.functions.slot0().call()[1]
    t0, t1 = sorted((wbtc.address, dai.address), key=lambda t: int(t, 16))
    send.send(npm.functions.mint((t0, t1, 3000, (tick // 60 - 20) * 60, (tick // 60 + 20) * 60,
                                  10**12, 10**24, 0, 0, send.sender, NO_DEADLINE)))

    # Burns: part of some positions, all of others (their ticks are cleared).
    for token_id in rng.sample(range(1, npm.functions.totalSupply().call()), 40):
        liquidity = npm.functions.positions(token_id).call()[7]
        if liquidity:
            share = liquidity if rng.random() < 0.5 else liquidity * rng.randint(1, 99) // 100
            send.send(npm.functions.decreaseLiquidity((token_id, share, 0, 0, NO_DEADLINE)))
    # Mints around each pool's price, and swaps through the router, interleaved.
    for address in info.pools.values():
        pool = contract(devnet, pool_abi, address)
        p0, p1 = pool.functions.token0().call(), pool.functions.token1().call()
        fee, spacing = pool.functions.fee().call(), pool.functions.tickSpacing().call()
        here = pool.functions.slot0().call()[1] // spacing
        for _ in range(3):
            low = here + rng.randint(-60, 40)
            high = low + rng.randint(1, 60)
            try:
                send.send(npm.functions.mint((p0, p1, fee, low * spacing, high * spacing,
                                              10**24, 10**24, 0, 0, send.sender, NO_DEADLINE)))
            except DevnetError as exc:  # a narrow range past the pool's per-tick cap: none
                if "LO" not in str(exc):
                    raise
        for _ in range(2):
            zero_for_one = rng.random() < 0.5
            token_in, token_out = (p0, p1) if zero_for_one else (p1, p0)
            held = book.by_address[address.lower()]  # as loaded: enough to size the swap
            reserve = amount_out_of(quote_exact_input_single(held, zero_for_one, 2**200),
                                    zero_for_one)
            wanted = max(1, int(reserve * rng.uniform(0.001, 0.5)))
            try:  # the input for it now, after the burns and mints (None: cannot be filled)
                amount = quoter.functions.quoteExactOutputSingle(
                    (token_in, token_out, wanted, fee, 0)).call()[0]
            except ContractLogicError:
                continue
            send.send(router.functions.exactInputSingle(
                (token_in, token_out, fee, trader, NO_DEADLINE, amount, 0, 0)), sender=trader)

    head = devnet.w3.eth.block_number
    rpc = await HttpRpc.open(devnet.info.rpc_url)
    try:
        events = await rpc.get_logs(book.subscriptions(), start + 1, head)
    finally:
        await rpc.aclose()
    kinds = {e.topic0 for e in events}
    assert len(kinds) == 4  # Initialize, Swap, Mint and Burn all seen
    assert book.apply(events) == len(events)
    fresh = await load(devnet, addresses)
    for address in fresh.by_address:
        assert book.by_address[address] == fresh.by_address[address], address
    seen = check_parity(devnet, book, rng)
    assert seen["quotes"] > 300 and seen["max_crossed"] >= 50

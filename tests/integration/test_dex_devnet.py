"""PairBook on the devnet's real Uniswap V2: batched load, router parity, Sync-driven reserves."""

from __future__ import annotations

from keeper.chain.http import HttpRpc
from keeper.devnet.tokens import mintable_erc20
from keeper.devnet.uniswap import factory_artifact, pair_artifact, router_artifact
from keeper.dex.uniswap_v2 import PairBook
from tests.conftest import Devnet
from tests.integration.helpers import contract, deployer, fresh_accounts, tokens


def on_chain_reserves(devnet: Devnet, address: str) -> tuple[int, int]:
    r0, r1, _ = contract(devnet, pair_artifact(), address).functions.getReserves().call()
    return int(r0), int(r1)


async def test_load_matches_the_chain_and_quotes_match_the_router(devnet: Devnet) -> None:
    info = devnet.info.uniswap_v2
    router = contract(devnet, router_artifact(), info.router)
    erc20s = tokens(devnet)
    decimals_of = {s: t.decimals for s, t in devnet.info.tokens.items()}
    if devnet.info.aave_v3_6 is not None:  # its WSTETH/WETH pair is in the same factory
        for symbol, token in devnet.info.aave_v3_6.tokens.items():
            erc20s.setdefault(symbol, contract(devnet, mintable_erc20(), token.address))
            decimals_of.setdefault(symbol, token.decimals)
    head = devnet.w3.eth.block_number
    rpc = await HttpRpc.open(devnet.info.rpc_url)
    try:
        before = rpc.requests_sent
        book = await PairBook.load(rpc, list(info.pairs.values()), head)
        assert rpc.requests_sent - before == 1  # one batch for every pair
        from_factory = await PairBook.load(rpc, info.factory, head)
    finally:
        await rpc.aclose()
    assert from_factory.pairs == book.pairs
    assert set(book.pairs) == {a.lower() for a in info.pairs.values()}
    for key, address in info.pairs.items():
        pair = book.pairs[address.lower()]
        web3_pair = contract(devnet, pair_artifact(), address)
        assert pair.token0 == web3_pair.functions.token0().call().lower()
        assert pair.token1 == web3_pair.functions.token1().call().lower()
        assert (pair.reserve0, pair.reserve1) == on_chain_reserves(devnet, address)
        a, b = key.split("/")
        for sym_in, sym_out in ((a, b), (b, a)):
            token_in, token_out = erc20s[sym_in], erc20s[sym_out]
            decimals = decimals_of[sym_in]
            for amount_in in (1, 10**decimals, 12_345 * 10**decimals + 678):
                leg = book.quote(token_in.address, token_out.address, amount_in)
                amounts = router.functions.getAmountsOut(
                    amount_in, [token_in.address, token_out.address]
                ).call()
                assert leg is not None
                assert [leg.amount_in, leg.amount_out] == amounts
                assert leg.pair == address.lower()
    # The factory lists the same pairs the devnet file does.
    factory = contract(devnet, factory_artifact(), info.factory)
    assert factory.functions.allPairsLength().call() == len(book.pairs)


async def test_sync_logs_of_a_real_swap_bring_the_book_up_to_date(devnet: Devnet) -> None:
    info = devnet.info.uniswap_v2
    router = contract(devnet, router_artifact(), info.router)
    erc20s = tokens(devnet)
    weth, usdc = erc20s["WETH"], erc20s["USDC"]
    send = deployer(devnet)
    (trader,) = fresh_accounts(devnet, 1)
    amount_in = 250 * 10**18
    send.send(weth.functions.mint(trader, amount_in))
    send.send(weth.functions.approve(router.address, amount_in), sender=trader)

    rpc = await HttpRpc.open(devnet.info.rpc_url)
    try:
        start = devnet.w3.eth.block_number
        book = await PairBook.load(rpc, list(info.pairs.values()), start)
        leg = book.quote(weth.address, usdc.address, amount_in)
        assert leg is not None
        reserve_in, reserve_out = book.pairs[leg.pair].reserves(leg.token_in)
        deadline = devnet.w3.eth.get_block("latest")["timestamp"] + 600
        receipt = send.send(
            router.functions.swapExactTokensForTokens(
                amount_in, leg.amount_out, [weth.address, usdc.address], trader, deadline
            ),
            sender=trader,
        )
        assert receipt["status"] == 1
        block = int(receipt["blockNumber"])
        events = await rpc.get_logs(book.subscriptions(), start + 1, block)
    finally:
        await rpc.aclose()

    assert [e.address for e in events] == [leg.pair]
    assert book.apply(events) == 1
    assert book.block == block
    for address in info.pairs.values():
        pair = book.pairs[address.lower()]
        assert (pair.reserve0, pair.reserve1) == on_chain_reserves(devnet, address)
    # The pair moved by exactly the swap, and the book quotes what the router quotes now.
    assert book.pairs[leg.pair].reserves(leg.token_in) == (
        reserve_in + amount_in, reserve_out - leg.amount_out
    )
    after = book.quote(weth.address, usdc.address, 10**18)
    assert after is not None
    path = [weth.address, usdc.address]
    assert router.functions.getAmountsOut(10**18, path).call() == [10**18, after.amount_out]
    assert after.amount_out < leg.amount_out * 10**18 // amount_in  # the price moved

"""Real reorgs on the devnet (`anvil_reorg`): the engine notices and rebuilds on the new chain.

The engine processes a price drop; `anvil_reorg(depth)` then replaces the last `depth`
blocks (the drop among them) with empty ones, and one more block is mined. The engine's
next step sees that the new block's ancestry no longer holds the block it processed,
rebuilds its strategies and DEX book at the new head, and ends exactly where a fresh
engine synced at that head is: the same prices, the same account data for every tracked
account, and no opportunity from the orphaned drop.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from web3 import Web3

from keeper.demo import build_engine
from keeper.devnet.tokens import to_feed_answer
from keeper.engine import Engine
from keeper.execution.journal import Journal
from strategies.aave_v3 import AaveV3Strategy
from tests.conftest import Devnet
from tests.integration.helpers import SPECS, feeds


def _aave(engine: Engine) -> AaveV3Strategy:
    return next(s for s in engine.strategies if isinstance(s, AaveV3Strategy))


def _drop_weth(devnet: Devnet) -> None:
    owner = Web3.to_checksum_address(devnet.info.accounts.deployer)
    answer = to_feed_answer(SPECS["WETH"].usd_price * Decimal("0.7"))
    tx = feeds(devnet)["WETH"].functions.updateAnswer(answer).transact({"from": owner})
    devnet.w3.eth.wait_for_transaction_receipt(tx)  # automine may answer before it mines


@pytest.mark.parametrize("depth", [1, 2, 3])
async def test_a_reorg_rebuilds_the_book_as_a_fresh_sync_would(
    devnet: Devnet, tmp_path: Path, depth: int
) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    fresh_journal = Journal(tmp_path / "fresh.sqlite")
    engine = await build_engine(devnet.info, journal, send=False)
    fresh: Engine | None = None
    try:
        for _ in range(depth - 1):  # the drop is the oldest of the reorged blocks
            await asyncio.to_thread(devnet.rpc, "evm_mine")
        await asyncio.to_thread(_drop_weth, devnet)
        for _ in range(depth - 1):
            await asyncio.to_thread(devnet.rpc, "evm_mine")
        head, raw = await engine.latest_block()
        dropped = await engine.step(head, raw)
        assert dropped, "the drop made nothing liquidatable"
        weth = devnet.info.tokens["WETH"].address.lower()
        drop_price = next(r.price for r in _aave(engine).book.market.reserves if r.asset == weth)

        await asyncio.to_thread(devnet.rpc, "anvil_reorg", depth, [])
        await asyncio.to_thread(devnet.rpc, "evm_mine")
        head, raw = await engine.latest_block()
        after = await engine.step(head, raw)
        assert engine.stats.reorgs == 1
        assert after == [], after  # the orphaned drop is gone: nothing is liquidatable

        fresh = await build_engine(devnet.info, fresh_journal, send=False)
        ours, theirs = _aave(engine), _aave(fresh)
        assert ours.synced == theirs.synced == head
        prices = {r.asset: r.price for r in ours.book.market.reserves}
        assert prices == {r.asset: r.price for r in theirs.book.market.reserves}
        assert prices[weth] != drop_price
        assert sorted(ours.accounts) == sorted(theirs.accounts)
        for user in ours.accounts:
            assert ours.book.account_data(user, head.timestamp) == theirs.book.account_data(
                user, head.timestamp), user
        assert {p.address: p for p in engine.dex.pairs.values()} == {
            p.address: p for p in fresh.dex.pairs.values()}
    finally:
        await engine.chain.aclose()
        journal.close()
        if fresh is not None:
            await fresh.chain.aclose()
        fresh_journal.close()

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
from typing import Any

import pytest
from web3 import Web3

from keeper.demo import build_keeper
from keeper.devnet.tokens import to_feed_answer
from keeper.dex.uniswap_v2 import PairBook
from keeper.execution.journal import Journal
from keeper.types import Opportunity
from keeper.wiring import Keeper
from strategies.aave_v3 import AaveV3Strategy
from tests.conftest import Devnet, Miner
from tests.integration.helpers import SPECS, aave_pool, feeds, liquidator


def _aave(engine: Keeper) -> AaveV3Strategy:
    return next(s for s in engine.engine.strategies if isinstance(s, AaveV3Strategy))


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
    engine = await build_keeper(devnet.info, journal, send=False)
    fresh: Keeper | None = None
    try:
        for _ in range(depth - 1):  # the drop is the oldest of the reorged blocks
            await asyncio.to_thread(devnet.rpc, "evm_mine")
        await asyncio.to_thread(_drop_weth, devnet)
        for _ in range(depth - 1):
            await asyncio.to_thread(devnet.rpc, "evm_mine")
        dropped = await engine.step()
        head = engine.head()
        assert dropped, "the drop made nothing liquidatable"
        weth = devnet.info.tokens["WETH"].address.lower()
        drop_price = next(r.price for r in _aave(engine).book.market.reserves if r.asset == weth)

        await asyncio.to_thread(devnet.rpc, "anvil_reorg", depth, [])
        await asyncio.to_thread(devnet.rpc, "evm_mine")
        after = await engine.step()
        head = engine.head()
        assert engine.engine.stats.reorgs == 1
        assert after == [], after  # the orphaned drop is gone: nothing is liquidatable

        fresh = await build_keeper(devnet.info, fresh_journal, send=False)
        ours, theirs = _aave(engine), _aave(fresh)
        assert ours.synced == theirs.synced == head
        prices = {r.asset: r.price for r in ours.book.market.reserves}
        assert prices == {r.asset: r.price for r in theirs.book.market.reserves}
        assert prices[weth] != drop_price
        assert sorted(ours.accounts) == sorted(theirs.accounts)
        for user in ours.accounts:
            assert ours.book.account_data(user, head.timestamp) == theirs.book.account_data(
                user, head.timestamp), user
        ours_dex, their_dex = engine.engine.dex, fresh.engine.dex
        assert isinstance(ours_dex, PairBook) and isinstance(their_dex, PairBook)
        assert {p.address: p for p in ours_dex.pairs.values()} == {
            p.address: p for p in their_dex.pairs.values()}
    finally:
        await engine.aclose()
        journal.close()
        if fresh is not None:
            await fresh.aclose()
        fresh_journal.close()


async def _dispatch(engine: Keeper, opportunities: list[Opportunity], devnet: Devnet) -> None:
    """Hand `opportunities` (and any re-evaluation the engine queued) to execution and wait
    for all of it, mining a block now and then for what sits in the pool."""
    miner = Miner(devnet)

    async def mine_until(done: asyncio.Event) -> None:
        while not done.is_set():
            await asyncio.to_thread(miner)
            await asyncio.sleep(0.05)

    done = asyncio.Event()
    mining = asyncio.create_task(mine_until(done))
    try:
        async with asyncio.TaskGroup() as tasks:
            engine.dispatch(opportunities, tasks)
    finally:
        done.set()
        await mining


def _our_liquidations(devnet: Devnet, user: str, start: int) -> list[Any]:
    pool = aave_pool(devnet)
    me = liquidator(devnet).lower()
    events = pool.events.LiquidationCall().get_logs(from_block=start)
    return [e for e in events if str(e["args"]["liquidator"]).lower() == me
            and str(e["args"]["user"]).lower() == user]


@pytest.mark.parametrize("orphan_the_drop", [False, True])
async def test_a_liquidation_mined_in_an_orphaned_block_is_re_evaluated(
    devnet: Devnet, tmp_path: Path, orphan_the_drop: bool
) -> None:
    """The keeper's liquidation is mined, then a reorg orphans its block. The executor sees
    its young receipt's block replaced and the journal takes the liquidation back to 'sent'.
    If the position is still liquidatable on the new branch, the same signed transaction
    lands again (re-evaluated: still worth it); if the reorg also orphaned the price drop,
    its nonce is taken by a no-op instead (or it fails harmlessly), and nothing is
    liquidated. Either way the journal ends as the chain does, and nothing lands twice."""
    journal = Journal(tmp_path / "j.sqlite")
    engine = await build_keeper(devnet.info, journal)
    try:
        start = int(devnet.w3.eth.block_number)
        await asyncio.to_thread(_drop_weth, devnet)
        opportunities = await engine.step()
        drop_block = engine.head().number
        best = next(o for o in opportunities if o.strategy == "aave_v3")
        await _dispatch(engine, [best], devnet)
        first = engine.outcomes.recent[-1]
        assert first.status == "confirmed", first
        record = journal.get(best.key)
        assert record is not None and record.status == "confirmed"

        depth = int(devnet.w3.eth.block_number) - (drop_block - 1 if orphan_the_drop
                                                   else drop_block)
        await asyncio.to_thread(devnet.rpc, "anvil_reorg", depth, [])
        await asyncio.to_thread(devnet.rpc, "evm_mine")
        again = await engine.step()
        assert journal.get(best.key).status in ("sent", "confirmed", "reverted")  # type: ignore[union-attr]
        await _dispatch(engine, again, devnet)

        landed = _our_liquidations(devnet, best.account, start)
        final = journal.get(best.key)
        assert final is not None
        outcomes = [o for o in engine.outcomes if o.key == best.key]
        assert len(outcomes) == 1, outcomes  # the re-evaluation replaced the first outcome
        if orphan_the_drop:
            assert landed == [], landed
            assert final.status == "reverted" and outcomes[0].status in ("lost", "reverted")
        else:
            assert len(landed) == 1, landed
            assert final.status == "confirmed" and outcomes[0].status == "confirmed"
            mined = [t for t in final.transactions if t.status == "confirmed"]
            assert [t.block_number for t in mined] == [landed[0]["blockNumber"]]
            assert mined[0].tx_hash == first.tx_hash  # the same signed bytes: never re-signed
    finally:
        await engine.aclose()
        journal.close()

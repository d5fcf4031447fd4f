"""The price moves back before the keeper's liquidations are mined: each reverts, nobody
else touched the position, and the keeper records it as a race lost to the market, not a
fault: its revert breaker stays closed.

Blocks are mined by hand (automine off; anvil orders a block by fee). WETH falls 30 %
and the price block is mined; once the keeper's liquidations are in the pool, the feed's
owner posts the old price back with a higher tip, and one block is mined: the post lands
first, the positions are healthy again, and every liquidation of that block reverts. The
keeper must tell this apart from a revert of its own making: the same call succeeds at
the block it was ranked at.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from web3.types import Wei

from keeper.breakers import BreakerLimits, Breakers
from keeper.demo import build_keeper
from keeper.devnet.tokens import to_feed_answer
from keeper.execution.journal import Journal
from keeper.health import Health
from keeper.metrics import Metrics
from keeper.monitor import Monitor
from tests.conftest import Devnet
from tests.integration.helpers import MAX_UINT, SPECS, feeds, liquidator, tokens

TIMEOUT = 120.0
GWEI = 10**9


def _pending_of_keeper(devnet: Devnet) -> int:
    content: Any = devnet.rpc("txpool_content")
    me = liquidator(devnet).lower()
    pending = {a.lower(): txs for a, txs in (content.get("pending") or {}).items()}
    return len(pending.get(me, {}))


async def test_a_price_that_moves_back_is_a_race_lost_to_the_market(
    devnet: Devnet, tmp_path: Path
) -> None:
    me = liquidator(devnet)
    for spender in (devnet.info.aave_v3.pool, devnet.info.morpho_blue.morpho):
        for token in tokens(devnet).values():  # approved up front: the keeper mines nothing
            tx = token.functions.approve(spender, MAX_UINT).transact({"from": me})
            devnet.w3.eth.wait_for_transaction_receipt(tx)
    breakers = Breakers(BreakerLimits(max_consecutive_reverts=3))
    monitor = Monitor(Metrics(strategies=["aave_v3", "morpho_blue"]),
                      Health(stall_seconds=600, max_head_lag=None, breakers=breakers), breakers)
    journal = Journal(tmp_path / "j.sqlite")
    keeper = await build_keeper(devnet.info, journal, ws=True, monitor=monitor,
                                prepared_levels=0)
    stop = asyncio.Event()
    feed = feeds(devnet)["WETH"]
    owner = devnet.info.accounts.deployer
    start = SPECS["WETH"].usd_price
    devnet.rpc("evm_setAutomine", False)
    task = asyncio.create_task(keeper.run(stop))
    try:
        crash = feed.functions.updateAnswer(to_feed_answer(start * Decimal("0.7")))
        await asyncio.to_thread(crash.transact, {"from": owner})
        await asyncio.to_thread(devnet.rpc, "evm_mine")  # the price block
        deadline = time.monotonic() + TIMEOUT
        while await asyncio.to_thread(_pending_of_keeper, devnet) < 3:
            assert time.monotonic() < deadline, "the keeper sent nothing"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # let the rest of its first sends reach the pool
        back = feed.functions.updateAnswer(to_feed_answer(start))
        await asyncio.to_thread(back.transact, {
            "from": owner, "maxPriorityFeePerGas": Wei(1000 * GWEI),
            "maxFeePerGas": Wei(3000 * GWEI)})
        await asyncio.to_thread(devnet.rpc, "evm_mine")  # the post first, then the keeper's

        def settled() -> bool:
            return keeper.inflight == 0 and any(o.status == "lost" for o in keeper.outcomes)

        while not settled():
            assert time.monotonic() < deadline, [o.status for o in keeper.outcomes]
            await asyncio.to_thread(devnet.rpc, "evm_mine")
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        devnet.rpc("anvil_dropAllTransactions")
        devnet.rpc("evm_setAutomine", True)
        await asyncio.to_thread(devnet.rpc, "evm_mine")
        await asyncio.wait_for(task, 60)
        await keeper.aclose()
        journal.close()
    outcomes = list(keeper.outcomes)
    lost = [o for o in outcomes if o.status == "lost"]
    assert lost, [(o.status, o.reason) for o in outcomes]
    assert all(not o.winner and o.reason.startswith("no longer liquidatable")
               for o in lost), [(o.winner, o.reason) for o in lost]
    assert not [o for o in outcomes if o.status == "reverted"], [
        (o.key, o.reason) for o in outcomes]
    assert breakers.allow_send(), breakers

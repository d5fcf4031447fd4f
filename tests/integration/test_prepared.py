"""Prepared liquidations on the devnet: ready before the price moves, sent on the feed's log.

The keeper follows the devnet over its WebSocket. After its cold start it prepares, for
each feed (devnet.json's `feed_rules`: 1 % deviation), the liquidations the next answers
would open. WETH then falls by 3.5 % in one block: the feed's log must send the deepest
prepared level it reaches (3 %) before the block's own step ranks anything, and every
one of those liquidations must be mined without a revert; the level's first sends were
signed when it was prepared, and go out as signed then. The positions opened between
3 % and 3.5 % are the normal step's, as before.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

from keeper.demo import build_keeper
from keeper.devnet.tokens import to_feed_answer
from keeper.execution.journal import Journal
from keeper.prepared import TOPIC_ANSWER_UPDATED, decode_answer
from tests.conftest import Devnet
from tests.integration.helpers import (
    SPECS,
    aave_pool,
    deployer,
    liquidator,
    set_price,
    tokens,
)

TIMEOUT = 60.0


async def _until(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_a_feed_log_sends_the_prepared_level_it_reaches(devnet: Devnet, tmp_path: Path) -> None:
    weth_feed = devnet.info.feeds["WETH"].lower()
    assert devnet.info.feed_rules["WETH"].deviation_bps == 100
    # Approved up front, as a running keeper would be: the sends then simulate at the block
    # that posted the answer (not after an approval, at whatever is latest then).
    owner = liquidator(devnet)
    for spender in (aave_pool(devnet).address, devnet.info.morpho_blue.morpho):
        for token in tokens(devnet).values():
            deployer(devnet).send(token.functions.approve(spender, 2**256 - 1), sender=owner)

    async def scenario() -> None:
        keeper = await build_keeper(devnet.info, Journal(tmp_path / "j.sqlite"), ws=True)
        prepared = keeper.prepared
        assert prepared is not None and prepared.enabled
        stop = asyncio.Event()
        task = asyncio.create_task(keeper.run(stop))
        try:
            await _until(lambda: prepared.stats.prepared >= 1, "the first preparation")
            levels = [lv for lv in prepared.ready(weth_feed) if lv.direction < 0]
            assert levels, "a WETH fall of up to 8 % opens no position on the devnet"
            # Signed for the next block's base fee from the first preparation on (the one at
            # start comes before any step: its levels were signed for a base fee of 0).
            signed_for = {lv.armed.base_fee for lv in levels if lv.armed is not None}
            assert signed_for == {keeper.engine.next_base_fee} and min(signed_for) > 0
            start = SPECS["WETH"].usd_price
            target = to_feed_answer(start * Decimal("0.965"))
            reached = [lv for lv in levels if lv.reached_by(target)]
            assert reached, "no prepared level within a 3.5 % fall"
            level = min(reached, key=lambda lv: abs(lv.answer - target))
            assert level.answer == to_feed_answer(start) * 97 // 100  # three thresholds down
            expected = {o.key for o in level.opportunities}
            processed = keeper.engine.stats.processed

            await asyncio.to_thread(set_price, devnet, "WETH", start * Decimal("0.965"))
            await _until(lambda: prepared.stats.fired == 1, "the prepared level to fire")
            assert prepared.stats.sent == len(expected)
            # Sent on the log: the step of the price block had not been processed yet
            # (or was processed after the level was handed over).
            assert keeper.engine.stats.processed <= processed + 1

            def settled() -> bool:
                done = {o.key for o in keeper.outcomes
                        if o.status in ("confirmed", "reverted", "lost")}
                return expected <= done and keeper.inflight == 0

            await _until(settled, "the prepared liquidations to be mined")
            statuses = [o.status for o in keeper.outcomes]
            assert "reverted" not in statuses and "simulation-failed" not in statuses, [
                (o.key, o.status, o.reason) for o in keeper.outcomes]
            confirmed = {o.key for o in keeper.outcomes if o.status == "confirmed"}
            assert expected <= confirmed
            # Armed when prepared: its first sends were signed ahead and sent as signed
            # (nothing else of ours was sent since, so the nonces still fit).
            armed = level.armed
            assert armed is not None and armed.signed >= 1
            assert prepared.stats.presigned >= armed.signed
            sent_hashes = {o.tx_hash for o in keeper.outcomes if o.key in expected}
            assert {p.tx_hash for p in armed.presigned.values()} <= sent_hashes
        finally:
            stop.set()
            await asyncio.wait_for(task, TIMEOUT)
            await keeper.aclose()

    asyncio.run(scenario())


def test_the_answer_is_the_logs_first_indexed_topic() -> None:
    assert TOPIC_ANSWER_UPDATED.startswith("0x0559884f")
    assert decode_answer("0x" + (200_000_000_000).to_bytes(32, "big").hex()) == 200_000_000_000
    assert decode_answer("0x" + "ff" * 32) == -1

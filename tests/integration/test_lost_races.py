"""A competitor wins ten races in a row: the keeper records each as lost, names the winner,
keeps sending, and its revert breaker stays closed.

Blocks are mined by hand (automine off; anvil orders a block by fee). Whenever the keeper
has a liquidation in the pool, the competitor sends the very same call from its own
funded account with a higher tip, and one block is mined: the competitor's copy lands
first and the keeper's reverts. Every one of those reverts must be classified `lost`
with the competitor's transaction as the winner, none `reverted`, and the breaker (three
consecutive reverts) must never trip.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_typing import HexStr
from web3 import Web3
from web3.types import Wei

from keeper.breakers import BreakerLimits, Breakers
from keeper.demo import build_keeper
from keeper.devnet.tokens import to_feed_answer
from keeper.execution.journal import Journal
from keeper.health import Health
from keeper.metrics import Metrics
from keeper.monitor import Monitor
from tests.conftest import Devnet
from tests.integration.helpers import (
    MAX_UINT,
    SPECS,
    deployer,
    feeds,
    fresh_accounts,
    liquidator,
    tokens,
)

RACES = 10
TIMEOUT = 120.0
GWEI = 10**9
# Aave's liquidationCall(collateral, debt, user, debtToCover, receiveAToken), and where in
# the 0x-hex calldata its fourth word (debtToCover) starts.
LIQUIDATION_CALL = "0x00a718a9"
DEBT_TO_COVER = 2 + 8 + 3 * 64
IDLE_BLOCK_SECONDS = 0.3  # a block every so often while the keeper has nothing pending


def _fund_competitor(devnet: Devnet) -> str:
    """A fresh account holding ten times what the keeper holds, approved everywhere."""
    (rival,) = fresh_accounts(devnet, 1)
    me = liquidator(devnet)
    admin = deployer(devnet)
    spenders = [devnet.info.aave_v3.pool, devnet.info.morpho_blue.morpho]
    for token in tokens(devnet).values():
        admin.send(token.functions.mint(rival, 10 * token.functions.balanceOf(me).call()))
        for spender in spenders:
            for who in (rival, me):  # the keeper pre-approved too: it mines nothing itself
                tx = token.functions.approve(Web3.to_checksum_address(spender), MAX_UINT)
                devnet.w3.eth.wait_for_transaction_receipt(tx.transact({"from": who}))
    return rival


def _copy_new(devnet: Devnet, rival: str, seen: set[str]) -> list[str]:
    """Copy every keeper transaction in the pool not copied yet, from `rival`, tipping more."""
    me = liquidator(devnet).lower()
    content: Any = devnet.rpc("txpool_content")
    pending = {a.lower(): txs for a, txs in (content.get("pending") or {}).items()}
    copies = []
    for tx in pending.get(me, {}).values():
        if tx["hash"] in seen:
            continue
        seen.add(tx["hash"])
        tip = int(tx.get("maxPriorityFeePerGas") or tx["gasPrice"], 16) + GWEI
        data = str(tx["input"])
        if data.startswith(LIQUIDATION_CALL):
            # All the close factor allows (the pool clamps it), not the keeper's size: then
            # nothing is left for the keeper's own call, which reverts.
            data = data[:DEBT_TO_COVER] + "f" * 64 + data[DEBT_TO_COVER + 64:]
        copy = devnet.w3.eth.send_transaction({
            "from": Web3.to_checksum_address(rival), "to": Web3.to_checksum_address(tx["to"]),
            "data": HexStr(data), "gas": int(tx["gas"], 16), "maxPriorityFeePerGas": Wei(tip),
            "maxFeePerGas": Wei(int(tx["maxFeePerGas"], 16) + 2 * tip),
        })
        copies.append("0x" + copy.hex().removeprefix("0x").lower())
    return copies


def _front_run(devnet: Devnet, rival: str, seen: set[str]) -> list[str]:
    """Copy the keeper's new pending transactions until it sends no more for a moment, then
    mine one block: each copy, tipping more, is mined before the transaction it copies."""
    copies = _copy_new(devnet, rival, seen)
    if not copies:
        return []
    while True:
        time.sleep(0.05)
        more = _copy_new(devnet, rival, seen)
        if not more:
            break
        copies += more
    devnet.rpc("evm_mine")
    return copies


async def test_ten_lost_races_keep_the_keeper_sending_and_the_breaker_closed(
    devnet: Devnet, tmp_path: Path
) -> None:
    rival = await asyncio.to_thread(_fund_competitor, devnet)
    breakers = Breakers(BreakerLimits(max_consecutive_reverts=3))
    monitor = Monitor(Metrics(strategies=["aave_v3", "morpho_blue"]),
                      Health(stall_seconds=600, max_head_lag=None, breakers=breakers), breakers)
    journal = Journal(tmp_path / "j.sqlite")
    keeper = await build_keeper(devnet.info, journal, ws=True, monitor=monitor)
    stop = asyncio.Event()
    copies: list[str] = []
    devnet.rpc("evm_setAutomine", False)
    task = asyncio.create_task(keeper.run(stop))
    try:
        drop = feeds(devnet)["WETH"].functions.updateAnswer(
            to_feed_answer(SPECS["WETH"].usd_price * Decimal("0.7")))
        await asyncio.to_thread(drop.transact, {"from": devnet.info.accounts.deployer})
        await asyncio.to_thread(devnet.rpc, "evm_mine")  # the price block
        seen: set[str] = set()
        deadline = time.monotonic() + TIMEOUT
        idle = time.monotonic()
        while sum(o.status == "lost" and ":aave_v3:" in o.key for o in keeper.outcomes) < RACES:
            assert time.monotonic() < deadline, [o.status for o in keeper.outcomes]
            assert not task.done(), task
            new = await asyncio.to_thread(_front_run, devnet, rival, seen)
            copies += new
            if new:
                idle = time.monotonic()
            elif time.monotonic() - idle > IDLE_BLOCK_SECONDS:
                # Nothing of the keeper's is waiting: the chain goes on (a new head).
                await asyncio.to_thread(devnet.rpc, "evm_mine")
                idle = time.monotonic()
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        devnet.rpc("anvil_dropAllTransactions")  # what is left in flight is then lost
        devnet.rpc("evm_setAutomine", True)
        await asyncio.to_thread(devnet.rpc, "evm_mine")
        await asyncio.wait_for(task, 60)
        await keeper.aclose()
        journal.close()
    lost = [o for o in keeper.outcomes if o.status == "lost"]
    # The Aave liquidations the keeper sent, in order: the rival took every one of them
    # whole (its Morpho copies may leave the keeper a smaller liquidation, confirmed).
    aave = "".join("L" if o.status == "lost" else "." for o in keeper.outcomes
                   if o.tx_hash and ":aave_v3:" in o.key)
    print(f"\nAave sends in order (L: lost): {aave}; all outcomes: "
          f"{sorted(Counter(o.status for o in keeper.outcomes).items())}")
    assert "L" * RACES in aave  # ten races lost in a row, at least
    assert all(o.winner in copies for o in lost), ([o.winner for o in lost], copies)
    assert not [o for o in keeper.outcomes if o.status == "reverted"], keeper.outcomes.recent
    assert breakers.allow_send(), breakers
    assert monitor.metrics.races_lost.labels("aave_v3")._value.get() + \
        monitor.metrics.races_lost.labels("morpho_blue")._value.get() == len(lost)

"""The engine end to end on the devnet: a price crash, a restart mid-crash, steady-state cost.

The price drop is posted atomically: automine is paused, WETH -30 % and WBTC -20 % are
posted, one block (the price block P) is mined, automine is restored. With automine every
transaction is mined in its own block, so "blocks to liquidation" on the devnet counts the
keeper's own earlier transactions too; the reaction latency asserted is therefore the head
at which the engine first ranked an account profitable (recorded around `Engine.step`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from keeper.chain.ws import WsSubscriptions
from keeper.demo import build_engine
from keeper.devnet.artifacts import aave
from keeper.devnet.observe import aave_accounts
from keeper.devnet.tokens import to_feed_answer
from keeper.engine import Engine
from keeper.execution.executor import Outcome
from keeper.execution.journal import Journal
from keeper.types import BlockRef, Event, Opportunity
from strategies.aave_v3 import AaveV3Strategy
from tests.conftest import Devnet, seeded_borrowers
from tests.integration.helpers import SPECS, WAD, feeds, liquidator

USERS = sorted(p.address.lower() for p in seeded_borrowers("aave_v3"))
DROPS = {"WETH": Decimal("0.70"), "WBTC": Decimal("0.80")}
BAD = ("reverted", "error")

TIMEOUT = 60.0


def _pool(devnet: Devnet) -> Any:
    return devnet.w3.eth.contract(
        address=Web3.to_checksum_address(devnet.info.aave_v3.pool),
        abi=aave("protocol/pool/Pool.sol/Pool.json").abi,
    )


def _crash(devnet: Devnet) -> int:
    """Post both drops in one block P and return P.

    `post_price` waits for its receipt, one block per post; to land both in one block the
    same `updateAnswer` calls are sent with automine paused, then one block is mined.
    """
    contracts = feeds(devnet)
    owner = Web3.to_checksum_address(devnet.info.accounts.deployer)
    devnet.rpc("evm_setAutomine", False)
    try:
        for symbol, factor in DROPS.items():
            answer = to_feed_answer(SPECS[symbol].usd_price * factor)
            contracts[symbol].functions.updateAnswer(answer).transact({"from": owner})
        devnet.rpc("evm_mine")
    finally:
        devnet.rpc("evm_setAutomine", True)
    return devnet.w3.eth.block_number


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _quiet(engine: Engine, devnet: Devnet) -> None:
    """Until two consecutive empty heads were processed with nothing in flight and nothing new
    sent (new outcomes, if any, are only 'duplicate': the journal refused a repeat)."""
    quiet = 0
    while quiet < 2:
        before = len(engine.stats.outcomes)

        async def settled() -> bool:
            head = await asyncio.to_thread(lambda: devnet.w3.eth.block_number)
            return engine.stats.processed >= head and engine.inflight == 0

        await _until(settled, "the engine to settle")
        new = engine.stats.outcomes[before:]
        quiet = quiet + 1 if all(o.status == "duplicate" for o in new) else 0
        await asyncio.to_thread(devnet.rpc, "evm_mine")


def _liquidations(devnet: Devnet, start: int, end: int) -> list[Any]:
    me = liquidator(devnet).lower()
    events = _pool(devnet).events.LiquidationCall().get_logs(from_block=start, to_block=end)
    return [e for e in events if str(e["args"]["liquidator"]).lower() == me]


def _journal_confirmed(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT tx_hash, realized_profit FROM transactions WHERE status = 'confirmed'"
        ).fetchall()
    return {str(h).lower(): int(p) for h, p in rows}


def _health_at(devnet: Devnet, user: str, block: int) -> int:
    data = _pool(devnet).functions.getUserAccountData(Web3.to_checksum_address(user))
    return int(data.call(block_identifier=block)[5])


def _short_of_capital(outcome: Outcome) -> bool:
    """Refused for want of the debt asset: committed to sends in flight (no-capital), or
    spent by another send between ranking and the pre-send simulation."""
    return outcome.status == "no-capital" or (
        outcome.status == "simulation-failed" and "exceeds balance" in outcome.reason
    )


def _record_rankings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The first head at which each account was ranked profitable (filled as the engine runs)."""
    first: dict[str, int] = {}
    step = engine.step

    async def recording(
        head: BlockRef, raw: Mapping[str, Any], events: list[Event] | None = None
    ) -> list[Opportunity]:
        opportunities = await step(head, raw, events)
        for opportunity in opportunities:
            first.setdefault(opportunity.account, head.number)
        return opportunities

    monkeypatch.setattr(engine, "step", recording)
    return first


def _liquidatable(devnet: Devnet, users: Iterable[str]) -> set[str]:
    return {a.address for a in aave_accounts(devnet.w3, devnet.info, list(users)) if a.liquidatable}


async def test_crash_liquidates_only_unhealthy_quickly_and_journal_matches(
    devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WETH -30 % and WBTC -20 % in one block P; the engine runs until quiet. Asserted:

    - no outcome is 'reverted' or 'error'; every confirmed one realized a profit > 0, net
      of gas (valued by the executor like the ranking values it);
    - every user the keeper liquidated had HF < 1 (Pool.getUserAccountData) at the block
      before its liquidation's block: no healthy account was touched;
    - every user liquidatable at P that the ranking ever found profitable was first ranked
      at a head ≤ P + 2 (the engine decided within two blocks of the drop; with automine
      the landing block also counts the keeper's approvals and earlier liquidations, one
      per block, so it is reported, not bounded) and then either has a confirmed
      liquidation or was refused for want of the debt asset (no-capital, or a simulation
      failing on "transfer amount exceeds balance"); a user never ranked profitable was
      never sent; nothing was ranked for a user the chain called healthy;
    - after the run, evaluating at the head again, every user still liquidatable with a
      profitable opportunity either has that very key confirmed in the journal (a partial
      liquidation under the close factor: the repeat at the same price state is refused as
      'duplicate') or was refused for want of the debt asset;
    - the journal's confirmed tx hashes are exactly the liquidator's LiquidationCall
      transactions on the pool in [P, end], and each journaled realized profit equals the
      outcome the executor returned.
    """
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    engine = await build_engine(devnet.info, journal)
    try:
        before = {a.address: a for a in await asyncio.to_thread(
            aave_accounts, devnet.w3, devnet.info, USERS)}
        assert all(not a.liquidatable for a in before.values())
        price_block = await asyncio.to_thread(_crash, devnet)
        weak = await asyncio.to_thread(_liquidatable, devnet, USERS)
        assert weak, "the drop made no account liquidatable"
        first_ranked = _record_rankings(engine, monkeypatch)
        stop = asyncio.Event()
        # The daemon's intake: newHeads and the feeds' logs over the WebSocket.
        task = asyncio.create_task(engine.run(stop, WsSubscriptions(devnet.info.ws_url)))
        try:
            await _quiet(engine, devnet)
        finally:
            stop.set()
            await task
        end = await asyncio.to_thread(lambda: devnet.w3.eth.block_number)
        outcomes = engine.stats.outcomes
        assert not [o for o in outcomes if o.status in BAD], outcomes
        confirmed = engine.stats.confirmed
        assert confirmed and all(o.realized_profit > 0 for o in confirmed), confirmed

        events = await asyncio.to_thread(_liquidations, devnet, price_block, end)
        by_tx = {"0x" + bytes(e["transactionHash"]).hex().removeprefix("0x"): e for e in events}
        for event in events:
            user, block = str(event["args"]["user"]).lower(), int(event["blockNumber"])
            health = await asyncio.to_thread(_health_at, devnet, user, block - 1)
            assert health < WAD, (user, block, health)

        journaled = _journal_confirmed(path)
        assert set(journaled) == {h.lower() for h in by_tx}
        assert journaled == {o.tx_hash.lower(): o.realized_profit for o in confirmed}

        refused = {o.key.split(":")[2] for o in outcomes if _short_of_capital(o)}
        done = {o.key.split(":")[2] for o in confirmed}
        for user in weak:
            if user in first_ranked:
                assert first_ranked[user] <= price_block + 2, (user, first_ranked[user])
                assert user in done or user in refused, user
            else:  # never profitable: ranking dropped it, so the keeper must not have sent it
                assert user not in done and user not in refused, user
        assert set(first_ranked) <= weak | done  # nothing ranked that the chain called healthy
        head, _raw = await engine.latest_block()
        last = {o.account: o for o in await engine.evaluate(head)}
        still = await asyncio.to_thread(_liquidatable, devnet, weak)
        for user in still & set(last):
            record = journal.get(last[user].key)
            repeat = record is not None and record.status == "confirmed"
            assert repeat or user in refused, user
        latencies = sorted(first_ranked[u] - price_block for u in first_ranked)
        landed = sorted(o.block - price_block for o in confirmed)
        print(
            f"\ncrash: {len(weak)} liquidatable at P={price_block}, {len(confirmed)} "
            f"liquidations confirmed ({len({o.key.split(':')[2] for o in confirmed})} users), "
            f"ranked at P+{latencies}, landed at P+{landed}, still liquidatable {len(still)}, "
            f"statuses {sorted({o.status for o in outcomes})}"
        )
    finally:
        await engine.chain.aclose()
        journal.close()


async def _run_until(engine: Engine, condition: Callable[[], Awaitable[bool]], what: str) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    try:
        await _until(condition, what)
    finally:
        stop.set()
        await task  # run() returns after its in-flight liquidations are resolved


async def test_restart_mid_crash_sends_nothing_twice(devnet: Devnet, tmp_path: Path) -> None:
    """Stop the engine after its first confirmed liquidation of the crash, start a new one on
    the SAME journal file and run it until quiet. Asserted: no outcome of either engine is
    'reverted' or 'error'; the liquidator's LiquidationCalls since the drop (one price state
    throughout) never repeat a (user, collateral, debt); the journal's confirmed hashes are
    exactly those transactions; and the second engine's repeats of the first one's keys, if
    any, were refused by the journal ('duplicate')."""
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    first = await build_engine(devnet.info, journal)
    price_block = await asyncio.to_thread(_crash, devnet)
    try:
        async def one_confirmed() -> bool:
            return bool(first.stats.confirmed)

        await _run_until(first, one_confirmed, "a first liquidation")
    finally:
        await first.chain.aclose()
        journal.close()
    journal = Journal(path)
    second = await build_engine(devnet.info, journal)
    await asyncio.to_thread(devnet.rpc, "evm_mine")  # a head after its sync, to start from
    try:
        stop = asyncio.Event()
        task = asyncio.create_task(second.run(stop))
        try:
            await _quiet(second, devnet)
        finally:
            stop.set()
            await task
    finally:
        await second.chain.aclose()
        journal.close()
    outcomes = first.stats.outcomes + second.stats.outcomes
    assert not [o for o in outcomes if o.status in BAD], outcomes
    earlier = {o.key for o in first.stats.outcomes if o.status == "confirmed"}
    again = [o for o in second.stats.outcomes if o.key in earlier]
    assert all(o.status == "duplicate" for o in again), again
    end = await asyncio.to_thread(lambda: devnet.w3.eth.block_number)
    events = await asyncio.to_thread(_liquidations, devnet, price_block, end)
    triples = [
        tuple(str(e["args"][k]).lower() for k in ("user", "collateralAsset", "debtAsset"))
        for e in events
    ]
    assert len(triples) == len(set(triples)), triples
    hashes = {"0x" + bytes(e["transactionHash"]).hex().removeprefix("0x") for e in events}
    assert set(_journal_confirmed(path)) == hashes
    print(
        f"\nrestart: first engine confirmed {len(first.stats.confirmed)}, second "
        f"{len(second.stats.confirmed)}; second engine's repeats refused: {len(again)}"
    )


async def test_steady_state_requests_per_block_are_constant(
    devnet: Devnet, tmp_path: Path
) -> None:
    """After sync, with no price moves, each step costs the same small number of requests
    (≤ 5, counted by `HttpRpc.requests_sent`, a JSON-RPC batch counting as one), whatever
    the number of tracked accounts, and the same whether it covers 1 or 3 new blocks (one
    head read, one eth_getLogs over the range)."""
    journal = Journal(tmp_path / "j.sqlite")
    engine = await build_engine(devnet.info, journal)
    try:
        tracked = sum(len(s.accounts) for s in engine.strategies if isinstance(s, AaveV3Strategy))
        assert tracked >= len(USERS)

        async def step(blocks: int) -> int:
            for _ in range(blocks):
                await asyncio.to_thread(devnet.rpc, "evm_mine")
            before = engine.chain.requests_sent
            head, raw = await engine.latest_block()
            assert not await engine.step(head, raw)
            assert engine.stats.head == head.number
            return engine.chain.requests_sent - before

        singles = [await step(1) for _ in range(4)]
        triples = [await step(3) for _ in range(4)]
    finally:
        await engine.chain.aclose()
        journal.close()
    assert len(set(singles + triples)) == 1, (singles, triples)
    assert singles[0] <= 5
    assert singles[0] < tracked  # nothing per account
    print(
        f"\nsteady state: {singles[0]} requests per step ({tracked} accounts tracked); "
        f"1-block steps {singles}, 3-block steps {triples}"
    )

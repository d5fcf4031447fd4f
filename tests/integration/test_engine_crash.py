"""The engine end to end on the devnet: a price crash, a restart mid-crash, steady-state cost.

The price drop is posted atomically: automine is paused, WETH -30 % and WBTC -20 % are
posted, one block (the price block P) is mined, automine is restored. With automine every
transaction is mined in its own block, so "blocks to liquidation" on the devnet counts the
keeper's own earlier transactions too; the reaction latency asserted is therefore the head
at which the engine first ranked an account profitable (recorded around `Keeper.step`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from keeper.demo import build_keeper
from keeper.devnet.morpho import morpho_abi
from keeper.devnet.observe import aave_accounts, morpho_positions
from keeper.execution.journal import Journal
from keeper.types import ChainStep, Opportunity, Outcome
from keeper.wiring import Keeper
from strategies.aave_v3 import AaveV3Strategy
from tests.conftest import Devnet, seeded_borrowers
from tests.integration.helpers import WAD, aave_pool, crash_in_one_block, liquidator

USERS = sorted(p.address.lower() for p in seeded_borrowers("aave_v3"))
MORPHO_USERS = sorted({p.address.lower() for p in seeded_borrowers("morpho_blue")})
Unit = tuple[str, str]  # (strategy, account)
BAD = ("reverted", "error")

TIMEOUT = 60.0


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _quiet(engine: Keeper, devnet: Devnet) -> None:
    """Until two consecutive empty heads were processed with nothing in flight and nothing new
    sent (new outcomes, if any, are only 'duplicate': the journal refused a repeat)."""
    quiet = 0
    while quiet < 2:
        before = engine.outcomes.recorded

        async def settled() -> bool:
            head = await asyncio.to_thread(lambda: devnet.w3.eth.block_number)
            return engine.engine.stats.processed >= head and engine.inflight == 0

        await _until(settled, "the engine to settle")
        new = engine.outcomes.since(before)
        quiet = quiet + 1 if all(o.status == "duplicate" for o in new) else 0
        await asyncio.to_thread(devnet.rpc, "evm_mine")


def _liquidations(devnet: Devnet, start: int, end: int) -> list[Any]:
    me = liquidator(devnet).lower()
    events = aave_pool(devnet).events.LiquidationCall().get_logs(from_block=start, to_block=end)
    return [e for e in events if str(e["args"]["liquidator"]).lower() == me]


def _morpho(devnet: Devnet) -> Any:
    return devnet.w3.eth.contract(
        address=Web3.to_checksum_address(devnet.info.morpho_blue.morpho), abi=morpho_abi())


def _morpho_liquidations(devnet: Devnet, start: int, end: int) -> list[Any]:
    me = liquidator(devnet).lower()
    events = _morpho(devnet).events.Liquidate().get_logs(from_block=start, to_block=end)
    return [e for e in events if str(e["args"]["caller"]).lower() == me]


def _tx(event: Any) -> str:
    return "0x" + bytes(event["transactionHash"]).hex().removeprefix("0x")


def _unit(outcome: Outcome) -> Unit:
    """(strategy, account) of an outcome, from its key "chain:strategy:account:…"."""
    _chain, strategy, account, *_rest = outcome.key.split(":")
    return strategy, account


def _journal_confirmed(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT tx_hash, realized_profit FROM transactions WHERE status = 'confirmed'"
        ).fetchall()
    return {str(h).lower(): int(p) for h, p in rows}


def _health_at(devnet: Devnet, user: str, block: int) -> int:
    data = aave_pool(devnet).functions.getUserAccountData(Web3.to_checksum_address(user))
    return int(data.call(block_identifier=block)[5])


def _short_of_capital(outcome: Outcome) -> bool:
    """Refused for want of the debt asset: committed to sends in flight (no-capital), or
    spent by another send between ranking and the pre-send simulation."""
    return outcome.status == "no-capital" or (
        outcome.status == "simulation-failed" and "exceeds balance" in outcome.reason
    )


def _record_rankings(
    engine: Keeper, monkeypatch: pytest.MonkeyPatch, steps: list[int] | None = None
) -> dict[Unit, int]:
    """The first head at which each (strategy, account) was ranked profitable (by a step, or
    by a prepared level handed to the dispatcher); `steps` gets every head the engine
    stepped to (the newest head wins, so some are skipped)."""
    ranked: dict[Unit, int] = {}
    advance = engine.engine.advance

    async def recording(
        step: ChainStep, tasks: asyncio.TaskGroup | None = None
    ) -> list[Opportunity]:
        opportunities = await advance(step, tasks)
        if steps is not None:
            steps.append(step.head.number)
        for opportunity in opportunities:
            ranked.setdefault((opportunity.strategy, opportunity.account), step.head.number)
        return opportunities

    monkeypatch.setattr(engine.engine, "advance", recording)
    dispatcher = engine.dispatcher
    assert dispatcher is not None
    dispatch = dispatcher.dispatch

    def dispatching(opportunities: Sequence[Opportunity], tasks: asyncio.TaskGroup,
                    **kwargs: Any) -> int:
        # Prepared liquidations are handed over on the feed's log, outside `advance`: they
        # were decided at the block that posted the answer (their `block`).
        for opportunity in opportunities:
            ranked.setdefault((opportunity.strategy, opportunity.account), opportunity.block)
        return dispatch(opportunities, tasks, **kwargs)

    monkeypatch.setattr(dispatcher, "dispatch", dispatching)
    return ranked


def _record_starved(engine: Keeper, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The blocks at which some debt asset had nothing free, or sends in flight held part of
    the capital (capital, not detection, then defers the rest)."""
    starved: list[int] = []
    assert engine.executor is not None
    available = engine.executor.available

    executor = engine.executor

    async def recording(tokens: Sequence[str], block: int | None = None) -> dict[str, int]:
        # Capital held by sends in flight (the prepared liquidations sent on the price
        # block's log hold much of it) sizes the rest smaller, some below the minimum
        # profit, until those settle: capital, not detection, then defers them.
        busy = executor.busy
        free = await available(tokens, block)
        if block is not None and (busy or any(v == 0 for v in free.values())):
            starved.append(block)
        return free

    monkeypatch.setattr(engine.executor, "available", recording)
    return starved


def _liquidatable(devnet: Devnet, users: Iterable[str]) -> set[str]:
    return {a.address for a in aave_accounts(devnet.w3, devnet.info, list(users)) if a.liquidatable}


def _liquidatable_units(devnet: Devnet) -> set[Unit]:
    """Aave accounts with HF < 1 and Morpho borrowers with a position past its LLTV (valued
    at the market's last accrual: the drop is far larger than any interest since)."""
    aave_units = {("aave_v3", u) for u in _liquidatable(devnet, USERS)}
    morpho = morpho_positions(devnet.w3, devnet.info, MORPHO_USERS)
    return aave_units | {("morpho_blue", p.address.lower()) for p in morpho if p.liquidatable}


async def test_crash_liquidates_only_unhealthy_quickly_and_journal_matches(
    devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WETH -30 % and WBTC -20 % in one block P, with Aave V3 and Morpho Blue borrowers; the
    engine (both strategies, one ranking, one nonce stream) runs until quiet. Asserted:

    - no outcome is 'reverted' or 'error'; every confirmed one realized a profit > 0, net
      of gas (valued by the executor like the ranking values it);
    - every Aave user the keeper liquidated had HF < 1 (Pool.getUserAccountData) at the
      block before its liquidation's block (Morpho's `liquidate` itself reverts on a
      healthy position, so a Liquidate event proves it for Morpho): no healthy account was
      touched;
    - every (protocol, borrower) liquidatable at P that the ranking ever found profitable
      was first ranked at a head ≤ P + 2 or at the engine's second step from P (it skips
      heads under load), or later only while some debt asset was all committed to sends
      in flight (the engine decided within two steps of the drop;
      with automine the landing block also counts the keeper's approvals and earlier
      liquidations, one per block, so it is reported, not bounded) and then either has a
      confirmed liquidation or was refused for want of the debt asset (no-capital, or a
      simulation failing on "transfer amount exceeds balance"); one never ranked
      profitable was never sent; nothing was ranked that the chain called healthy;
    - after the run, evaluating at the head again, every one still liquidatable with a
      profitable opportunity either has that very key confirmed in the journal or was
      refused for want of the debt asset;
    - the journal's confirmed tx hashes are exactly the liquidator's LiquidationCall and
      Liquidate transactions in [P, end], and each journaled realized profit equals the
      outcome the executor returned.
    """
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    engine = await build_keeper(devnet.info, journal, ws=True)
    assert {s.name for s in engine.engine.strategies} == {"aave_v3", "morpho_blue"}
    try:
        assert not await asyncio.to_thread(_liquidatable_units, devnet)
        price_block = await asyncio.to_thread(crash_in_one_block, devnet)
        weak = await asyncio.to_thread(_liquidatable_units, devnet)
        assert {s for s, _ in weak} == {"aave_v3", "morpho_blue"}, weak
        steps: list[int] = []
        first_ranked = _record_rankings(engine, monkeypatch, steps)
        starved = _record_starved(engine, monkeypatch)
        stop = asyncio.Event()
        # The daemon's intake: newHeads and the feeds' logs over the WebSocket.
        task = asyncio.create_task(engine.run(stop))
        try:
            await _quiet(engine, devnet)
        finally:
            stop.set()
            await task
        end = await asyncio.to_thread(lambda: devnet.w3.eth.block_number)
        outcomes = engine.outcomes
        assert not [o for o in outcomes if o.status in BAD], outcomes
        confirmed = engine.outcomes.confirmed
        assert confirmed and all(o.realized_profit > 0 for o in confirmed), [
            o for o in confirmed if o.realized_profit <= 0]
        assert {_unit(o)[0] for o in confirmed} == {"aave_v3", "morpho_blue"}, confirmed

        aave_events = await asyncio.to_thread(_liquidations, devnet, price_block, end)
        morpho_events = await asyncio.to_thread(_morpho_liquidations, devnet, price_block, end)
        for event in aave_events:
            user, block = str(event["args"]["user"]).lower(), int(event["blockNumber"])
            health = await asyncio.to_thread(_health_at, devnet, user, block - 1)
            assert health < WAD, (user, block, health)

        journaled = _journal_confirmed(path)
        assert set(journaled) == {_tx(e).lower() for e in aave_events + morpho_events}
        assert journaled == {o.tx_hash.lower(): o.realized_profit for o in confirmed}

        refused = {_unit(o) for o in outcomes if _short_of_capital(o)}
        done = {_unit(o) for o in confirmed}
        for unit in weak:
            if unit in first_ranked:
                # Decided within the first two steps from the drop (a loaded machine skips
                # heads: the newest wins), unless the capital was all in flight meanwhile.
                decided_by = sorted(n for n in steps if n >= price_block)[:2][-1]
                late = first_ranked[unit] > max(decided_by, price_block + 2)
                assert not late or any(price_block <= b < first_ranked[unit] for b in starved), (
                    unit, first_ranked[unit], starved)
                assert unit in done or unit in refused, unit
            else:  # never profitable: ranking dropped it, so the keeper must not have sent it
                assert unit not in done and unit not in refused, unit
        assert set(first_ranked) <= weak | done  # nothing ranked that the chain called healthy
        await engine.step()
        last = {(o.strategy, o.account): o for o in await engine.engine.evaluate(engine.head())}
        still = await asyncio.to_thread(_liquidatable_units, devnet)
        for unit in still & set(last):
            record = journal.get(last[unit].key)
            repeat = record is not None and record.status == "confirmed"
            assert repeat or unit in refused, unit
        latencies = sorted(first_ranked[u] - price_block for u in first_ranked)
        landed = sorted(o.block - price_block for o in confirmed)
        by_protocol = Counter(_unit(o)[0] for o in confirmed)
        print(
            f"\ncrash: {len(weak)} liquidatable at P={price_block}, {len(confirmed)} "
            f"liquidations confirmed ({dict(by_protocol)}), "
            f"ranked at P+{latencies}, landed at P+{landed}, still liquidatable {len(still)}, "
            f"statuses {sorted({o.status for o in outcomes})}"
        )
    finally:
        await engine.aclose()
        journal.close()


async def _run_until(engine: Keeper, condition: Callable[[], Awaitable[bool]], what: str) -> None:
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
    'reverted' or 'error'; no opportunity key was confirmed twice; the journal's confirmed
    hashes are exactly the liquidator's LiquidationCall and Liquidate transactions since the
    drop; and the second engine's repeats of the first one's keys, if any, were refused by
    the journal ('duplicate')."""
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    first = await build_keeper(devnet.info, journal)
    price_block = await asyncio.to_thread(crash_in_one_block, devnet)
    try:
        async def one_confirmed() -> bool:
            return bool(first.outcomes.confirmed)

        await _run_until(first, one_confirmed, "a first liquidation")
    finally:
        await first.aclose()
        journal.close()
    journal = Journal(path)
    second = await build_keeper(devnet.info, journal)
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
        await second.aclose()
        journal.close()
    outcomes = first.outcomes.recent + second.outcomes.recent
    assert not [o for o in outcomes if o.status in BAD], outcomes
    earlier = {o.key for o in first.outcomes if o.status == "confirmed"}
    again = [o for o in second.outcomes if o.key in earlier]
    assert all(o.status == "duplicate" for o in again), again
    end = await asyncio.to_thread(lambda: devnet.w3.eth.block_number)
    events = await asyncio.to_thread(_liquidations, devnet, price_block, end)
    morpho_events = await asyncio.to_thread(_morpho_liquidations, devnet, price_block, end)
    # One confirmed liquidation per key across both runs (a key names the position's state:
    # a follow-up after a partial liquidation has another key, a repeat the same one).
    keys = [o.key for o in first.outcomes.confirmed + second.outcomes.confirmed]
    assert len(keys) == len(set(keys)), keys
    hashes = {_tx(e) for e in events + morpho_events}
    assert set(_journal_confirmed(path)) == hashes
    print(
        f"\nrestart: first engine confirmed {len(first.outcomes.confirmed)}, second "
        f"{len(second.outcomes.confirmed)}; second engine's repeats refused: {len(again)}"
    )


async def test_steady_state_requests_per_block_are_constant(
    devnet: Devnet, tmp_path: Path
) -> None:
    """After sync, with no price moves, each step costs the same small number of requests
    (≤ 5, counted by `HttpRpc.requests_sent`, a JSON-RPC batch counting as one), whatever
    the number of tracked accounts, and the same whether it covers 1 or 3 new blocks (one
    head read, one eth_getLogs over the range)."""
    journal = Journal(tmp_path / "j.sqlite")
    engine = await build_keeper(devnet.info, journal)
    try:
        tracked = sum(len(s.accounts) for s in engine.engine.strategies
                      if isinstance(s, AaveV3Strategy))
        assert tracked >= len(USERS)

        async def step(blocks: int) -> int:
            for _ in range(blocks):
                await asyncio.to_thread(devnet.rpc, "evm_mine")
            before = engine.chain.requests_sent
            assert not await engine.step()
            head = engine.head()
            assert head.number == await asyncio.to_thread(lambda: devnet.w3.eth.block_number)
            return engine.chain.requests_sent - before

        singles = [await step(1) for _ in range(4)]
        triples = [await step(3) for _ in range(4)]
    finally:
        await engine.aclose()
        journal.close()
    assert len(set(singles + triples)) == 1, (singles, triples)
    assert singles[0] <= 5
    assert singles[0] < tracked  # nothing per account
    print(
        f"\nsteady state: {singles[0]} requests per step ({tracked} accounts tracked); "
        f"1-block steps {singles}, 3-block steps {triples}"
    )

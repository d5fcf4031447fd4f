"""A reserve-configuration change on chain makes the engine re-sync the strategy at the head.

The book does not mirror PoolConfigurator logs; it flags `needs_resync`, and the engine's
general mechanism re-runs the strategy's cold start at that head before ranking. Lowering
WETH's liquidation threshold (no price move) must then yield exactly the candidates the
chain calls liquidatable.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from web3 import Web3

from keeper.demo import build_keeper
from keeper.devnet.artifacts import aave
from keeper.devnet.observe import aave_accounts
from keeper.errors import RpcUnavailable
from keeper.execution.journal import Journal
from keeper.types import BlockRef, Candidate
from strategies.aave_v3 import AaveV3Strategy
from tests.conftest import Devnet, seeded_borrowers

USERS = sorted(p.address.lower() for p in seeded_borrowers("aave_v3"))
NEW_LTV, NEW_THRESHOLD, BONUS = 6_900, 7_000, 10_500  # WETH was 80 % / 82.5 % / 105 %


def _lower_weth_threshold(devnet: Devnet) -> None:
    configurator = devnet.w3.eth.contract(
        address=Web3.to_checksum_address(devnet.info.aave_v3.pool_configurator),
        abi=aave("protocol/pool/PoolConfigurator.sol/PoolConfigurator.json").abi,
    )
    weth = Web3.to_checksum_address(devnet.info.tokens["WETH"].address)
    tx = configurator.functions.configureReserveAsCollateral(weth, NEW_LTV, NEW_THRESHOLD, BONUS)
    receipt = devnet.w3.eth.wait_for_transaction_receipt(
        tx.transact({"from": Web3.to_checksum_address(devnet.info.accounts.deployer)}))
    assert receipt["status"] == 1


async def test_configuration_change_resyncs_and_candidates_match_chain(
    devnet: Devnet, tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    engine = await build_keeper(devnet.info, journal, send=False)
    try:
        strategy = next(s for s in engine.engine.strategies if isinstance(s, AaveV3Strategy))
        await engine.step()
        head = engine.head()
        assert not list(strategy.candidates(head))
        await asyncio.to_thread(_lower_weth_threshold, devnet)
        opportunities = await engine.step()
        head = engine.head()
        assert strategy.needs_resync is False and strategy.synced == head
        weth = devnet.info.tokens["WETH"].address.lower()
        reserve = next(r for r in strategy.book.market.reserves if r.asset == weth)
        assert reserve.config.liquidation_threshold == NEW_THRESHOLD
        chain = {a.address for a in await asyncio.to_thread(
            aave_accounts, devnet.w3, devnet.info, USERS) if a.liquidatable}
        assert chain, "the lower threshold made no account liquidatable"
        assert {c.account for c in strategy.candidates(head)} == chain
        assert {o.account for o in opportunities} <= chain
    finally:
        await engine.aclose()
        journal.close()


async def test_a_failing_strategy_sits_out_and_is_resynced(
    devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A strategy that raises (here: candidates, as after time went backwards) does not stop
    the engine: it is skipped for that head and re-synced at the next one."""
    journal = Journal(tmp_path / "j.sqlite")
    engine = await build_keeper(devnet.info, journal, send=False)
    try:
        strategy = next(s for s in engine.engine.strategies if isinstance(s, AaveV3Strategy))
        failures = 0

        def broken(_block: BlockRef) -> list[Candidate]:
            nonlocal failures
            failures += 1
            raise ArithmeticError("interest accrual before the last update")

        monkeypatch.setattr(strategy, "candidates", broken)
        await asyncio.to_thread(devnet.rpc, "evm_mine")
        assert await engine.step() == []
        head = engine.head()
        assert failures == 1 and strategy.name in engine.engine._broken
        monkeypatch.undo()
        await asyncio.to_thread(devnet.rpc, "evm_mine")
        await engine.step()
        head = engine.head()
        assert strategy.name not in engine.engine._broken and strategy.synced == head
        assert engine.engine.stats.head == head.number
    finally:
        await engine.aclose()
        journal.close()


async def test_a_failed_cold_start_is_retried_not_fatal(
    devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first cold start times out (a slow node): the daemon logs it and tries again."""
    journal = Journal(tmp_path / "j.sqlite")
    engine = await build_keeper(devnet.info, journal, send=False)
    engine.engine.last = None  # as `keeper run` starts it: not synced yet
    real = engine.engine.sync
    attempts = 0

    async def flaky(head: BlockRef) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RpcUnavailable("RPC http://node unreachable (TimeoutError)")
        await real(head)

    monkeypatch.setattr(engine.engine, "sync", flaky)
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while engine.engine.last is None:
            assert not task.done(), task.exception()
            assert asyncio.get_running_loop().time() < deadline, "never synced"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await engine.aclose()
        journal.close()
    assert attempts == 2

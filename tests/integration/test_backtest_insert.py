"""The devnet price-path backtest's insert positions, on the same 14 steps of the June 2022
stETH depeg: with "next-block" the keeper's liquidations land in the blocks after a
step's price block, never in one; with "after-oracle" the first ones land in the price
block itself, one block earlier than next-block's first, right after the feed update
(checked on the chain: same positions, receipts succeeded, transaction order), with a
latency of 0 blocks; after-oracle gives the same report twice; and `keeper backtest
--devnet --insert after-oracle` and a sweep's task give the same report."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from benchmarks.bench_sweep import differences, without_clock
from keeper.backtest.devnet_replay import replay
from keeper.backtest.model import WALL_CLOCK, BacktestReport
from keeper.backtest.path_file import load_path, resolve_path
from keeper.backtest.sweep import Job, run_job
from keeper.backtest.sweep_params import Tuning
from keeper.backtest.sweep_report import Cell
from keeper.backtest.trial import Insert
from keeper.devnet.crash import CrashStep, crash_steps
from keeper.devnet.deploy import DevnetSpec
from keeper.devnet.tokens import DEFAULT_TOKENS
from keeper.execution.journal import Journal
from keeper.log import reset_logging
from tests.conftest import Devnet
from tests.integration.helpers import run_keeper

PATH = "steth_eth_2022-06_depeg"
STEPS = 14  # its first liquidatable positions come at step 10


def _steps() -> list[CrashStep]:
    path = load_path(resolve_path(PATH))
    return crash_steps(path.points, {t.symbol: t.usd_price for t in DEFAULT_TOKENS},
                       path.betas)[:STEPS]


def _replay(devnet: Devnet, journal: Path, insert: Insert, *, keep: bool = False
            ) -> BacktestReport:
    """One replay on the devnet, rolled back afterwards unless `keep`."""
    snapshot = devnet.rpc("evm_snapshot")
    try:
        with Journal(journal) as opened:
            return asyncio.run(replay(devnet.info, _steps(), opened,
                                      tuning=Tuning(insert=insert)))
    finally:
        reset_logging()
        if not keep:
            devnet.rpc("evm_revert", snapshot)


def _price_blocks(report: BacktestReport) -> set[int]:
    return {p.block for p in report.prices}


def _stable(report: BacktestReport) -> str:
    return json.dumps({k: v for k, v in report.to_json().items() if k not in WALL_CLOCK},
                      sort_keys=True)


def test_after_oracle_liquidates_in_the_price_block_next_block_after_it(
    devnet: Devnet, tmp_path: Path
) -> None:
    nxt = _replay(devnet, tmp_path / "next.sqlite", "next-block")
    again = _replay(devnet, tmp_path / "again.sqlite", "after-oracle")
    after = _replay(devnet, tmp_path / "after.sqlite", "after-oracle", keep=True)
    assert nxt.keeper and after.keeper, "the depeg must make the keeper liquidate"
    assert _stable(after) == _stable(again)  # the trial blocks keep the replay deterministic

    # next-block: never in a price block, at least one block after the position's first.
    assert not {x.block for x in nxt.keeper} & _price_blocks(nxt)
    assert min(o.latency_blocks or 0 for o in nxt.opportunities if o.taken_by) >= 1
    # after-oracle: the same step's price block, one block earlier; the same positions.
    first_next = min(x.block for x in nxt.keeper)
    first = min(x.block for x in after.keeper)
    assert first == first_next - 1 and first in _price_blocks(after)
    assert sorted(x.account for x in after.keeper if x.block == first) == sorted(
        x.account for x in nxt.keeper if x.block == first_next)
    assert all(o.latency_blocks == 0 for o in after.opportunities
               if o.taken_by and o.first_block == first)
    # The sweep's latency figure (mean blocks, taken opportunities) shows it.
    assert Cell(PATH, STEPS, Tuning(), report=after.to_json()).figures()["latency_blocks"] < (
        Cell(PATH, STEPS, Tuning(), report=nxt.to_json()).figures()["latency_blocks"])
    assert after.attempts.get("reverted", 0) == 0 and after.attempts.get("confirmed") == len(
        after.keeper)

    # On the chain (the last replay's): each liquidation in a price block comes after the
    # block's feed update, and succeeded.
    feed = devnet.info.feeds["WETH"].lower()
    checked = 0
    for number in sorted({x.block for x in after.keeper} & _price_blocks(after)):
        block: Any = devnet.w3.eth.get_block(number, full_transactions=True)
        to = [str(tx["to"]).lower() for tx in block["transactions"]]
        update = to.index(feed)
        for x in (x for x in after.keeper if x.block == number):
            receipt: Any = devnet.w3.eth.get_transaction_receipt(x.tx)  # type: ignore[arg-type]
            assert receipt["status"] == 1 and receipt["transactionIndex"] > update
            checked += 1
    assert checked >= 2, checked


def test_the_cli_and_a_sweep_task_take_the_insert_position(
    devnet: Devnet, tmp_path: Path
) -> None:
    del devnet  # only its cached devnet state: each run starts its own anvil
    result = run_keeper("backtest", "--devnet", "--price-path", PATH, "--steps", "11",
                        "--insert", "after-oracle", "--json",
                        "--log-file", str(tmp_path / "backtest.log"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    prices = {p["block"] for p in report["prices"]}
    assert report["keeper"] and {x["block"] for x in report["keeper"]} & prices
    assert any(n.startswith("insert after-oracle") for n in report["notes"])
    # A sweep's cell (the Ray task's body, run here) is that backtest.
    try:
        cell = run_job(Job(load_path(resolve_path(PATH)), Tuning(insert="after-oracle"),
                           DevnetSpec(), 11, None))
    finally:
        reset_logging()
    assert not differences(without_clock(cell), without_clock(report))

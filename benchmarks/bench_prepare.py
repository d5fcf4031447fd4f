"""What the prepared liquidations cost per block, at 1k and 10k tracked Aave positions.

Run: `.venv/bin/python -m benchmarks.bench_prepare [--accounts 1000,10000] [--repeats 10]`.

For each population (the devnet plus that many factory-made Aave V3 positions,
`keeper.devnet.scale`, cached after the first build), a keeper is wired to it as the demo
wires one (`keeper.demo.build_keeper`: Aave and Morpho, the devnet's five feeds with their
published 1 % rule, 8 levels each way) and synced; then `PreparedLiquidations.prepare` is
timed `--repeats` times at the synced head (what the daemon runs after every step that
brought logs), with the split between the strategies' `candidates_if` (which positions
each answer opens), the one capital read, and the ranking of the opened positions. The
levels and liquidations made ready are printed with the times.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import cast

from keeper.chain.http import HttpRpc
from keeper.demo import build_keeper
from keeper.devnet.info import DevnetInfo
from keeper.devnet.scale import start_scaled_devnet
from keeper.execution.journal import Journal
from keeper.log import configure_logging
from keeper.prepared import PreparedLiquidations
from keeper.strategy import Foreseeing
from keeper.types import BlockRef, Candidate
from tests.bench import bench_feed_to_send as feed


class Timed:
    """Wraps a `Foreseeing` strategy and adds up the time spent in `candidates_if`."""

    def __init__(self, inner: Foreseeing) -> None:
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0

    def feed_answers(self) -> dict[str, int]:
        return dict(self.inner.feed_answers())

    def candidates_if(
        self, block: BlockRef, feed: str, answers: Sequence[int]
    ) -> list[list[Candidate]]:
        started = time.perf_counter()
        try:
            return self.inner.candidates_if(block, feed, answers)
        finally:
            self.seconds += time.perf_counter() - started


async def _approve_all(info: DevnetInfo) -> None:
    """The liquidator's allowances in place, as a running keeper's are after its first sends
    (an intent still waiting for one is not signed ahead)."""
    bench = feed.Bench(info, Decimal("0.01"))
    bench.poster = await HttpRpc.open(info.rpc_url)
    try:
        await bench.approve_debt_tokens()
    finally:
        await bench.poster.aclose()


async def measure(info: DevnetInfo, repeats: int) -> str:
    await _approve_all(info)
    with tempfile.TemporaryDirectory(prefix="keeper-prepare-") as folder:
        keeper = await build_keeper(info, Journal(Path(folder) / "j.sqlite"))
        try:
            prepared = keeper.prepared
            assert prepared is not None and keeper.executor is not None
            await keeper.executor.start()  # its nonce stream synced: levels are signed ahead
            engine = keeper.engine
            head = keeper.head()
            for strategy in engine.strategies:
                list(strategy.candidates(head))  # as a step leaves it: the screen built
            timed = [Timed(s) for s in engine.capabilities.foreseeing]
            engine.capabilities = dataclasses.replace(
                engine.capabilities, foreseeing=tuple(cast(Foreseeing, t) for t in timed))
            total: list[float] = []
            scenario: list[float] = []
            arming: list[float] = []
            for _ in range(repeats):
                for t in timed:
                    t.seconds = 0.0
                started = time.perf_counter()
                await _prepare_once(prepared, head)
                total.append(time.perf_counter() - started)
                scenario.append(sum(t.seconds for t in timed))
                arming.append(prepared.stats.arm_seconds)
            tracked = sum(len(s.accounts) for s in engine.capabilities.tracking)
            stats = prepared.stats
            med, worst = statistics.median(total) * 1000, max(total) * 1000
            rest = statistics.median(t - s for t, s in zip(total, scenario, strict=True))
            return (f"{tracked:,} tracked positions: prepare p50 {med:.0f} ms, max "
                    f"{worst:.0f} ms (candidates_if p50 {statistics.median(scenario) * 1000:.0f}"
                    f" ms, capital read + ranking + arming p50 {rest * 1000:.0f} ms, of which "
                    f"arming p50 {statistics.median(arming) * 1000:.0f} ms); "
                    f"{stats.levels} levels, {stats.opportunities} liquidations ready, "
                    f"{stats.presigned} transactions signed ahead")
        finally:
            await keeper.aclose()
            if keeper.executor is not None:
                keeper.executor.journal.close()


async def _prepare_once(prepared: PreparedLiquidations, head: BlockRef) -> None:
    prepared._at = None  # as after a step that brought logs: nothing is reused
    await prepared.prepare(head)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", default="1000,10000")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    configure_logging("json", "warning", stream=open(os.devnull, "w"))  # noqa: SIM115
    for count in (int(c) for c in args.accounts.split(",")):
        started = time.perf_counter()
        anvil, info, _report, cached = start_scaled_devnet(count)
        print(f"devnet + {count:,} positions {'loaded' if cached else 'built'} in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        try:
            print(asyncio.run(measure(info, args.repeats)), flush=True)
        finally:
            anvil.stop()


if __name__ == "__main__":
    main()

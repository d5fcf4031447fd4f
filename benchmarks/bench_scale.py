"""End-to-end figures at scale on the devnet, side by side with per-account polling.

Run: `.venv/bin/python -m benchmarks.bench_scale [--accounts 10000]` (`--accounts 100000`
for the 100k cold start). Every figure is measured in the same run, on real contracts:

- **cold start**: `AaveV3Strategy.sync` of a devnet holding `--accounts` factory-made Aave
  V3 positions (`keeper.devnet.scale`; built once, then loaded from the cache): logs from
  block 0, then the accounts read through the lens, never more than `--max-batch` calls
  per HTTP batch (the largest batch seen is printed);
- **peer way vs keeper**: every tracked account's `getUserAccountData` as JSON-RPC batches
  of `eth_call` (what a polling liquidator does each block), against the keeper's exact
  in-memory check (`market.account_data`) of the same accounts at the same block; the
  two must agree on every health factor. With `strategies/aave_v3/screen.py` present, its
  float screen is timed too;
- **feed log -> signed liquidation sent** with the 10k positions tracked (the machinery of
  `tests/bench/bench_feed_to_send.py`, interleaved with its bare-socket physical limit);
- **HTTP requests per block in steady state** at ~100 and at 10k tracked positions.

The end-to-end figures always use the 10k population (`--e2e-accounts`), the 100-position
figure a default devnet with 143 borrowers (101 on Aave V3).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_abi.abi import decode
from eth_account import Account
from eth_utils.abi import function_signature_to_4byte_selector

from keeper.anvil import Anvil
from keeper.chain.http import HttpRpc
from keeper.chain.ws import WsSubscriptions
from keeper.demo import build_keeper
from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.devnet.info import DevnetInfo
from keeper.devnet.scale import start_scaled_devnet
from keeper.execution.journal import Journal
from keeper.log import configure_logging
from keeper.strategy import StrategyContext
from keeper.types import BlockRef
from strategies.aave_v3 import market as aave_market
from strategies.aave_v3.config import AaveV3Config
from strategies.aave_v3.strategy import AaveV3Strategy
from tests.bench.bench_feed_to_send import (
    Bench,
    KeeperState,
    Series,
    TimedRpc,
    close_keeper,
    keeper_trial,
    limit_trial,
    machine,
    release,
    save_keeper,
    timed_client,
    trial_keeper,
)

ACCOUNT_DATA = "0x" + function_signature_to_4byte_selector("getUserAccountData(address)").hex()
SMALL_POPULATION = 143  # default-devnet borrowers: 101 of them on Aave V3
STEADY_TIMEOUT = 60.0


@dataclass
class Table:
    """The figures, printed at the end as one table."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, figure: str, value: str, target: str = "") -> None:
        self.rows.append((figure, value, target))
        print(f"  {figure}: {value}", file=sys.stderr, flush=True)

    def print(self) -> None:
        width = max(len(r[0]) for r in self.rows)
        value_width = max(len(r[1]) for r in self.rows)
        print(f"{'figure':<{width}}  {'measured':<{value_width}}  target")
        print("-" * (width + value_width + 12))
        for figure, value, target in self.rows:
            print(f"{figure:<{width}}  {value:<{value_width}}  {target}")


class CountingRpc(HttpRpc):
    """An `HttpRpc` that records the largest JSON-RPC batch it sent and the calls made."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.largest_batch = 0
        self.calls = 0

    async def _batch_chunk(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        self.largest_batch = max(self.largest_batch, len(calls))
        self.calls += len(calls)
        return await super()._batch_chunk(calls)

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        self.calls += 1
        return await super().call(method, params)


async def head_block(chain: HttpRpc) -> BlockRef:
    raw = await chain.call("eth_getBlockByNumber", ["latest", False])
    return BlockRef(number=int(raw["number"], 16), hash=raw["hash"],
                    parent_hash=raw["parentHash"], timestamp=int(raw["timestamp"], 16))


async def cold_start(
    info: DevnetInfo, table: Table, *, max_batch: int, log_range: int, label: str
) -> tuple[AaveV3Strategy, BlockRef]:
    """Time `AaveV3Strategy.sync` from nothing (logs from block 0 + lens reads)."""
    # A generous HTTP timeout: one eth_getLogs answer of a 100k population is ~100 MB.
    chain = CountingRpc(info.rpc_url, max_batch=max_batch, max_log_range=log_range, timeout=120)
    await chain.connect()
    try:
        at = await head_block(chain)
        strategy = AaveV3Strategy(
            AaveV3Config.model_validate({"addresses_provider": info.aave_v3.addresses_provider}),
            StrategyContext(chain_id=chain.chain_id, liquidator=info.accounts.liquidator),
        )
        sent = chain.requests_sent
        started = time.perf_counter()
        await strategy.sync(chain, at)
        seconds = time.perf_counter() - started
        requests = chain.requests_sent - sent
    finally:
        await chain.aclose()
    table.add(
        f"cold start, {label}",
        f"{seconds:.1f} s for {len(strategy.accounts):,} accounts ({requests} HTTP requests, "
        f"{chain.calls:,} calls, largest batch {chain.largest_batch})",
        f"< 60 s at 100k, batches <= {max_batch}",
    )
    return strategy, at


def screened_detection(
    strategy: AaveV3Strategy, at: BlockRef, weth: str, move: float, repeats: int = 21
) -> tuple[float, int, int, int]:
    """The keeper's detection after WETH moves by `move` (a fraction, -0.036 = -3.6 %):
    the float screen (strategies/aave_v3/screen.py) re-priced for the moved column, then
    the exact check of the rows it flags. Returns (median seconds, flagged, liquidatable,
    false negatives against the exact check of every account)."""
    from strategies.aave_v3.screen import HealthScreen  # noqa: PLC0415 (optional module)

    market = strategy.book.market
    moved = replace(market, reserves=tuple(
        replace(r, price=int(r.price * (1 + move))) if r.asset == weth else r
        for r in market.reserves))
    accounts = {u: strategy.book.account(u) for u in strategy.accounts}
    screen = HealthScreen.from_accounts(market, accounts.values(), at.timestamp)
    timings: list[float] = []
    liquidatable: list[str] = []
    flagged: list[str] = []
    for _ in range(repeats):
        started = time.perf_counter()
        screen.update(moved, at.timestamp)
        flagged = screen.flagged()
        liquidatable = [u for u in flagged if _liquidatable(moved, accounts[u], at.timestamp)]
        timings.append(time.perf_counter() - started)
        screen.update(market, at.timestamp)  # back, untimed, for the next repeat
    exact = {u for u, a in accounts.items() if _liquidatable(moved, a, at.timestamp)}
    missed = len(exact - set(liquidatable))
    return statistics.median(timings), len(flagged), len(liquidatable), missed


def _liquidatable(market: aave_market.Market, account: aave_market.Account, now: int) -> bool:
    data = aave_market.account_data(market, account, now)
    return data.total_debt_base > 0 and data.health_factor < 10**18


async def peer_vs_keeper(
    info: DevnetInfo, strategy: AaveV3Strategy, at: BlockRef, table: Table, *, max_batch: int
) -> None:
    """getUserAccountData for every account by JSON-RPC batches, vs the exact local check."""
    users = strategy.accounts
    market = strategy.book.market
    chain = HttpRpc(info.rpc_url, max_batch=max_batch, timeout=120)
    await chain.connect()
    try:
        calls = [("eth_call", [{"to": market.pool,
                                "data": ACCOUNT_DATA + "00" * 12 + u.removeprefix("0x")},
                               hex(at.number)]) for u in users]
        sent = chain.requests_sent
        started = time.perf_counter()
        answers = await chain.batch(calls)
        peer = time.perf_counter() - started
        requests = chain.requests_sent - sent
    finally:
        await chain.aclose()
    accounts = [strategy.book.account(u) for u in users]
    started = time.perf_counter()
    local = [aave_market.account_data(market, a, at.timestamp) for a in accounts]
    keeper = time.perf_counter() - started
    chain_hf = [decode(["uint256"] * 6, bytes.fromhex(a.removeprefix("0x")))[5] for a in answers]
    mismatches = sum(1 for c, m in zip(chain_hf, local, strict=True) if c != m.health_factor)
    below = sum(1 for m in local if m.total_debt_base and m.health_factor < 10**18)
    n = len(users)
    table.add(f"peer: getUserAccountData x {n:,} (JSON-RPC batches of {max_batch})",
              f"{peer:.2f} s = {peer / n * 1e6:.1f} us/account ({requests} HTTP requests)")
    table.add("keeper: exact in-memory HF (account_data)",
              f"{keeper * 1e3:.1f} ms = {keeper / n * 1e6:.2f} us/account; "
              f"{mismatches} HF differ from the chain; {below} below 1")
    table.add("ratio peer / keeper exact, per account", f"{peer / keeper:,.0f}x", ">= 1000x")
    weth = info.tokens["WETH"].address.lower()
    for move in (0.0001, -0.036):
        try:
            seconds, flagged, found, missed = screened_detection(strategy, at, weth, move)
        except ImportError:
            table.add("keeper: screen + exact", "strategies/aave_v3/screen.py not present")
            return
        table.add(
            f"keeper: screen + exact check of flagged, WETH {move * 100:+g} %",
            f"{seconds * 1e3:.2f} ms for {n:,} accounts = {seconds / n * 1e9:.0f} ns/account "
            f"({flagged} flagged, {found} liquidatable, {missed} missed); "
            f"ratio peer / keeper {peer / seconds:,.0f}x", ">= 1000x")


async def keeper_for(info: DevnetInfo, folder: Path, drop: Decimal
                     ) -> tuple[Bench, TimedRpc, KeeperState]:
    """A synced keeper's state on `info` and the bench's timed client, as bench_feed_to_send
    sets them (each trial wires its keeper on them: `trial_keeper`)."""
    bench = Bench(info, drop)
    bench.poster = await HttpRpc.open(info.rpc_url)
    await bench.approve_debt_tokens()
    bench.snapshot = await bench.poster.call("evm_snapshot", [])
    synced = await build_keeper(info, Journal(folder / "engine.sqlite"))
    try:
        state = save_keeper(synced)
    finally:
        await close_keeper(synced)  # its fields stay readable: the trials' template
    return bench, await timed_client(info.rpc_url), state


async def close_bench(bench: Bench, rpc: TimedRpc) -> None:
    if bench.snapshot:
        await bench.reset()
    if bench.poster is not None:
        await bench.poster.aclose()
    await rpc.aclose()


def tracked_aave(state: KeeperState) -> AaveV3Strategy:
    """The synced keeper's Aave V3 strategy (the one the devnet's positions are on)."""
    strategies, _dex = state.saved
    found: AaveV3Strategy = next(s for s in strategies if isinstance(s, AaveV3Strategy))
    return found


async def requests_per_block(bench: Bench, *, rpc: TimedRpc, state: KeeperState,
                             folder: Path, blocks: int) -> tuple[float, str]:
    """HTTP requests per processed block while small (non-liquidating) WETH moves stream in
    over the WebSocket, one block each (bench_feed_to_send's steady state, as numbers)."""
    await bench.reset()
    keeper = await trial_keeper(state, rpc, folder, "steady",
                                ws=WsSubscriptions(bench.info.ws_url), poll_interval=3600.0)
    stats = keeper.engine.stats
    stop = asyncio.Event()
    task = asyncio.create_task(keeper.run(stop))
    try:
        await asyncio.sleep(0.3)
        http0, methods0, processed0 = rpc.requests_sent, Counter(rpc.methods), stats.blocks
        for k in range(blocks):
            _, block = await bench.post(bench.calm_data[k % 2])
            deadline = time.monotonic() + STEADY_TIMEOUT
            while stats.processed < block:
                assert time.monotonic() < deadline, "the keeper did not follow"
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.05)
        processed = stats.blocks - processed0
        http = rpc.requests_sent - http0
        methods = rpc.methods - methods0
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, STEADY_TIMEOUT)
        finally:
            release(keeper)
    detail = ", ".join(f"{m} {n / processed:.2f}" for m, n in sorted(methods.items()))
    return http / processed, detail


async def end_to_end(info: DevnetInfo, table: Table, args: argparse.Namespace,
                     label: str) -> None:
    """Requests per block in steady state, then feed log -> signed tx sent (p50/p99, vs the
    bare-socket limit) for each WETH drop in `--drops`."""
    Account.enable_unaudited_hdwallet_features()
    limit_account = Account.from_mnemonic(
        "test test test test test test test test test test test junk",
        account_path="m/44'/60'/0'/0/4",  # anvil dev account 4, as bench_feed_to_send
    )
    drops = [Decimal(d) for d in args.drops.split(",")] if args.trials else [Decimal("0.036")]
    with tempfile.TemporaryDirectory(prefix="keeper-bench-scale-") as name:
        folder = Path(name)
        for number, drop in enumerate(drops):
            bench, rpc, state = await keeper_for(info, folder, drop)
            limit_rpc = await HttpRpc.open(info.rpc_url)
            try:
                tracked = len(tracked_aave(state).accounts)
                if number == 0 and args.steady_blocks:
                    # First, on the chain fresh from the snapshot (as at 100 positions),
                    # before the trials' evm_reverts.
                    per_block, detail = await requests_per_block(
                        bench, rpc=rpc, state=state, folder=folder,
                        blocks=args.steady_blocks)
                    await_requests(table, per_block, detail, tracked)
                if not args.trials:
                    continue
                keeper, limit, stepping = Series("keeper"), Series("limit"), Series("step")
                for k in range(args.warmup + args.trials):
                    # Without prepared liquidations: this bench times the step at scale.
                    timed = await keeper_trial(
                        bench, rpc=rpc, state=state, folder=folder, trial=f"t{k}", drop=drop,
                        prepared=False)
                    assert timed.latency is not None, f"a {drop} drop sent nothing"
                    bare = await limit_trial(bench, limit_rpc, limit_account, drop)
                    if k >= args.warmup:
                        keeper.samples.append(timed.latency)
                        limit.samples.append(bare)
                        stepping.samples.append(timed.work)
                    if k % 10 == 0:
                        print(f"    trial {k}", file=sys.stderr, flush=True)
                liquidatable = _liquidatable_after(state, drop)
            finally:
                await limit_rpc.aclose()
                await close_bench(bench, rpc)
            table.add(
                f"feed log -> signed tx sent, WETH -{drop * 100}% ({liquidatable} of "
                f"{tracked:,} Aave accounts liquidatable), {label}",
                f"p50 {keeper.pct(50) * 1e3:.1f} ms, p99 {keeper.pct(99) * 1e3:.1f} ms "
                f"(n={len(keeper.samples)}; step starts -> sent p50 "
                f"{stepping.pct(50) * 1e3:.1f} ms)",
                "p50 <= 20 ms, p99 <= 50 ms")
            table.add("  physical limit (bare socket, same trials)",
                      f"p50 {limit.pct(50) * 1e3:.2f} ms, p99 {limit.pct(99) * 1e3:.2f} ms")


def _liquidatable_after(state: KeeperState, drop: Decimal) -> int:
    """How many tracked Aave accounts the drop makes liquidatable (exact, at the synced head)."""
    strategy = tracked_aave(state)
    market = strategy.book.market
    weth = state.template.engine.quote_token  # the devnet keeper quotes in WETH
    moved = replace(market, reserves=tuple(
        replace(r, price=int(r.price * (1 - drop))) if r.asset == weth else r
        for r in market.reserves))
    return sum(1 for u in strategy.accounts
               if _liquidatable(moved, strategy.book.account(u), state.head.timestamp))


def await_requests(table: Table, per_block: float, detail: str, tracked: int) -> None:
    table.add(f"HTTP requests per block, steady state, {tracked:,} tracked",
              f"{per_block:.2f} ({detail})", "equal at 100 and 10k, <= 5")


async def small_requests_per_block(table: Table, args: argparse.Namespace) -> None:
    anvil, info, _cached = start_devnet(DevnetSpec(borrowers=SMALL_POPULATION))
    try:
        with tempfile.TemporaryDirectory(prefix="keeper-bench-scale-") as name:
            folder = Path(name)
            bench, rpc, state = await keeper_for(info, folder, Decimal("0.036"))
            try:
                tracked = len(tracked_aave(state).accounts)
                per_block, detail = await requests_per_block(
                    bench, rpc=rpc, state=state, folder=folder,
                    blocks=args.steady_blocks)
            finally:
                await close_bench(bench, rpc)
        await_requests(table, per_block, detail, tracked)
    finally:
        anvil.stop()


def scaled(count: int, table: Table) -> tuple[Anvil, DevnetInfo]:
    started = time.perf_counter()
    anvil, info, report, cached = start_scaled_devnet(count)
    table.add(
        f"devnet with {count:,} factory-made Aave V3 positions",
        f"built in {report.build_seconds:.1f} s ({report.transactions} transactions); "
        f"{'loaded from cache' if cached else 'built now'} in "
        f"{time.perf_counter() - started:.1f} s",
    )
    return anvil, info


async def run(args: argparse.Namespace, table: Table) -> None:
    e2e = args.e2e_accounts
    for count in dict.fromkeys([args.accounts, e2e]):
        anvil, info = await asyncio.to_thread(scaled, count, table)
        try:
            strategy, at = await cold_start(info, table, max_batch=args.max_batch,
                                            log_range=args.log_range,
                                            label=f"{count:,} positions")
            if count != e2e:
                continue
            await peer_vs_keeper(info, strategy, at, table, max_batch=args.max_batch)
            del strategy
            if args.trials or args.steady_blocks:
                await end_to_end(info, table, args, f"{count:,} positions")
        finally:
            anvil.stop()
    if args.steady_blocks:
        await small_requests_per_block(table, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=10_000,
                        help="positions for the cold start (the 10k end-to-end runs anyway)")
    parser.add_argument("--e2e-accounts", type=int, default=10_000,
                        help="positions for the peer comparison and the end-to-end figures")
    parser.add_argument("--max-batch", type=int, default=1000, help="calls per HTTP batch")
    parser.add_argument("--log-range", type=int, default=10_000, help="blocks per eth_getLogs")
    parser.add_argument("--trials", type=int, default=30, help="feed -> send trials (0: skip)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steady-blocks", type=int, default=20, help="0: skip")
    parser.add_argument("--drops", default="0.036,0.011",
                        help="WETH drops, one series of trials each (0.036 = -3.6 %%: ~590 "
                             "of the 10k accounts liquidatable at once; 0.011: a handful)")
    args = parser.parse_args()
    configure_logging("json", "warning", stream=open(os.devnull, "w"))  # noqa: SIM115
    table = Table()
    started = time.perf_counter()
    asyncio.run(run(args, table))
    print(f"\nmachine: {machine()}; whole run {time.perf_counter() - started:.0f} s")
    table.print()


if __name__ == "__main__":
    main()

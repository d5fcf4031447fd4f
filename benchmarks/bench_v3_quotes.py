"""Uniswap V3 exits: quote time by ticks crossed, and a crash block ranked with and without V3.

Run: `.venv/bin/python -m benchmarks.bench_v3_quotes [--trials 2000]`. In one run, on the
default devnet (cached state):

- **quote time per exit** (p50, p99 over `--trials` calls) for a WETH -> USDC sale on the
  0.3 % pool, sized to cross 0, 10 and 100 initialized ticks (its ladder of range orders):
  the pool's mirrored swap alone (`quote_exact_input_single`) on a new pool object (the
  loop from the pool's price) and on the same one again (the steps its input covers are
  remembered: `keeper.dex.v3_pool._Walk`), and the whole exit as ranking asks for it
  (`Venues.quote`: every fee tier of both venues and the two-hop paths, the same pools);
- **a crash block**: WETH -30 % and WBTC -20 % posted in one block, the strategies synced
  there, their candidates ranked on the Uniswap V2 pairs alone and on V2 + V3 (`Venues`):
  CPU time (the fastest and the median of `--repeat` rankings, each on fresh pool objects, so
  no V3 pool starts with a walked swap loop: `keeper.dex.v3_pool._Walk`), opportunities,
  predicted net profit, and which venue each exit uses. Twice: as sent with the keeper's
  own tokens, and as flash liquidations (a free loan, at the devnet's gas price: each
  exit compared net of its swaps' gas, the surplus sold, liquidations valued in sequence
  on the pools the earlier ones' sales leave).

Figures are printed; nothing is asserted. `--profile N` prints the N costliest functions
(cProfile, by own time; `BENCH_SORT=cumulative` for their totals) of ranking the crash
block's flash liquidations on V2 + V3.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import os
import pstats
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from functools import partial
from pathlib import Path

from web3 import Web3

from keeper.demo import DEMO_PRIORITY_FEE, build_keeper
from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.devnet.info import DevnetInfo
from keeper.devnet.tokens import post_price
from keeper.dex.uniswap_v3 import EXIT_HEADROOM_BPS, V3Book
from keeper.dex.v3_pool import V3Pool, quote_exact_input_single
from keeper.dex.venue import Venue, Venues
from keeper.execution.journal import Journal
from keeper.ranking import rank
from keeper.types import Candidate, Opportunity

DROPS = {"WETH": Decimal("0.70"), "WBTC": Decimal("0.80")}
TICKS = (0, 10, 100)


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) in microseconds."""
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e6, ordered[int(0.99 * (len(ordered) - 1))] * 1e6


def timed(call: Callable[[], object], trials: int) -> tuple[float, float]:
    samples = []
    for _ in range(trials):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


def amount_crossing(pool: V3Pool, zero_for_one: bool, ticks: int) -> int:
    """The least input (to a power-of-two grid, then bisected) whose swap crosses `ticks`
    initialized ticks."""
    def crossed(amount: int) -> int:
        return quote_exact_input_single(pool, zero_for_one, amount).initialized_crossed
    low, high = 1, 1
    while crossed(high) < ticks:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if crossed(middle) < ticks else (low, middle)
    return high if ticks else 10**15


def quote_times(info: DevnetInfo, v3: V3Book, venues: Venues, trials: int) -> None:
    assert info.uniswap_v3 is not None
    pool = v3.by_address[info.uniswap_v3.pools["WETH/USDC/3000"].lower()]
    weth, usdc = info.tokens["WETH"].address.lower(), info.tokens["USDC"].address.lower()
    zero_for_one = pool.zero_for_one(weth)
    print(f"quote time per exit, WETH -> USDC, {trials} calls each (microseconds)")
    print("ticks crossed  WETH sold      steps  pool swap p50/p99   walked p50/p99"
          "     whole exit p50/p99")

    def cold(amount: int) -> object:  # a new pool object: the loop from the pool's price
        return quote_exact_input_single(replace(pool), zero_for_one, amount)

    for ticks in TICKS:
        amount = amount_crossing(pool, zero_for_one, ticks)
        result = quote_exact_input_single(pool, zero_for_one, amount)
        swap = timed(partial(cold, amount), trials)
        # The same pool object again: the steps its input covers are remembered (_Walk);
        # sizes alternate by a wei, as the size search's do, so its last swap is not reused.
        sizes = itertools.cycle((amount, amount - 1))
        walked = timed(partial(walked_quote, pool, zero_for_one, sizes), trials)
        exit_ = timed(partial(venues.quote, weth, usdc, amount), max(trials // 10, 10))
        print(f"{result.initialized_crossed:>13}  {amount / 1e18:>12.3f}  {result.steps:>5}"
              f"  {swap[0]:>8.0f} / {swap[1]:<8.0f}  {walked[0]:>6.0f} / {walked[1]:<6.0f}"
              f"  {exit_[0]:>8.0f} / {exit_[1]:<8.0f}")



def walked_quote(pool: V3Pool, zero_for_one: bool, sizes: Iterator[int]) -> object:
    return quote_exact_input_single(pool, zero_for_one, next(sizes))


def summary(name: str, ranked: list[Opportunity], seconds: list[float]) -> None:
    venues = Counter(o.swap.venue if o.swap is not None else "none" for o in ranked)
    net = sum(o.net_profit for o in ranked) / 1e18
    print(f"{name:<22} {min(seconds):>6.2f} / {statistics.median(seconds):<6.2f} s "
          f"{len(ranked):>4} opportunities  {net:>12.3f} WETH net  exits: {dict(venues)}")


def fresh(dex: Venue) -> Venue:
    """The same state on new V3 pool objects (none has walked its swap loop yet)."""
    if isinstance(dex, Venues):
        return Venues([fresh(v) for v in dex.venues], via=dex.via)
    if isinstance(dex, V3Book):
        return V3Book((replace(p) for p in dex.by_address.values()), block=dex.block,
                      headroom_bps=dex.headroom_bps)
    return dex


def rank_on(dex: Venue, candidates: list[Candidate], weth: str, block: int,
            base_fee: int) -> tuple[list[Opportunity], float]:
    started = time.process_time()  # the CPU's: the machine is shared, ranking one thread
    ranked = rank(candidates, dex=dex, quote_token=weth, base_fee=base_fee,
                  priority_fee=DEMO_PRIORITY_FEE, min_profit=0, block=block)
    return ranked, time.process_time() - started


async def crash_block(info: DevnetInfo, folder: Path, trials: int, profile: int = 0,
                      repeat: int = 3) -> None:
    w3 = Web3(Web3.HTTPProvider(info.rpc_url))
    for symbol, factor in DROPS.items():
        usd = {"WETH": Decimal(2000), "WBTC": Decimal(30000)}[symbol] * factor
        post_price(w3, info.feeds[symbol], usd, info.accounts.deployer)
    keeper = await build_keeper(info, Journal(folder / "bench.sqlite"), send=False)
    try:
        head = await keeper.sync()
        assert info.uniswap_v3 is not None
        started = time.perf_counter()
        v3 = await V3Book.load(keeper.chain, list(info.uniswap_v3.pools.values()), head)
        v3.headroom_bps = EXIT_HEADROOM_BPS  # as the keeper's exits (V3Book.from_factory)
        print(f"V3Book.load of {len(v3.by_address)} pools: "
              f"{time.perf_counter() - started:.3f} s")
        weth = info.tokens["WETH"].address.lower()
        venues = Venues([keeper.engine.dex, v3], via=weth)
        quote_times(info, v3, venues, trials)
        candidates = [c for s in keeper.engine.strategies for c in s.candidates(head)]
        free = [replace(c, fee=lambda repay: 0) for c in candidates]
        print(f"\ncrash block {head.number}: {len(candidates)} candidates; "
              f"CPU seconds: fastest / median of {repeat}")
        for mode, ranked_ones in (("", candidates), (" flash", free)):
            for name, dex in (("V2 only", keeper.engine.dex), ("V2 + V3", venues)):
                times = []
                for _ in range(repeat):
                    ranked, seconds = rank_on(fresh(dex), ranked_ones, weth, head.number,
                                              head.base_fee)
                    times.append(seconds)
                summary(name + mode, ranked, times)
        if profile:
            profiler = cProfile.Profile()
            profiler.runcall(rank_on, fresh(venues), free, weth, head.number, head.base_fee)
            order = os.environ.get("BENCH_SORT", "tottime")  # or cumulative
            print(f"\nV2 + V3 flash ranking, the {profile} costliest functions ({order}):")
            pstats.Stats(profiler).sort_stats(order).print_stats(profile)
    finally:
        await keeper.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument("--repeat", type=int, default=3, help="rankings per line")
    args = parser.parse_args()
    anvil, info, cached = start_devnet(DevnetSpec())
    try:
        print(f"devnet {'from cache' if cached else 'deployed'} at {info.rpc_url}")
        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(crash_block(info, Path(folder), args.trials, args.profile,
                                    args.repeat))
    finally:
        anvil.stop()


if __name__ == "__main__":
    main()

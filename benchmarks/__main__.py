"""Every benchmark in one command: `.venv/bin/python -m benchmarks [--quick]`.

Runs, one after another and each in its own process (so one's memory does not weigh on
the next's figures):

1. `benchmarks.bench_screening`: the float screen at 1M synthetic positions (incremental
   update after one feed moves, full recompute, memory per million);
2. `benchmarks.bench_scale`: on a devnet of 10k real Aave V3 positions, cold start, RPC
   requests per block at 100 and 10k tracked, the peer way (getUserAccountData for every
   account) against the keeper's detection, and feed log -> signed send;
3. `tests.bench.bench_feed_to_send`: feed log -> first send on the default devnet, against
   a bare loop (the physical limit);
4. `benchmarks.bench_replay`: archive replay speed in blocks per second;
5. `benchmarks.race`: the keeper against a competing bot of the common peer design on a
   crash, judged from the chain (three seeds x both block modes; see docs/benchmarks.md);
6. `benchmarks.bench_v3_quotes`: Uniswap V3 quote time per exit by ticks crossed, and a
   crash block ranked on V2 alone against V2 + V3;
7. `benchmarks.bench_volley`: N sends of one block one at a time (simulation "before")
   against a volley (simulation "alongside"): the journal's fsyncs, and on the devnet;
8. `benchmarks.bench_sweep`: a backtest sweep (2 price paths x 3 bid shares) on a local
   Ray instance against the same backtests one after another;
9. `benchmarks.bench_ha_takeover`: two `[ha]` replicas with 1 s blocks, the leader killed:
   how long until the standby leads and first sends; `benchmarks.bench_journal_pg`: a
   volley's journal writes on SQLite against PostgreSQL;
10. `benchmarks.auction`: the devnet crash in builder mode on the oracle network, the keeper
   (backruns, a bid to coinbase) against the public polling competitor and against a
   second keeper bidding less; oracle transaction -> bundle at the builder, beside a bare
   loop.

`--quick` shrinks every run (fewer positions and trials) to check the command works; its
figures are not the README's. Benchmarks report numbers; they assert nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

FULL: list[list[str]] = [
    ["benchmarks.bench_screening"],
    ["benchmarks.bench_scale"],
    ["tests.bench.bench_feed_to_send"],
    ["benchmarks.bench_replay"],
    ["benchmarks.race", "--long", "--first-step", "60", "--steps", "20"],
    ["benchmarks.bench_v3_quotes"],
    ["benchmarks.bench_volley"],
    ["benchmarks.bench_sweep"],
    ["benchmarks.bench_ha_takeover"],
    ["benchmarks.bench_journal_pg"],
    ["benchmarks.auction", "--mode", "both"],
]
QUICK: list[list[str]] = [
    ["benchmarks.bench_screening", "--positions", "100000", "--moves", "50"],
    ["benchmarks.bench_scale", "--trials", "5", "--steady-blocks", "5"],
    ["tests.bench.bench_feed_to_send", "--trials", "10", "--cold", "1", "--steady-blocks", "5"],
    ["benchmarks.bench_replay", "--blocks", "40"],
    ["benchmarks.race", "--first-step", "66", "--steps", "3"],
    ["benchmarks.bench_v3_quotes", "--trials", "100"],
    ["benchmarks.bench_volley", "--trials", "2", "--sends", "1", "4"],
    ["benchmarks.bench_sweep", "--steps", "4", "--shares", "0,0.5"],
    ["benchmarks.bench_ha_takeover", "--trials", "1"],
    ["benchmarks.bench_journal_pg", "--volleys", "20"],
    ["benchmarks.auction", "--mode", "competitor", "--steps", "3"],
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small runs: check, not measure")
    args = parser.parse_args()
    failed = []
    for module, *options in QUICK if args.quick else FULL:
        print(f"\n=== {module} {' '.join(options)}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", module, *options])
        print(f"=== {module}: exit {code}, {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(module)
    if failed:
        sys.exit(f"benchmarks that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()

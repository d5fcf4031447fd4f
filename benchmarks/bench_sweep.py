"""Backtest sweep speed: price paths x bid shares as Ray tasks against the same backtests
one after another.

Run: `.venv/bin/python -m benchmarks.bench_sweep [--cpus 2] [--steps 14] [--shares 0,0.25,0.5]`.

The sweep is `keeper backtest sweep` itself (a subprocess: a local Ray instance with
`--cpus` CPUs, each backtest a task on its own anvil with `--prune-history`); the
sequential run is `run_price_path` (what `keeper backtest --devnet` runs) for each cell
in this process. Paths: the stETH depeg and the 2021-05-19 crash's steepest stretch (rows
66-80 as a path of their own). Printed: both wall-clock times (the sweep's includes
starting and stopping Ray), the speed-up, and how many cells' reports differ (wall-clock
fields aside; 0 expected: the replay is deterministic). The load average is printed
beside them: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from keeper.backtest.devnet_replay import run_price_path
from keeper.backtest.model import WALL_CLOCK
from keeper.backtest.path_file import load_path, resolve_path
from keeper.backtest.sweep_params import Tuning
from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.log import configure_logging

STEEPEST = (66, 80)


def crash_stretch(folder: Path) -> Path:
    """The 2021-05-19 path's steepest stretch as a path file of its own (its comments kept:
    the source and which feeds it drives)."""
    lines = resolve_path("eth_usd_2021-05-19_10min").read_text().splitlines()
    comments = [line for line in lines if line.startswith("#")]
    rows = [line for line in lines if line and not line.startswith("#")]
    path = folder / "crash_stretch.csv"
    path.write_text("\n".join([*comments, rows[0], *rows[1:][STEEPEST[0]:STEEPEST[1]]]) + "\n")
    return path


def without_clock(report: dict[str, Any]) -> dict[str, Any]:
    """A backtest report without its wall-clock fields (all that two equal runs differ in)."""
    return {k: v for k, v in report.items() if k not in WALL_CLOCK}


def differences(got: Any, want: Any, where: str = "") -> list[str]:
    """Where two JSON values differ."""
    if isinstance(got, dict) and isinstance(want, dict):
        return [d for k in sorted(set(got) | set(want), key=str)
                for d in differences(got.get(k), want.get(k), f"{where}.{k}")]
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True))
                for d in differences(g, w, f"{where}[{i}]")]
    return [] if got == want else [f"{where}: {got!r:.100} != {want!r:.100}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--shares", default="0,0.25,0.5")
    args = parser.parse_args()
    anvil, _info, _cached = start_devnet(DevnetSpec())  # the cache, before either run
    anvil.stop()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as folder:
        paths = [resolve_path("steth_eth_2022-06_depeg"), crash_stretch(Path(folder))]
        out = Path(folder) / "sweep.json"
        command = [sys.executable, "-m", "keeper.cli", "backtest", "sweep",
                   "--price-path", str(paths[0]), "--price-path", str(paths[1]),
                   "--steps", str(args.steps), "--bid-share", args.shares,
                   "--cpus", str(args.cpus), "--json-out", str(out)]
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        subprocess.run(command, check=True, capture_output=True, text=True,
                       env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
        swept = time.monotonic() - started
        cells = json.loads(out.read_text())["cells"]
        configure_logging("json", "warning", stream=open(os.devnull, "w"))  # noqa: SIM115
        started = time.monotonic()
        differing = 0
        for cell, path in zip(cells, [p for p in paths for _ in args.shares.split(",")],
                              strict=True):
            tuning = Tuning(bid_share=Decimal(cell["tuning"]["bid_share"]))
            alone = run_price_path(load_path(path), max_steps=args.steps, tuning=tuning)
            found = differences(without_clock(cell["report"]), without_clock(alone.to_json()))
            differing += bool(found)
            for line in found[:8]:
                print(f"  {path.stem} bid {cell['tuning']['bid_share']}: {line}")
        sequential = time.monotonic() - started
    load_after = os.getloadavg()[0]
    print(f"{len(cells)} backtests ({len(paths)} paths x {len(args.shares.split(','))} bid "
          f"shares, {args.steps} steps each)")
    print(f"  sweep on a local Ray instance ({args.cpus} CPUs): {swept:.1f} s")
    print(f"  one after another in one process:       {sequential:.1f} s")
    print(f"  speed-up {sequential / swept:.2f}x; cells whose report differs: {differing}")
    print(f"  load average {load_before:.1f} before, {load_after:.1f} after")


if __name__ == "__main__":
    main()

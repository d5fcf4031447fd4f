"""`keeper backtest sweep` on a local Ray instance capped at 2 CPUs: 2 price paths x 3 bid
shares, each a Ray task on its own anvil (`--prune-history`), give one combined report whose
every backtest equals the same backtest run alone (`run_price_path`, as `keeper backtest
--devnet` runs it), wall-clock fields aside; and the bid share reaches the keeper (a larger
share pays more gas)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from benchmarks.bench_sweep import crash_stretch, differences, without_clock
from keeper.backtest.devnet_replay import run_price_path
from keeper.backtest.path_file import load_path, resolve_path
from keeper.backtest.sweep_params import Tuning
from keeper.backtest.sweep_report import Cell
from keeper.log import reset_logging
from tests.conftest import Devnet

STEPS = 12
SHARES = ("0", "0.25", "0.5")


@pytest.mark.anvil
def test_sweep_on_ray_equals_the_backtests_run_one_by_one(
    devnet_session: Devnet, tmp_path: Path
) -> None:
    del devnet_session  # only its cached devnet state: every backtest starts its own anvil
    paths = [resolve_path("steth_eth_2022-06_depeg"), crash_stretch(tmp_path)]
    out, page = tmp_path / "sweep.json", tmp_path / "sweep.html"
    command = [sys.executable, "-m", "keeper.cli", "backtest", "sweep",
               "--price-path", str(paths[0]), "--price-path", str(paths[1]),
               "--steps", str(STEPS), "--bid-share", ",".join(SHARES), "--cpus", "2",
               "--json-out", str(out), "--html", str(page)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "6 backtests" in done.stdout
    cells = json.loads(out.read_text())["cells"]
    assert [(c["path"], c["tuning"]["bid_share"]) for c in cells] == [
        (p.stem, s) for p in paths for s in SHARES]
    assert '<img alt="capture and PnL per parameter set"' in page.read_text()

    for cell, (path, share) in zip(cells, [(p, s) for p in paths for s in SHARES],
                                   strict=True):
        tuning = Tuning(bid_share=Decimal(share))
        try:
            alone = run_price_path(load_path(path), max_steps=STEPS, tuning=tuning).to_json()
        finally:
            reset_logging()
        assert cell["error"] is None
        found = differences(without_clock(cell["report"]), without_clock(alone))
        assert not found, (path.stem, share, found[:10])
        assert cell["figures"] == Cell(path.stem, STEPS, tuning, report=alone).figures()
        assert cell["figures"]["liquidations"] > 0, (path.stem, share)

    for path in paths:  # the share is bid: more of it, more gas paid for the same path
        gas = [c["figures"]["gas_eth"] for c in cells if c["path"] == path.stem]
        assert gas == sorted(gas) and gas[0] < gas[-1], (path.stem, gas)

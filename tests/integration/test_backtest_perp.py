"""`keeper backtest --devnet --perp`: the price-path backtest on the Perp v2 devnet profile.

The command as a user types it, on the 2021-05-19 path's first 16 steps: after each step's
price block the replay trades the vETH and vBTC vAMMs to the new WETH and WBTC prices from
the profile's whale (one block per trade, 15 s apart, then one 16 s later, all mined by the
replay: keeper.demo_perp.follow_step_replayed), and the keeper runs the Perp strategy (the
lending strategies sit out on this profile). Asserted from the JSON report: nothing
reverted; the note counting Perp's confirmed actions has liquidations and closes, as many
in all as the report lists Perp sends (both read off the journal).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.helpers import devnet_backtest, run_keeper

STEPS = 16


def test_backtest_with_perp_liquidates_and_closes(tmp_path: Path) -> None:
    report = devnet_backtest("--perp", STEPS, tmp_path / "bt.log")
    assert set(report["attempts"]) == {"confirmed"}, report["attempts"]
    notes = [n for n in report["notes"] if n.startswith("Perp v2: ")]
    assert len(notes) == 1, report["notes"]
    counted = re.match(r"Perp v2: (\d+) liquidations, (\d+) order cancels, (\d+) positions "
                       r"closed, (\d+) profit withdrawals", notes[0])
    assert counted is not None, notes[0]
    assert int(counted[1]) > 0 and int(counted[3]) > 0, notes[0]
    perp = [x for x in report["keeper"] if x["protocol"] == "perp_v2"]
    assert len(perp) == sum(int(n) for n in counted.groups()), (len(perp), notes[0])
    assert len(perp) == len(report["keeper"])  # Aave and Morpho sit out on this profile


def test_perp_needs_the_devnet() -> None:
    result = run_keeper("backtest", "--perp", "--rpc", "http://x", "--from", "1", "--to", "2")
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["keeper: error: --perp is a devnet profile: add --devnet"], lines

"""`keeper backtest --devnet --perp`: the price-path backtest on the Perp v2 devnet profile.

The command as a user types it, on the 2021-05-19 path's first 16 steps: after each step's
price block the replay trades the vETH and vBTC vAMMs to the new WETH and WBTC prices from
the profile's whale (one block per trade, 15 s apart, then one 16 s later, all mined by the
replay: keeper.demo_perp.follow_step_replayed), and the keeper runs the Perp strategy beside
Aave and Morpho. Asserted from the JSON report: nothing reverted (lending liquidations the
backtest's capital cannot fund are `no-capital`, never a Perp one: a Perp send is paid from
margin in Perp's vault, not the wallet's USDC the lending ones spend); the note counting
Perp's confirmed actions has liquidations and closes, as many in all as the report lists
Perp sends (both read off the journal), and lending liquidations ran beside them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.integration.helpers import devnet_backtest, run_keeper

STEPS = 16


def test_backtest_with_perp_liquidates_and_closes(tmp_path: Path) -> None:
    log = tmp_path / "bt.log"
    report = devnet_backtest("--perp", STEPS, log)
    assert set(report["attempts"]) <= {"confirmed", "no-capital"}, report["attempts"]
    held = [json.loads(line) for line in log.read_text().splitlines()
            if "not enough debt asset on hand" in line]
    assert len(held) == report["attempts"].get("no-capital", 0)
    assert not [h for h in held if h.get("strategy") == "perp_v2"], held
    notes = [n for n in report["notes"] if n.startswith("Perp v2: ")]
    assert len(notes) == 1, report["notes"]
    counted = re.match(r"Perp v2: (\d+) liquidations, (\d+) order cancels, (\d+) positions "
                       r"closed, (\d+) profit withdrawals", notes[0])
    assert counted is not None, notes[0]
    assert int(counted[1]) > 0 and int(counted[3]) > 0, notes[0]
    perp = [x for x in report["keeper"] if x["protocol"] == "perp_v2"]
    assert len(perp) == sum(int(n) for n in counted.groups()), (len(perp), notes[0])
    assert len(perp) < len(report["keeper"])  # Aave and Morpho liquidated beside them


def test_perp_needs_the_devnet() -> None:
    result = run_keeper("backtest", "--perp", "--rpc", "http://x", "--from", "1", "--to", "2")
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["keeper: error: --perp is a devnet profile: add --devnet"], lines

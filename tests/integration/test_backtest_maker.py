"""`keeper backtest --devnet --maker`: the price-path backtest on the Maker devnet profile.

The command as a user types it, on the 2021-05-19 path's first 12 steps: the replay moves
Maker's pip and Spotter with the WETH feed in each step's price block and the chain clock
10 minutes a step, and the keeper runs every devnet strategy, Maker's among them. Asserted
from the JSON report: nothing reverted; the note counting Maker's confirmed actions has
kicks (bark, bite) and auction wins (take, deal), and as many as the report lists Maker
liquidations (both read off the journal); Maker's tokens carry their symbols.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.helpers import devnet_backtest, run_keeper

STEPS = 12


def test_backtest_with_maker_counts_its_kicks_and_takes(tmp_path: Path) -> None:
    report = devnet_backtest("--maker", STEPS, tmp_path / "bt.log")
    assert "reverted" not in report["attempts"], report["attempts"]
    notes = [n for n in report["notes"] if n.startswith("Maker: ")]
    assert len(notes) == 1, report["notes"]
    counted = re.match(r"Maker: (\d+) kicks, (\d+) auctions taken or dealt, \d+ bids \(([^)]*)\)",
                       notes[0])
    assert counted is not None, notes[0]
    detail = {k: int(n) for k, n in (p.split(" ") for p in counted[3].split(", "))}
    assert int(counted[1]) > 0 and int(counted[2]) > 0, notes[0]
    assert {"bark", "bite", "take", "deal"} <= set(detail), notes[0]
    maker = [x for x in report["keeper"] if x["protocol"] == "maker"]
    assert len(maker) == sum(detail.values()), (len(maker), notes[0])
    assert {x["collateral"] for x in maker} <= {"MCD_DAI", "MCD_WETH"}
    assert any(x["protocol"] == "aave_v3" for x in report["keeper"])


def test_maker_needs_the_devnet() -> None:
    result = run_keeper("backtest", "--maker", "--rpc", "http://x", "--from", "1", "--to", "2")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines == ["keeper: error: --maker is a devnet profile: add --devnet"], lines

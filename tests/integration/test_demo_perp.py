"""`keeper demo --perp`: the demo on the Perp v2 devnet profile, end to end (16 steps).

The command as a user types it: the Perp profile starts (cached), the crash's first 16 steps
(WETH $2,000 to about $1,854) play, each step's feeds followed by trades of the vETH and vBTC
vAMMs to the new prices (keeper.demo_perp.follow_step), and the keeper runs the Perp strategy.
Asserted from what it prints: no transaction reverted; the Perp summary counts liquidations
and the positions taken over closed, and the final table lists them.
"""

from __future__ import annotations

import re
from pathlib import Path

from keeper.demo_perp import perp_kind, perp_summary
from tests.integration.helpers import demo_output

STEPS = 16


def test_demo_with_perp_liquidates_its_accounts(tmp_path: Path) -> None:
    out = demo_output("--perp", STEPS, tmp_path / "demo.log")
    assert "with Perp v2" in out
    perp = re.search(r"Perp v2: (\d+) liquidations, (\d+) order cancels, (\d+) positions "
                     r"closed, (\d+) profit withdrawals", out)
    assert perp is not None, out
    assert int(perp[1]) > 0 and int(perp[3]) > 0, perp[0]
    assert "perp_v2" in out


def test_perp_actions_are_read_off_the_journal_keys() -> None:
    keys = ["1:perp_v2:0xa:0xb:liquidate:1", "1:perp_v2:0xk:0xb:close:2",
            "1:perp_v2:0xk:0xu:withdraw:3", "1:perp_v2:0xm:0xb:cancel:4",
            "1:perp_v2:0xa:0xc:liquidate:5", "1:aave_v3:0xu:0xc:0xd"]
    assert [perp_kind(k) for k in keys] == ["liquidate", "close", "withdraw", "cancel",
                                            "liquidate", None]
    assert perp_summary(keys) == ("Perp v2: 2 liquidations, 1 order cancels, 1 positions "
                                  "closed, 1 profit withdrawals")
    assert perp_summary(keys[-1:]) == ""

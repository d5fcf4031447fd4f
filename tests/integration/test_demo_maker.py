"""`keeper demo --maker`: the demo on the Maker devnet profile, end to end (14 steps).

The command as a user types it: the Maker profile starts (cached), the crash's first 14
steps (WETH $2,000 to about $1,857) play with 10 minutes of chain time per step, and the
keeper runs every devnet strategy, Maker's among them. Asserted from what it prints: no
liquidation reverted; the Maker summary counts kicks (Dog.bark, Cat.bite), Clipper takes
and Flipper deals, and the final table lists them beside the Aave ones.
"""

from __future__ import annotations

import re
from pathlib import Path

from keeper.demo_profiles import maker_action, maker_summary
from tests.integration.helpers import demo_output

STEPS = 14


def test_demo_with_maker_runs_its_auctions(tmp_path: Path) -> None:
    out = demo_output("--maker", STEPS, tmp_path / "demo.log")
    assert "with Maker MCD" in out
    maker = re.search(r"Maker: (\d+) kicks, (\d+) auctions taken or dealt, \d+ bids \((.*)\)",
                      out)
    assert maker is not None, out
    detail = dict(part.split(" ") for part in maker[3].split(", "))
    assert int(maker[1]) > 0 and int(maker[2]) > 0, maker[0]
    assert {"bark", "bite", "take", "deal"} <= set(detail), maker[0]
    for action in ("maker bark", "maker bite", "maker take", "maker deal", "aave_v3"):
        assert action in out, action


def test_maker_actions_are_read_off_the_journal_keys() -> None:
    flipper = "0x" + "ab" * 20
    keys = ["1:maker:0xu:bark:ETH-B:1:2", "1:maker:0xu:sell:ETH-B:3:4:5:6",
            "1:maker:0xu:flip:bite:ETH-A:0xu:1:2", f"1:maker:0xu:flip:{flipper}:7:deal",
            f"1:maker:0xu:flip:{flipper}:7:tend:1:2", "1:aave_v3:0xu:0xc:0xd"]
    assert [maker_action(k) for k in keys] == ["bark", "sell", "bite", "deal", "tend", None]
    assert maker_summary(keys) == ("Maker: 2 kicks, 2 auctions taken or dealt, 1 bids "
                                   "(bark 1, bite 1, deal 1, sell 1, tend 1)")
    assert maker_summary(keys[-1:]) == ""

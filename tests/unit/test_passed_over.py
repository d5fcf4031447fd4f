"""Liquidatable positions ranking passed over are told once each (keeper/passed_over.py),
and `keeper journal --missed --log` counts them by reason."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from click.testing import CliRunner
from structlog.testing import capture_logs

from keeper import cli
from keeper.execution.journal import Journal
from keeper.passed_over import BELOW_MINIMUM, EVENT, NO_CAPITAL, NOT_VALUED, PassedOver
from keeper.types import Candidate, Opportunity
from tests.factories import candidate

WEI = 10**18


def _position(name: str, *, max_repay: int = WEI) -> Candidate:
    account = "0x" + name.encode().hex().ljust(40, "0")[:40]
    return dataclasses.replace(candidate(), account=account, key=f"1:aave_v3:{account}",
                               max_repay=max_repay)


def _taken(position: Candidate) -> Opportunity:
    return Opportunity(
        strategy="aave_v3", key=position.key, account=position.account,
        collateral=position.collateral, debt=position.debt, debt_to_cover=WEI,
        collateral_received=WEI, gross_value=WEI, slippage=0, gas_limit=600_000,
        gas_cost=10**15, net_profit=WEI // 10, quote_token=position.debt,
        health_factor=9 * 10**17, block=1, candidate=position)


def test_each_position_is_told_once_with_its_reason_and_best_value() -> None:
    small, broke, unsold, taken = (_position("small"), _position("broke", max_repay=0),
                                   _position("unsold"), _position("taken"))
    passed = PassedOver(enabled=True)
    chosen = _taken(taken)
    rejected = {small.key: -3 * 10**15}
    with capture_logs() as logs:
        told = passed.note([small, broke, unsold, taken], [chosen], rejected, 100)
        again = passed.note([small, broke, unsold, taken], [chosen], rejected, 101)
    assert (told, again) == (3, 0)  # the taken one is not told; nothing twice
    lines = {e["account"]: e for e in logs if e["event"] == EVENT}
    assert lines[small.account]["reason"] == BELOW_MINIMUM
    assert lines[small.account]["net_profit"] == -3 * 10**15
    assert lines[broke.account]["reason"] == NO_CAPITAL and "net_profit" not in lines[broke.account]
    assert lines[unsold.account]["reason"] == NOT_VALUED
    assert lines[small.account]["key"] == small.key and lines[small.account]["block"] == 100


def test_a_position_is_told_again_after_it_was_taken_or_healthy() -> None:
    small = _position("small")
    passed = PassedOver(enabled=True)
    taken = _taken(small)
    with capture_logs() as logs:
        passed.note([small], [], {}, 1)
        passed.note([small], [taken], {}, 2)  # ranked this time
        passed.note([small], [], {}, 3)  # passed over again: a new episode
        passed.note([], [], {}, 4)  # healthy
        passed.note([small], [], {}, 5)
    assert [e["block"] for e in logs if e["event"] == EVENT] == [1, 3, 5]


def test_the_missed_report_counts_them_by_reason(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    Journal(journal).close()
    log = tmp_path / "keeper.log"
    log.write_text("\n".join(json.dumps(e) for e in [
        {"event": EVENT, "key": "1:aave_v3:a", "strategy": "aave_v3", "reason": BELOW_MINIMUM,
         "net_profit": WEI // 4},
        {"event": EVENT, "key": "1:aave_v3:b", "strategy": "aave_v3", "reason": BELOW_MINIMUM,
         "net_profit": WEI // 2},
        {"event": EVENT, "key": "1:morpho_blue:c", "strategy": "morpho_blue",
         "reason": NO_CAPITAL},
    ]) + "\n")
    result = CliRunner().invoke(cli.main, ["journal", "--journal", str(journal), "--missed",
                                           "--log", str(log)])
    assert result.exit_code == 0, result.output
    table = result.output.split("liquidatable, never ranked profitable")[1]
    rows = {line.split("  ")[1].strip(): line.split() for line in table.splitlines()
            if BELOW_MINIMUM in line or NO_CAPITAL in line}
    assert rows[BELOW_MINIMUM][-2:] == ["2", "0.75"]  # two positions, 0.25 + 0.5 quote tokens
    assert rows[NO_CAPITAL][-1] == "1"  # not valued: no figure
    only = CliRunner().invoke(cli.main, ["journal", "--journal", str(journal), "--missed",
                                         "--log", str(log), "--strategy", "morpho_blue"])
    assert "min_profit" not in only.output.split("never ranked profitable")[1]


def test_an_engine_that_does_not_send_tells_nothing() -> None:
    with capture_logs() as logs:
        assert PassedOver().note([_position("small")], [], {}, 1) == 0
    assert logs == []

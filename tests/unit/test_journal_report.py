"""`keeper journal` (keeper/journal_report.py): the journaled liquidations listed, filtered,
as CSV with exact integers, and the missed-opportunity report with the log's reasons."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from keeper import cli, execution, units
from keeper.execution.bundles_journal import BundleBook
from keeper.execution.journal import Journal, Signed
from keeper.journal_report import REASONS
from keeper.run_support import note_quote
from keeper.types import Opportunity
from tests.factories import candidate

WEI = 10**18
BORROWERS = {name: "0x" + f"{n:040x}" for n, name in enumerate(("taken", "broke", "lost"), 1)}


def _opportunity(name: str, profit: int, block: int) -> Opportunity:
    return Opportunity(
        strategy="aave_v3", key=f"31337:aave_v3:{name}", account=BORROWERS[name],
        collateral="0x" + "c0" * 20, debt="0x" + "d0" * 20, debt_to_cover=5 * 10**18,
        collateral_received=6 * 10**18, gross_value=WEI, slippage=10**16, gas_limit=600_000,
        gas_cost=10**15, net_profit=profit, quote_token="0x" + "e0" * 20,
        health_factor=99 * 10**16, block=block, candidate=candidate())


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    """A journal with one confirmed liquidation, one abandoned for want of capital, one
    reverted (a lost race), and the daemon's JSON log of them."""
    path = tmp_path / "journal.sqlite"
    with Journal(path) as journal:
        taken = _opportunity("taken", 2 * WEI, 100)
        assert journal.claim(taken, 31337)
        journal.record_signed(taken.key, 0, "0x" + "aa" * 32, "0x02", 30 * 10**9, 2 * 10**9)
        journal.mark_sent(taken.key, "0x" + "aa" * 32)
        journal.mark_confirmed(taken.key, "0x" + "aa" * 32, 101, 250_000,
                               1_987_654_321_987_654_321)
        broke = _opportunity("broke", 3 * WEI, 102)
        assert journal.claim(broke, 31337)
        journal.mark_abandoned(broke.key)
        lost = _opportunity("lost", WEI // 2, 103)
        assert journal.claim(lost, 31337)
        journal.record_signed(lost.key, 1, "0x" + "bb" * 32, "0x02", 30 * 10**9, 3 * 10**9)
        journal.mark_sent(lost.key, "0x" + "bb" * 32)
        journal.mark_reverted(lost.key, "0x" + "bb" * 32, 104, 50_000, -(10**15))
    log = tmp_path / "keeper.log"
    log.write_text("\n".join([
        "a console line, not JSON",
        json.dumps({"event": "not enough debt asset on hand; not sent", "key": broke.key}),
        json.dumps({"event": "liquidation reverted", "key": lost.key}),
        json.dumps({"event": "lost the race", "key": lost.key, "winner": "0x" + "99" * 20}),
    ]) + "\n")
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli.main, ["journal", *args])


def test_lists_every_liquidation_in_quote_units(journal_path: Path) -> None:
    result = run("--journal", str(journal_path))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "bids to builders" not in out  # no bundle sent
    assert "journal: 3 liquidations (quote-token amounts, bids in gwei)" in out
    assert "1.9877" in out and "-0.001" in out  # realized PnL in whole quote tokens
    assert "250,000" in out and "2" in out  # gas used, bid in gwei
    assert "1987654321987654321" not in out  # exact integers only in the CSV
    assert "1 confirmed, 1 reverted, 1 abandoned" in out


def test_filters_and_csv_with_exact_integers(journal_path: Path) -> None:
    result = run("--journal", str(journal_path), "--csv", "--status", "confirmed")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == 1
    (row,) = rows
    assert row["realized_profit_wei"] == "1987654321987654321"
    assert row["gas_used"] == "250000" and row["priority_fee_wei"] == str(2 * 10**9)
    assert row["account"] == BORROWERS["taken"] and row["tx_hash"] == "0x" + "aa" * 32
    only = run("--journal", str(journal_path), "--csv", "--account", BORROWERS["lost"].upper()
               .replace("0X", "0x"), "--from-block", "103")
    assert [r["status"] for r in csv.DictReader(io.StringIO(only.output))] == ["reverted"]
    assert len(list(csv.DictReader(io.StringIO(
        run("--journal", str(journal_path), "--csv", "--last", "2").output)))) == 2


def test_the_missed_report_gives_reasons_and_expected_value(
    journal_path: Path, tmp_path: Path
) -> None:
    result = run("--journal", str(journal_path), "--missed", "--log", str(tmp_path / "keeper.log"))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "no-capital" in out and "lost" in out and "3.0000" in out and "0.5" in out
    assert "taken" not in out.split("journal:")[0]  # only what was missed
    rows = list(csv.DictReader(io.StringIO(run(
        "--journal", str(journal_path), "--missed", "--csv", "--log",
        str(tmp_path / "keeper.log")).output)))
    reasons = {r["account"]: (r["reason"], r["detail"]) for r in rows}
    assert reasons == {BORROWERS["broke"]: ("no-capital", ""),
                       BORROWERS["lost"]: ("lost", "0x" + "99" * 20)}
    # Without the log: the status alone.
    plain = run("--journal", str(journal_path), "--missed")
    assert "not sent" in plain.output and "add --log" in plain.output


def test_bad_journal_is_one_line(tmp_path: Path) -> None:
    missing = run("--journal", str(tmp_path / "none.sqlite"))
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    other = tmp_path / "other.sqlite"
    other.write_text("not a database at all, just text" * 10)
    bad = run("--journal", str(other))
    assert bad.exit_code == 2 and len(bad.stderr.splitlines()) == 1, bad.stderr
    assert "not a keeper journal" in bad.stderr


def test_journal_is_read_only(journal_path: Path) -> None:
    before = journal_path.read_bytes()
    assert run("--journal", str(journal_path)).exit_code == 0
    assert journal_path.read_bytes() == before


def test_every_reason_is_a_line_the_executor_logs() -> None:
    # The reasons come from the daemon's log lines: a renamed line would silently lose them.
    sources = "".join(p.read_text() for p in Path(execution.__file__).parent.glob("*.py"))
    assert all(f'"{event}"' in sources for event in REASONS), [
        e for e in REASONS if f'"{e}"' not in sources]


def test_a_bundles_bid_to_the_builder_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "bundles.sqlite"
    with Journal(path) as journal:
        book = BundleBook(journal)
        taken = _opportunity("taken", 2 * WEI, 100)
        assert journal.claim(taken, 31337)
        tx = "0x" + "cc" * 32
        book.record_signed(Signed(taken.key, 0, tx, "0x02", 30 * 10**9, 10**9),
                           sender="0x" + "11" * 20, first_block=101, last_block=103)
        journal.mark_sent(taken.key, tx)
        journal.mark_confirmed(taken.key, tx, 102, 300_000, WEI)
        book.record_bid(tx, 3 * 10**17)  # 0.3 ETH to block.coinbase
    table = run("--journal", str(path))
    assert table.exit_code == 0, table.output
    assert "bids to builders 0.3" in table.output
    (row,) = csv.DictReader(io.StringIO(run("--journal", str(path), "--csv").output))
    assert row["coinbase_bid_wei"] == str(3 * 10**17)


def test_amounts_in_the_quote_token_the_daemon_noted(tmp_path: Path) -> None:
    """The daemon notes its quote token's symbol and decimals in the journal at start; the
    report then shows that token's units (here a 6-decimal one) instead of assuming 18."""
    path = tmp_path / "usdc.sqlite"
    with Journal(path) as journal:
        taken = _opportunity("taken", 2_500_000, 100)  # 2.5 USDC expected
        assert journal.claim(taken, 31337)
        journal.record_signed(taken.key, 0, "0x" + "aa" * 32, "0x02", 30 * 10**9, 2 * 10**9)
        journal.mark_sent(taken.key, "0x" + "aa" * 32)
        journal.mark_confirmed(taken.key, "0x" + "aa" * 32, 101, 250_000, 2_412_345)
        broke = _opportunity("broke", 7_250_000, 102)
        assert journal.claim(broke, 31337)
        journal.mark_abandoned(broke.key)
    units.register("0x" + "e0" * 20, "USDC", 6, quote=True)
    try:
        note_quote(path, "0x" + "e0" * 20)
    finally:
        units.clear()
    result = run("--journal", str(path))
    assert result.exit_code == 0, result.output
    assert "journal: 2 liquidations (USDC amounts, bids in gwei)" in result.output
    assert "2.5000" in result.output and "2.4123" in result.output
    assert "realized 2.4123 USDC" in result.output
    # The reasons read from standard input, as `journalctl -u keeper -o cat` gives them.
    line = json.dumps({"event": "not enough debt asset on hand; not sent", "key": broke.key})
    missed = CliRunner().invoke(
        cli.main, ["journal", "--journal", str(path), "--missed", "--log", "-"], input=line)
    assert missed.exit_code == 0, missed.output
    assert "expected (USDC)" in missed.output and "no-capital" in missed.output
    assert "7.2500" in missed.output

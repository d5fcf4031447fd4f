"""The journal's WAL is checkpointed when the daemon says (`Journal.checkpoint`, between
steps), never by SQLite inside a send's commit."""

from __future__ import annotations

from pathlib import Path

from keeper.execution.journal import Journal, Signed
from keeper.types import Opportunity
from tests.factories import candidate


def opportunity(key: str) -> Opportunity:
    return Opportunity(
        strategy="aave_v3", key=key, account="0x" + "11" * 20, collateral="0x" + "22" * 20,
        debt="0x" + "33" * 20, debt_to_cover=1, collateral_received=1, gross_value=1,
        slippage=0, gas_limit=1, gas_cost=1, net_profit=1, quote_token="0x" + "22" * 20,
        health_factor=1, block=1, candidate=candidate())


def test_no_automatic_checkpoint_and_an_explicit_one_empties_the_wal(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        db = journal._db
        assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        raw = "0x" + "ab" * 2000  # a few pages each: past SQLite's default of 1,000 pages
        for n in range(600):
            key = f"k{n}"
            assert journal.claim_all([(opportunity(key), ())], 1) == [True]
            journal.record_signed_all([Signed(key, n, f"0x{n:064x}", raw, 1, 1)])
        wal = tmp_path / "journal.sqlite-wal"
        grown = wal.stat().st_size
        assert grown > 1000 * 4096  # nothing copied it back on its own
        journal.checkpoint()
        busy, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert (busy, frames) == (0, copied) and frames > 0  # every frame is in the file
        assert journal.get("k599") is not None

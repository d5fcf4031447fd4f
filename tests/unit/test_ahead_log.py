"""The file of transactions sent ahead of the journal's database (keeper/execution/ahead.py):
a line cut short is not an entry, an entry the database holds is not recorded twice, an
unknown one is adopted as signed, and the file is emptied only once every entry is settled."""

from __future__ import annotations

from pathlib import Path

from keeper.execution.ahead import Claim, Entry, adopt, ahead_log, settle
from keeper.execution.journal import Journal


def entry(key: str, nonce: int) -> Entry:
    claim = Claim(key, "aave_v3", "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20,
                  5, 7, 100)
    return Entry((claim,), 1, nonce, f"0x{nonce + 1:064x}", "0x02f8", 2, 1)


def test_a_line_cut_short_is_skipped(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        log_file = ahead_log(journal)
        log_file.write(entry("a", 0))
        with log_file.path.open("a") as f:
            f.write('\n{"claims": [{"key": "b"')  # the process ended mid-write
        assert [e.claims[0].key for e in log_file.entries()] == ["a"]
        log_file.close()


def test_adopt_records_the_unknown_once_and_empties_the_file(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        log_file = ahead_log(journal)
        known, lost = entry("known", 0), entry("lost", 1)
        for e in (known, lost):
            log_file.write(e)
        assert settle(journal, known, sent=True, durable=True)
        log_file.settled()
        log_file.clear()  # one is not settled: the file stays whole
        assert len(log_file.entries()) == 2
        log_file.close()
        assert adopt(journal, ahead_log(journal)) == 1
        record = journal.get("lost")
        assert record is not None and record.status == "signed"
        assert [t.tx_hash for t in record.transactions] == [lost.tx_hash]
        sent = journal.get("known")
        assert sent is not None and sent.status == "sent" and len(sent.transactions) == 1
        assert ahead_log(journal).entries() == []
        assert journal.max_nonce() == 1


def test_settle_refuses_a_key_taken_meanwhile(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        taken = entry("taken", 0)
        assert settle(journal, taken, sent=True, durable=False)
        again = entry("taken", 1)
        assert not settle(journal, again, sent=True, durable=False)
        record = journal.get("taken")
        assert record is not None and [t.nonce for t in record.transactions] == [0]


def test_an_earlier_runs_entries_are_never_cleared_unadopted(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        earlier = ahead_log(journal)
        earlier.write(entry("earlier", 0))
        earlier.close()
        this_run = ahead_log(journal)
        this_run.clear()  # a checkpoint before `adopt` ran: the entry stays
        assert [e.claims[0].key for e in this_run.entries()] == ["earlier"]
        assert adopt(journal, this_run) == 1
        assert this_run.entries() == []

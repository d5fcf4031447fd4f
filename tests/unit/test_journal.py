"""Tests for keeper.execution.journal: claims, restarts, crash recovery, big ints, bad files."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from eth_account import Account

from keeper.errors import InputFileError
from keeper.execution.journal import (
    INTENT_STATUSES,
    Journal,
    JournalStateError,
)
from keeper.types import Opportunity
from tests.factories import candidate

ROOT = Path(__file__).resolve().parents[2]
UINT256_MAX = 2**256 - 1
# A throwaway key made up for this test; it holds nothing on any chain.
PRIVATE_KEY = "0x" + "5c" * 16 + "a1" * 16


def opportunity(key: str = "aave_v3:0xborrower:1", **changes: object) -> Opportunity:
    opp = Opportunity(
        strategy="aave_v3",
        key=key,
        account="0x00000000000000000000000000000000000000b0",
        collateral="0x00000000000000000000000000000000000000c0",
        debt="0x00000000000000000000000000000000000000d0",
        debt_to_cover=5 * 10**18,
        collateral_received=6 * 10**18,
        gross_value=10**18,
        slippage=10**16,
        gas_limit=600_000,
        gas_cost=10**15,
        net_profit=989 * 10**15,
        quote_token="0x00000000000000000000000000000000000000e0",
        health_factor=99 * 10**16,
        block=1234,
        candidate=candidate(),
    )
    return replace(opp, **changes)  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite"


def sign_and_record(journal: Journal, key: str, nonce: int, tx_hash: str) -> None:
    journal.record_signed(key, nonce, tx_hash, "0x02f8" + f"{nonce:04x}", 30 * 10**9, 2 * 10**9)


def test_claim_once_only(path: Path) -> None:
    with Journal(path) as journal:
        opp = opportunity()
        assert journal.claim(opp, 1) is True
        assert journal.claim(opp, 1) is False
        assert journal.claim(opportunity(block=1300), 1) is False
        assert journal.claim(opportunity("other"), 1) is True
        record = journal.get(opp.key)
        assert record is not None
        assert record.status == "planned" and record.attempts == 1 and record.chain_id == 1
        assert record.block == 1234 and record.transactions == ()
        assert journal.get("missing") is None


@pytest.mark.parametrize("status", ["signed", "sent", "confirmed", "reverted"])
def test_claim_refused_while_handled_or_done(path: Path, status: str) -> None:
    with Journal(path) as journal:
        opp = opportunity()
        journal.claim(opp, 1)
        sign_and_record(journal, opp.key, 0, "0xaa")
        if status != "signed":
            journal.mark_sent(opp.key, "0xaa")
        if status == "confirmed":
            journal.mark_confirmed(opp.key, "0xaa", 1235, 400_000, 10**17)
        if status == "reverted":
            journal.mark_reverted(opp.key, "0xaa", 1235, 90_000, -(10**15))
        assert journal.get(opp.key).status == status  # type: ignore[union-attr]
        assert journal.claim(opp, 1) is False


def test_dropped_and_abandoned_may_be_claimed_again(path: Path) -> None:
    with Journal(path) as journal:
        opp = opportunity()
        assert journal.claim(opp, 1)
        journal.mark_abandoned(opp.key)
        assert journal.get(opp.key).status == "abandoned"  # type: ignore[union-attr]
        assert journal.claim(opportunity(block=1240), 1) is True
        record = journal.get(opp.key)
        assert record is not None
        assert (record.status, record.attempts, record.block) == ("planned", 2, 1240)
        sign_and_record(journal, opp.key, 0, "0xaa")
        journal.mark_sent(opp.key, "0xaa")
        journal.mark_dropped(opp.key, "0xaa")
        assert journal.get(opp.key).status == "dropped"  # type: ignore[union-attr]
        assert journal.claim(opp, 1) is True
        assert journal.get(opp.key).attempts == 3  # type: ignore[union-attr]


def test_restart_keeps_state(path: Path) -> None:
    with Journal(path, clock=lambda: 1000.0) as journal:
        journal.claim(opportunity("a"), 1)
        journal.claim(opportunity("b"), 1)
        sign_and_record(journal, "b", 7, "0xbb")
        journal.mark_sent("b", "0xbb")
        journal.mark_confirmed("b", "0xbb", 1236, 420_000, 5 * 10**17)
    with Journal(path) as journal:
        assert journal.claim(opportunity("a"), 1) is False
        assert journal.claim(opportunity("b"), 1) is False
        record = journal.get("b")
        assert record is not None and record.status == "confirmed"
        assert record.created_at == 1000.0
        (tx,) = record.transactions
        assert (tx.nonce, tx.status, tx.block_number, tx.gas_used) == (
            7,
            "confirmed",
            1236,
            420_000,
        )
        assert tx.realized_profit == 5 * 10**17 and tx.sent_at == 1000.0
        assert journal.pending() == []
        assert journal.max_nonce() == 7
        summary = journal.summary()
        assert summary.counts == {**dict.fromkeys(INTENT_STATUSES, 0), "planned": 1, "confirmed": 1}
        assert (summary.realized_profit, summary.gas_used) == (5 * 10**17, 420_000)


def test_pending_after_crash_between_record_signed_and_mark_sent(path: Path) -> None:
    # A real crash: another process records a signed transaction and dies without closing.
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from keeper.execution.journal import Journal
        from tests.unit.test_journal import opportunity
        journal = Journal({str(path)!r})
        assert journal.claim(opportunity(), 1)
        journal.record_signed(opportunity().key, 3, "0xcafe", "0x02f8abcdef", 40, 2)
        os._exit(9)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert done.returncode == 9
    with Journal(path) as journal:
        (tx,) = journal.pending()
        assert (tx.intent_key, tx.tx_hash, tx.nonce, tx.status) == (
            opportunity().key,
            "0xcafe",
            3,
            "signed",
        )
        assert (tx.raw_tx, tx.max_fee, tx.priority_fee, tx.sent_at) == ("0x02f8abcdef", 40, 2, None)
        assert journal.max_nonce() == 3
        assert journal.claim(opportunity(), 1) is False
        # recovery: re-broadcast the same raw transaction, then see it mined
        journal.mark_sent(tx.intent_key, tx.tx_hash)
        assert [t.status for t in journal.pending()] == ["sent"]
        journal.mark_confirmed(tx.intent_key, tx.tx_hash, 1300, 300_000, 123)
        assert journal.pending() == []


def test_replacement_and_resolution(path: Path) -> None:
    with Journal(path) as journal:
        key = opportunity().key
        journal.claim(opportunity(), 1)
        sign_and_record(journal, key, 4, "0x01")
        journal.mark_sent(key, "0x01")
        # a fee bump: same nonce, new hash; the intent stays 'sent'
        journal.record_signed(key, 4, "0x02", "0x02f9", 34 * 10**9, 3 * 10**9)
        assert journal.get(key).status == "sent"  # type: ignore[union-attr]
        assert [t.tx_hash for t in journal.pending()] == ["0x01", "0x02"]
        journal.mark_sent(key, "0x02")
        journal.mark_reverted(key, "0x02", 1240, 80_000, -(80_000 * 34 * 10**9))
        record = journal.get(key)
        assert record is not None and record.status == "reverted"
        assert {t.tx_hash: t.status for t in record.transactions} == {
            "0x01": "replaced",
            "0x02": "reverted",
        }
        assert journal.summary().realized_profit == -(80_000 * 34 * 10**9)
        assert journal.pending() == []


def test_dropping_one_of_two_live_transactions_keeps_the_intent_live(path: Path) -> None:
    with Journal(path) as journal:
        key = opportunity().key
        journal.claim(opportunity(), 1)
        sign_and_record(journal, key, 4, "0x01")
        sign_and_record(journal, key, 4, "0x02")
        journal.mark_dropped(key, "0x01")
        assert journal.get(key).status == "signed"  # type: ignore[union-attr]
        journal.mark_dropped(key, "0x02")
        assert journal.get(key).status == "dropped"  # type: ignore[union-attr]
        assert journal.max_nonce() is None  # dropped nonces were never used on chain


def test_invalid_transitions_raise(path: Path) -> None:
    with Journal(path) as journal:
        key = opportunity().key
        with pytest.raises(JournalStateError, match="no intent"):
            sign_and_record(journal, key, 0, "0x01")
        journal.claim(opportunity(), 1)
        with pytest.raises(JournalStateError, match="no transaction"):
            journal.mark_sent(key, "0x01")
        sign_and_record(journal, key, 0, "0x01")
        with pytest.raises(JournalStateError, match="already journaled"):
            sign_and_record(journal, key, 0, "0x01")
        with pytest.raises(JournalStateError, match="only planned"):
            journal.mark_abandoned(key)
        journal.mark_confirmed(key, "0x01", 10, 21_000, 1)
        with pytest.raises(JournalStateError):
            journal.mark_reverted(key, "0x01", 10, 21_000, 1)
        with pytest.raises(JournalStateError):
            sign_and_record(journal, key, 1, "0x03")
        # a failed write leaves nothing behind
        assert len(journal.get(key).transactions) == 1  # type: ignore[union-attr]


def test_big_ints_round_trip(path: Path) -> None:
    opp = opportunity(debt_to_cover=UINT256_MAX, net_profit=-(2**255))
    with Journal(path) as journal:
        journal.claim(opp, 2**63 - 1)
        journal.record_signed(opp.key, 2**63 - 1, "0x01", b"\x02\xf8", UINT256_MAX, UINT256_MAX - 1)
        journal.mark_confirmed(opp.key, "0x01", 2**62, 2**40, -(2**255) + 1)
    with Journal(path) as journal:
        record = journal.get(opp.key)
        assert record is not None
        assert record.debt_to_cover == UINT256_MAX and record.expected_profit == -(2**255)
        assert record.chain_id == 2**63 - 1
        (tx,) = record.transactions
        assert (tx.max_fee, tx.priority_fee) == (UINT256_MAX, UINT256_MAX - 1)
        assert tx.nonce == 2**63 - 1 and tx.raw_tx == "0x02f8"
        assert tx.realized_profit == -(2**255) + 1
        assert journal.summary().realized_profit == -(2**255) + 1
    with Journal(path) as journal, pytest.raises(ValueError, match="64-bit"):
        journal.claim(opportunity("x"), 2**63)


def test_wal_mode_and_full_sync(path: Path) -> None:
    with Journal(path) as journal:
        assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        db = sqlite3.connect(path)
        try:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            assert meta == {"format": "keeper-journal", "schema_version": "2"}
        finally:
            db.close()


def _assert_one_line_error(path: Path, match: str) -> None:
    with pytest.raises(InputFileError, match=match) as info:
        Journal(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert info.value.__cause__ is None


def test_text_file_is_not_a_journal(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\nthis is not a database\n" * 100)
    _assert_one_line_error(bad, "not a keeper journal")
    assert bad.read_text().startswith("hello")  # left untouched


def test_other_sqlite_database_is_not_a_journal(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    _assert_one_line_error(other, "not a keeper journal")


def test_future_schema_version_is_refused(path: Path) -> None:
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    _assert_one_line_error(path, "schema version 99")


def test_corrupted_journal(path: Path) -> None:
    with Journal(path) as journal:
        for n in range(50):
            journal.claim(opportunity(f"k{n}"), 1)
    data = bytearray(path.read_bytes())
    assert len(data) > 8192
    data[200:] = bytes((i * 7 + 13) % 256 for i in range(len(data) - 200))
    path.write_bytes(bytes(data))
    _assert_one_line_error(path, "corrupted")


def test_directory_and_missing_parent(tmp_path: Path) -> None:
    _assert_one_line_error(tmp_path, "directory")
    _assert_one_line_error(tmp_path / "no" / "such" / "journal.sqlite", "cannot open")


def test_private_key_never_in_the_file(path: Path) -> None:
    account = Account.from_key(PRIVATE_KEY)
    signed = account.sign_transaction(
        {
            "type": 2,
            "chainId": 1,
            "nonce": 0,
            "to": "0x00000000000000000000000000000000000000d0",
            "value": 0,
            "data": "0x00fdd58e",
            "gas": 600_000,
            "maxFeePerGas": 30 * 10**9,
            "maxPriorityFeePerGas": 2 * 10**9,
        }
    )
    raw = "0x" + bytes(signed.raw_transaction).hex()
    tx_hash = "0x" + bytes(signed.hash).hex()
    key_hex = PRIVATE_KEY.removeprefix("0x").lower()
    forbidden = [key_hex.encode(), key_hex.upper().encode(), bytes.fromhex(key_hex)]

    def files_text() -> bytes:
        return b"".join(p.read_bytes() for p in path.parent.iterdir() if p.is_file())

    with Journal(path) as journal:
        journal.claim(opportunity(), 1)
        journal.record_signed(opportunity().key, 0, tx_hash, raw, 30 * 10**9, 2 * 10**9)
        journal.mark_sent(opportunity().key, tx_hash)
        assert journal.pending()[0].raw_tx == raw
        content = files_text()  # includes the -wal file while open
        assert raw.encode() in content
        assert not any(secret in content for secret in forbidden)
    content = files_text()
    assert raw.encode() in content
    assert not any(secret in content for secret in forbidden)


def test_abandon_unsigned_frees_planned_intents_only(tmp_path: Path) -> None:
    """A run stopped between claim and signing leaves 'planned' intents; the next start
    frees them (nothing was signed), and leaves signed ones alone."""
    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        planned, signed = opportunity("a"), opportunity("b")
        assert journal.claim(planned, 1) and journal.claim(signed, 1)
        journal.record_signed(signed.key, 0, "0x" + "11" * 32, "0x02", 10, 1)
    with Journal(path) as journal:
        assert journal.abandon_unsigned() == 1
        assert journal.claim(planned, 1)
        assert not journal.claim(signed, 1)
        assert journal.abandon_unsigned() == 1


# -- batches and reorgs ---------------------------------------------------------------------


def status_of(journal: Journal, key: str) -> str:
    record = journal.get(key)
    assert record is not None
    return record.status


def test_batch_claims_all_or_none_and_members_follow_the_lead(path: Path) -> None:
    with Journal(path) as journal:
        lead, a, b = opportunity("lead"), opportunity("a"), opportunity("b")
        assert journal.claim(a, 1) is True  # already taken: the batch must not claim anything
        assert journal.claim_batch(lead, [a, b], 1) is False
        assert journal.get("lead") is None and journal.get("b") is None
        journal.mark_abandoned("a")
        assert journal.claim_batch(lead, [a, b], 1) is True
        assert journal.members("lead") == ["a", "b"]
        sign_and_record(journal, "lead", 0, "0xaa")
        assert {status_of(journal, k) for k in ("lead", "a", "b")} == {"signed"}
        journal.mark_sent("lead", "0xaa")
        journal.mark_confirmed("lead", "0xaa", 1300, 900_000, 7 * 10**17)
        assert {status_of(journal, k) for k in ("lead", "a", "b")} == {"confirmed"}
        summary = journal.summary()
        assert summary.counts["confirmed"] == 3  # three liquidations ...
        assert summary.realized_profit == 7 * 10**17  # ... in one transaction
        assert journal.claim(b, 1) is False  # never twice


def test_a_member_of_a_dropped_batch_may_be_sent_alone(path: Path) -> None:
    with Journal(path) as journal:
        lead, a = opportunity("lead"), opportunity("a")
        assert journal.claim_batch(lead, [a], 1)
        sign_and_record(journal, "lead", 0, "0xaa")
        journal.mark_sent("lead", "0xaa")
        journal.mark_dropped("lead", "0xaa")
        assert status_of(journal, "a") == "dropped"
        assert journal.claim(a, 1) is True  # alone now: no longer follows the old lead
        assert journal.members("lead") == []
        assert journal.claim(lead, 1) is True
        sign_and_record(journal, "lead", 1, "0xbb")
        assert status_of(journal, "a") == "planned"


def test_version_1_journal_is_upgraded_in_place(path: Path) -> None:
    with Journal(path) as journal:
        journal.claim(opportunity("old"), 1)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE batch_members")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with Journal(path) as journal:
        assert status_of(journal, "old") == "planned"
        assert journal.claim_batch(opportunity("lead"), [opportunity("m")], 1) is True
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
    db.close()


def test_unmine_puts_orphaned_transactions_back_to_sent(path: Path) -> None:
    with Journal(path) as journal:
        for n, block in enumerate((100, 101, 102)):
            key = f"k{n}"
            journal.claim(opportunity(key), 1)
            sign_and_record(journal, key, n, f"0x{n:02x}")
            journal.mark_sent(key, f"0x{n:02x}")
            journal.mark_confirmed(key, f"0x{n:02x}", block, 300_000, 10**17)
        orphaned = journal.unmine(["0x01", "0x02", "0x99"])
        assert [(t.intent_key, t.status, t.block_number) for t in orphaned] == [
            ("k1", "sent", None), ("k2", "sent", None)]
        assert [status_of(journal, k) for k in ("k0", "k1", "k2")] == [
            "confirmed", "sent", "sent"]
        assert journal.summary().realized_profit == 10**17
        # Mined again on the new branch: recorded again, at its new block.
        journal.mark_confirmed("k1", "0x01", 103, 300_000, 10**17)
        assert status_of(journal, "k1") == "confirmed"
        assert journal.claim(opportunity("k2"), 1) is False  # still live: never sent twice

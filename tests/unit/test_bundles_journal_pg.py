"""Bundle mode's journal rows (`BundleBook`, keeper/execution/bundles_journal.py) in the
shared PostgreSQL journal of `[ha]` (keeper/execution/journal_pg.py), on a real server the
session starts (tests/conftest.py `postgres`).

One sequence of calls runs on the SQLite journal and on a leading `PgJournal`, and both
answer the same (`record_signed`, `record_signed_all`, `extend`, `record_bid`, `bid`,
`last_block`, `live`, `owns`, `max_nonce`); then the fencing: a bundled transaction, a
raised last block or a bid written under a stale epoch fails and leaves nothing, and a
standby reads the leader's rows (what its recovery follows once it leads).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from keeper.execution.bundles_journal import BundleBook
from keeper.execution.journal import Journal, JournalStateError, Signed
from keeper.execution.journal_pg import Fenced, PgJournal
from tests.unit.test_journal import opportunity
from tests.unit.test_journal_pg import ACCOUNT, leading, schema_of, set_epoch

MAIN, LANE, OTHER = (Account.create().address for _ in range(3))


def signed(n: int, nonce: int) -> Signed:
    return Signed(f"k{n}", nonce, f"0x{n:064x}", "0x02f8" + f"{n:04x}", 30 * 10**9 + n, 10**9)


def run_sequence(journal: Journal) -> dict[str, Any]:
    """The calls bundle mode makes, and every read `BundleBook` answers after each step."""
    book = BundleBook(journal)
    seen: dict[str, Any] = {}
    for n in range(6):
        assert journal.claim(opportunity(f"k{n}"), 1)
    book.record_signed(signed(0, 7), sender=MAIN, first_block=10, last_block=12)
    book.record_signed(signed(1, 2), sender=LANE.upper().replace("0X", "0x"), first_block=10,
                       last_block=12, durable=False)
    book.record_signed_all([(signed(2, 3), LANE), (signed(3, 0), OTHER)], first_block=11,
                           last_block=13)
    journal.record_signed("k4", 8, f"0x{4:064x}", "0x02f80004", 1, 1)  # public, lane 0
    seen["live"] = book.live()
    seen["owns"] = book.owns()
    book.extend(f"0x{0:064x}", 15)  # resubmitted: its bundles now target up to 15
    book.extend(f"0x{1:064x}", 11)  # never lowered
    seen["last"] = [book.last_block(f"0x{n:064x}") for n in range(5)]
    journal.mark_sent("k0", f"0x{0:064x}")
    journal.mark_confirmed("k0", f"0x{0:064x}", 14, 21_000, 10**15)
    book.record_bid(f"0x{0:064x}", 3 * 10**18 + 1)  # beyond 64 bits: decimal text
    journal.mark_dropped("k2", f"0x{2:064x}")  # its last target block passed unincluded
    seen["bids"] = [book.bid(f"0x{n:064x}") for n in (0, 1, 9)]
    seen["nonces"] = [book.max_nonce(LANE), book.max_nonce(OTHER), book.max_nonce(MAIN),
                      book.max_nonce(MAIN, main=True), book.max_nonce(Account.create().address)]
    seen["after"] = [(tx.key, tx.sender, tx.nonce, tx.last_block) for tx in book.live()]
    seen["owns_after"] = book.owns()
    book.record_signed(signed(5, 1), sender=LANE, first_block=1, last_block=2)
    with pytest.raises(JournalStateError, match="already journaled"):  # once, and no row
        book.record_signed(signed(5, 1), sender=OTHER, first_block=1, last_block=9)
    seen["twice"] = (book.last_block(f"0x{5:064x}"), book.max_nonce(OTHER))
    return seen


@pytest.fixture(params=["sqlite", "postgresql"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal]:
    if request.param == "sqlite":
        opened: Journal = Journal(tmp_path / "journal.sqlite")
    else:
        dsn = request.getfixturevalue("postgres")
        opened = leading(dsn, schema_of(request.node.name))
    try:
        yield opened
    finally:
        opened.close()


def test_the_bundle_book_answers_alike_on_both_journals(journal: Journal) -> None:
    seen = run_sequence(journal)
    hashes = [f"0x{n:064x}" for n in range(4)]
    assert [(t.key, t.tx_hash, t.nonce, t.sender, t.first_block, t.last_block, t.max_fee)
            for t in seen["live"]] == sorted([
        ("k0", hashes[0], 7, MAIN.lower(), 10, 12, 30 * 10**9),
        ("k1", hashes[1], 2, LANE.lower(), 10, 12, 30 * 10**9 + 1),
        ("k2", hashes[2], 3, LANE.lower(), 11, 13, 30 * 10**9 + 2),
        ("k3", hashes[3], 0, OTHER.lower(), 11, 13, 30 * 10**9 + 3),
    ], key=lambda t: (t[3], t[2]))  # by sender, then nonce
    assert seen["live"][0].raw_tx.startswith("0x02f8")
    assert seen["owns"] == set(hashes)  # the public k4 is not the submitter's
    assert seen["last"] == [15, 12, 13, 13, None]
    assert seen["bids"] == [3 * 10**18 + 1, None, None]
    # LANE's nonce 3 was dropped: 2 is its highest; MAIN's public nonce 8 counts with main.
    assert seen["nonces"] == [2, 0, 7, 8, None]
    assert sorted(seen["after"]) == [("k1", LANE.lower(), 2, 12), ("k3", OTHER.lower(), 0, 13)]
    assert seen["owns_after"] == {hashes[1], hashes[3]}
    assert seen["twice"] == (2, 0)


def test_both_journals_give_the_very_same_answers(postgres: str, tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as lite:
        expected = run_sequence(lite)
    pg = leading(postgres, schema_of("same-answers"))
    try:
        assert run_sequence(pg) == expected
    finally:
        pg.close()


def test_a_stale_epochs_bundle_writes_fail_and_leave_nothing(postgres: str) -> None:
    schema = schema_of("stale-bundles")
    old = leading(postgres, schema)
    standby = PgJournal(postgres, schema, ACCOUNT, held=lambda: True)
    try:
        book = BundleBook(old)
        for n in range(3):
            assert old.claim(opportunity(f"k{n}"), 1)
        book.record_signed(signed(0, 4), sender=LANE, first_block=10, last_block=12)
        set_epoch(postgres, schema, 2)  # another replica took the lease
        with pytest.raises(Fenced, match="epoch is 2"):
            book.record_signed(signed(1, 5), sender=LANE, first_block=10, last_block=12)
        with pytest.raises(Fenced, match="epoch is 2"):
            book.record_signed_all([(signed(2, 6), LANE)], first_block=10, last_block=12,
                                   durable=False)
        with pytest.raises(Fenced, match="epoch is 2"):
            book.extend(f"0x{0:064x}", 20)
        with pytest.raises(Fenced, match="epoch is 2"):
            book.record_bid(f"0x{0:064x}", 5)
        # The new leader (a standby until now) reads what the old one committed, unchanged.
        view = BundleBook(standby)
        (tx,) = view.live()
        assert (tx.key, tx.nonce, tx.last_block, tx.sender) == ("k0", 4, 12, LANE.lower())
        assert view.bid(tx.tx_hash) is None and view.max_nonce(LANE) == 4
        with pytest.raises(Fenced, match="not the leader"):  # no epoch yet: it cannot write
            view.extend(tx.tx_hash, 30)
        standby.epoch = 2  # promoted: it settles the old leader's bundled transaction
        view.extend(tx.tx_hash, 30)
        assert old.tx_epochs() == {tx.tx_hash: 1}
        assert BundleBook(old).last_block(tx.tx_hash) == 30
    finally:
        old.close()
        standby.close()


def test_a_lapsed_lease_refuses_bundle_writes_without_a_round_trip(postgres: str) -> None:
    held = [True]
    journal = leading(postgres, schema_of("lapsed-bundles"), held=lambda: held[0])
    try:
        book = BundleBook(journal)
        assert journal.claim(opportunity("k0"), 1)
        held[0] = False
        journal._pg.conn.close()  # any round trip would now fail with another error
        with pytest.raises(Fenced, match="lease not held"):
            book.record_signed(signed(0, 1), sender=LANE, first_block=1, last_block=2)
    finally:
        journal.close()

"""What the journal keeps of private bundles: which account signed each bundled
transaction, the blocks its bundles target, and the bid it paid the builder.

A bundled transaction is an ordinary journal transaction (`transactions`, with its raw
bytes, nonce and status, on disk before it leaves) plus one row of `bundle_txs`:

    tx_hash     the transaction (transactions.tx_hash)
    sender      the nonce lane that signed it (keeper/execution/lanes.py)
    first_block the first block a bundle holding it targets
    last_block  the last block any bundle holding it may land in; raised (synced to disk)
                before every resubmission, so a restart knows how long its nonce stays taken
    bid         the ether its transaction paid block.coinbase (decimal text; set when mined)

The table is created when the keeper first runs with `execution.submitter = "bundle"`
(a journal that never sent a bundle has none). The public path's reads stay as they were:
`BundleBook.max_nonce(sender)` and `owns` let the executor leave bundled transactions of
other lanes out of its own nonce stream and its public recovery.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from keeper.execution.journal import Journal, Signed, _record_signed
from keeper.execution.journal_schema import LIVE_TX, sqlite_int, uint

_TABLE = """
CREATE TABLE IF NOT EXISTS bundle_txs (
    tx_hash TEXT PRIMARY KEY REFERENCES transactions (tx_hash),
    sender TEXT NOT NULL,
    first_block INTEGER NOT NULL,
    last_block INTEGER NOT NULL,
    bid TEXT
)"""


@dataclass(frozen=True, slots=True)
class BundledTx:
    """A bundled transaction that may still be mined (signed or sent, not resolved)."""

    key: str
    tx_hash: str
    nonce: int
    raw_tx: str
    max_fee: int
    priority_fee: int
    sender: str
    first_block: int
    last_block: int


class BundleBook:
    """The `bundle_txs` rows of one journal."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._db = journal._db  # the journal's connection: one file, one writer
        self._db.execute(_TABLE)

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        # Synced unless `durable` is False: what it records is read after a crash.
        with self.journal._write(durable=durable) as db:
            yield db

    def record_signed(
        self, signed: Signed, *, sender: str, first_block: int, last_block: int,
        durable: bool = True,
    ) -> None:
        """Journal a signed transaction and the blocks its bundles target, in one synced
        write, before any bundle holding it leaves. `durable=False` (signed ahead): in the
        WAL without the fsync (it survives the process); the caller syncs it with the
        `sent` marks (`Journal.mark_sent_all(..., durable=True)`) once the bundles left."""
        with self._write(durable=durable) as db:
            _record_signed(db, signed, self.journal._clock())
            db.execute("INSERT INTO bundle_txs (tx_hash, sender, first_block, last_block)"
                       " VALUES (?, ?, ?, ?)",
                       (signed.tx_hash, sender.lower(), sqlite_int(first_block, "block"),
                        sqlite_int(last_block, "block")))

    def record_signed_all(
        self, signed: Sequence[tuple[Signed, str]], *, first_block: int, last_block: int,
        durable: bool = True,
    ) -> None:
        """`record_signed` of several (transaction, sender) in one write (synced unless
        `durable` is False, as for `record_signed`)."""
        with self._write(durable=durable) as db:
            now = self.journal._clock()
            for record, sender in signed:
                _record_signed(db, record, now)
                db.execute("INSERT INTO bundle_txs (tx_hash, sender, first_block, last_block)"
                           " VALUES (?, ?, ?, ?)",
                           (record.tx_hash, sender.lower(), sqlite_int(first_block, "block"),
                            sqlite_int(last_block, "block")))

    def extend(self, tx_hash: str, last_block: int) -> None:
        """Its bundles now target up to `last_block` (synced before they are sent)."""
        with self._write() as db:
            db.execute("UPDATE bundle_txs SET last_block = MAX(last_block, ?) WHERE tx_hash = ?",
                       (sqlite_int(last_block, "block"), tx_hash))

    def record_bid(self, tx_hash: str, bid: int) -> None:
        """The ether its mined transaction paid block.coinbase."""
        with self._write() as db:
            db.execute("UPDATE bundle_txs SET bid = ? WHERE tx_hash = ?",
                       (str(uint(bid, "bid")), tx_hash))

    def bid(self, tx_hash: str) -> int | None:
        row = self._db.execute("SELECT bid FROM bundle_txs WHERE tx_hash = ?",
                               (tx_hash,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def last_block(self, tx_hash: str) -> int | None:
        row = self._db.execute("SELECT last_block FROM bundle_txs WHERE tx_hash = ?",
                               (tx_hash,)).fetchone()
        return None if row is None else int(row[0])

    def live(self) -> list[BundledTx]:
        """Bundled transactions signed or sent and not resolved, by sender and nonce."""
        rows = self._db.execute(
            "SELECT t.intent_key, t.tx_hash, t.nonce, t.raw_tx, t.max_fee, t.priority_fee,"
            " b.sender, b.first_block, b.last_block FROM transactions t"
            " JOIN bundle_txs b ON b.tx_hash = t.tx_hash WHERE t.status IN (?, ?)"
            " ORDER BY b.sender, t.nonce", LIVE_TX).fetchall()
        return [BundledTx(str(r[0]), str(r[1]), int(r[2]), str(r[3]), int(r[4]), int(r[5]),
                          str(r[6]), int(r[7]), int(r[8])) for r in rows]

    def owns(self) -> set[str]:
        """The hashes of every live bundled transaction (the public recovery skips them)."""
        return {tx.tx_hash for tx in self.live()}

    def max_nonce(self, sender: str, *, main: bool = False) -> int | None:
        """The highest nonce `sender` signed that is not known dropped; `main`: the
        executor's own account, whose public transactions have no bundle row."""
        clause = "b.sender = ?" + (" OR b.sender IS NULL" if main else "")
        value = self._db.execute(
            "SELECT MAX(t.nonce) FROM transactions t LEFT JOIN bundle_txs b"
            f" ON b.tx_hash = t.tx_hash WHERE t.status != 'dropped' AND ({clause})",
            (sender.lower(),)).fetchone()[0]
        return None if value is None else int(value)

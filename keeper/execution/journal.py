"""The execution journal: every intent and signed transaction, on disk before it is sent.

One SQLite file (stdlib `sqlite3`) in WAL mode with `synchronous=FULL`, so a
committed record survives a crash or power loss: `record_signed` returns only
after the signed transaction is on disk, and the caller broadcasts after it.
On restart, `pending()` lists the transactions that were signed or sent but
never resolved; their raw bytes are kept so they can be re-broadcast (same
hash, so this is harmless if the first broadcast got through).

Status of an intent (one per opportunity key)::

    planned ─► signed ─► sent ─► confirmed | reverted     (final)
       │          └───────┴────► dropped                  (may be claimed again)
       └─► abandoned                                      (may be claimed again)

`claim(opportunity, chain_id)` is the only way in. It inserts a 'planned'
intent atomically and returns True; it returns False when the key is already
journaled in any status except 'dropped' or 'abandoned'. Those two mean no
transaction of the intent is live any more, so the same opportunity may be
tried again: the intent goes back to 'planned' and its `attempts` grows.

A batch (several liquidations in one transaction) is one *lead* intent that owns the
transactions, and *member* intents listed in `batch_members`: `claim_batch` claims
them all or none, and every later status of the lead is also written to its members
in the same database transaction, so each opportunity key keeps its exactly-once status.

A mined transaction whose block is reorged out (`unmine`) goes back to 'sent':
the caller waits for it again (it may be mined on the new branch) or replaces it.

A transaction is 'signed', 'sent', 'confirmed', 'reverted', 'dropped' or
'replaced' (another transaction with its nonce was mined). Amounts, fees and
profits are stored as decimal TEXT because SQLite integers are 64-bit. The
journal stores public data only (raw signed transactions are public once
sent); it never sees a key. One journal serves one sending account.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

from keeper.errors import FatalError, KeeperError
from keeper.execution.journal_claims import claim_key, join_batch, set_status
from keeper.execution.journal_schema import (
    INTENT_STATUSES,
    LIVE_TX,
    SCHEMA_VERSION,
    TX_STATUSES,
    big,
    open_journal_db,
    sqlite_int,
    uint,
)
from keeper.execution.journal_view import IntentRecord, JournalSummary, JournalView, TxRecord
from keeper.types import Opportunity

__all__ = [  # the records and constants importers know from here
    "INTENT_STATUSES", "SCHEMA_VERSION", "TX_STATUSES", "IntentRecord", "Journal",
    "JournalStateError", "JournalSummary", "Signed", "TxRecord",
]


class _Taken(KeeperError):
    """A key of a batch is already taken (rolls the batch's claims back)."""


class JournalStateError(FatalError):
    """An update the journal's state does not allow (unknown key or hash, wrong status)."""


class Journal(JournalView):
    """The keeper's execution journal in one SQLite file (created if missing).

    The reads (`get`, `pending`, `members`, `max_nonce`, `summary`) are `JournalView`'s.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        super().__init__(open_journal_db(self.path))

    def close(self) -> None:
        """Close the file (every record is already committed)."""
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        # A non-durable commit skips the fsync; the next durable one (record_signed, before
        # any broadcast) syncs the whole WAL, this write included.
        if not durable:
            self._db.execute("PRAGMA synchronous = NORMAL")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        finally:
            if not durable:
                self._db.execute("PRAGMA synchronous = FULL")

    def checkpoint(self) -> None:
        """The WAL into the file (`PASSIVE`), between steps: SQLite's automatic one is off."""
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # -- writes ----------------------------------------------------------------------------

    def claim(self, opportunity: Opportunity, chain_id: int) -> bool:
        """Insert a 'planned' intent for this opportunity; False if its key is already taken.

        A key whose intent is 'dropped' or 'abandoned' is taken again (back to
        'planned', `attempts` + 1); any other status means the opportunity was
        or is being handled, so it must not be sent twice.
        """
        # Not synced to disk: losing a claim to a power cut loses nothing, as nothing was
        # sent yet; record_signed syncs it along with the signed transaction.
        with self._write(durable=False) as db:
            return claim_key(db, opportunity, chain_id, self._clock())

    def claim_batch(
        self, lead: Opportunity, members: Sequence[Opportunity], chain_id: int
    ) -> bool:
        """Claim a batch: the lead and every member, or (when any key is taken) none.

        From then on the members' status follows the lead's, which owns the transactions.
        """
        try:
            with self._write(durable=False) as db:
                now = self._clock()
                for opportunity in (lead, *members):
                    if not claim_key(db, opportunity, chain_id, now):
                        raise _Taken  # rolls every claim of this batch back
                join_batch(db, lead.key, [m.key for m in members])
        except _Taken:
            return False
        return True

    def claim_all(
        self, sends: Sequence[tuple[Opportunity, Sequence[Opportunity]]], chain_id: int
    ) -> list[bool]:
        """`claim` (no members) or `claim_batch` of each (lead, members), in one database
        transaction: one commit for every send of a dispatch. Returns each one's answer."""
        claimed: list[bool] = []
        with self._write(durable=False) as db:
            now = self._clock()
            for lead, members in sends:
                db.execute("SAVEPOINT send")
                ok = all(claim_key(db, o, chain_id, now) for o in (lead, *members))
                if ok and members:
                    join_batch(db, lead.key, [m.key for m in members])
                # A taken key of a batch rolls back that batch's claims only.
                db.execute("RELEASE send" if ok else "ROLLBACK TO send")
                if not ok:
                    db.execute("RELEASE send")
                claimed.append(ok)
        return claimed

    def record_signed(  # noqa: PLR0917 (the order a caller signs in)
        self,
        key: str,
        nonce: int,
        tx_hash: str,
        raw_tx: str | bytes,
        max_fee: int,
        priority_fee: int,
    ) -> None:
        """Journal a signed transaction of a planned (or, for a replacement, signed/sent) intent.

        Committed and synced to disk on return: only then may the caller send it.
        """
        self.record_signed_all([Signed(key, nonce, tx_hash, raw_tx, max_fee, priority_fee)])

    def record_signed_all(self, signed: Sequence[Signed], *, durable: bool = True) -> None:
        """`record_signed` of each, in one database transaction synced once (all or none):
        the sends of one dispatch pay one fsync before their broadcast, not one each.

        `durable=False` (pre-signed sends): in the WAL without the fsync, so they survive
        the process (a restart re-broadcasts the same bytes); the caller broadcasts, then
        syncs them to disk with `mark_sent_all(..., durable=True)`."""
        with self._write(durable=durable) as db:
            now = self._clock()
            for record in signed:
                _record_signed(db, record, now)

    def mark_sent(self, key: str, tx_hash: str) -> None:
        """The transaction was handed to a node (again, after a restart, is fine)."""
        with self._write() as db:
            _mark_sent(db, key, tx_hash, self._clock())

    def mark_sent_all(self, sent: Sequence[tuple[str, str]], *, durable: bool = False) -> None:
        """`mark_sent` of each (key, tx hash), in one database transaction.

        Not synced to disk (the next durable write syncs it): losing it to a power cut
        leaves the transactions 'signed', which a restart treats as possibly sent (it
        looks for them and re-broadcasts the same bytes), so the fsync is left off the
        path between one broadcast and the next dispatch. `durable=True`: synced, with every
        unsynced write before it (the pre-signed sends' records).
        """
        with self._write(durable=durable) as db:
            now = self._clock()
            for key, tx_hash in sent:
                _mark_sent(db, key, tx_hash, now)

    def mark_confirmed(
        self, key: str, tx_hash: str, block: int, gas_used: int, realized_profit: int
    ) -> None:
        """The transaction was mined and succeeded; the intent's other live ones are replaced."""
        self._mined(key, tx_hash, block, gas_used, realized_profit, outcome="confirmed")

    def mark_reverted(
        self, key: str, tx_hash: str, block: int, gas_used: int, realized_profit: int
    ) -> None:
        """The transaction was mined and reverted (`realized_profit` is then minus the gas paid)."""
        self._mined(key, tx_hash, block, gas_used, realized_profit, outcome="reverted")

    def _mined(
        self, key: str, tx_hash: str, block: int, gas_used: int, profit: int, *, outcome: str
    ) -> None:
        # A receipt is a fact: it wins over an earlier guess that the transaction was dropped.
        with self._write() as db:
            _tx_status(db, key, tx_hash, allowed=("signed", "sent", "dropped", "replaced"))
            if _intent_status(db, key) in ("confirmed", "reverted"):
                raise JournalStateError(f"journal: intent {key} already has a mined transaction")
            now = self._clock()
            db.execute(
                "UPDATE transactions SET status = ?, block_number = ?, gas_used = ?,"
                " realized_profit = ? WHERE tx_hash = ?",
                (
                    outcome,
                    sqlite_int(block, "block"),
                    sqlite_int(gas_used, "gas_used"),
                    str(big(profit, "realized_profit")),
                    tx_hash,
                ),
            )
            db.execute(
                "UPDATE transactions SET status = 'replaced'"
                " WHERE intent_key = ? AND tx_hash != ? AND status IN ('signed', 'sent')",
                (key, tx_hash),
            )
            set_status(db, key, outcome, now)

    def unmine(self, tx_hashes: Sequence[str]) -> list[TxRecord]:
        """A reorg orphaned the blocks these transactions were journaled as mined in: they go
        back to 'sent' (and their intents too), to be watched or replaced again.

        Returns them as they are now. One mined again on the new branch is then recorded
        again by whoever waits for its receipt.
        """
        with self._write() as db:
            now = self._clock()
            for tx_hash in tx_hashes:
                row = db.execute(
                    "SELECT intent_key FROM transactions WHERE tx_hash = ?"
                    " AND status IN ('confirmed', 'reverted')", (tx_hash,),
                ).fetchone()
                if row is None:
                    continue
                db.execute(
                    "UPDATE transactions SET status = 'sent', block_number = NULL,"
                    " gas_used = NULL, realized_profit = NULL WHERE tx_hash = ?",
                    (tx_hash,),
                )
                set_status(db, str(row[0]), "sent", now)
        return [tx for tx in self.pending() if tx.tx_hash in tx_hashes]

    def mark_dropped(self, key: str, tx_hash: str) -> None:
        """The transaction left the mempool unmined; with none other live, the intent is dropped."""
        with self._write() as db:
            _tx_status(db, key, tx_hash, allowed=LIVE_TX)
            db.execute("UPDATE transactions SET status = 'dropped' WHERE tx_hash = ?", (tx_hash,))
            live = db.execute(
                "SELECT COUNT(*) FROM transactions WHERE intent_key = ? AND status IN (?, ?)",
                (key, *LIVE_TX),
            ).fetchone()[0]
            if live == 0 and _intent_status(db, key) in ("signed", "sent"):
                set_status(db, key, "dropped", self._clock())

    def mark_abandoned(self, key: str) -> None:
        """Give up a planned intent before anything was signed (it may be claimed again)."""
        with self._write() as db:
            _abandon(db, key, self._clock())

    def abandon_all(self, keys: Sequence[str]) -> None:
        """`mark_abandoned` of each key, in one database transaction, not synced (a planned
        intent lost to a power cut is abandoned at the next start anyway)."""
        if not keys:
            return
        with self._write(durable=False) as db:
            now = self._clock()
            for key in keys:
                _abandon(db, key, now)

    def abandon_unsigned(self) -> int:
        """At start-up: every 'planned' intent of an earlier run becomes 'abandoned'.

        Nothing was signed for them, so nothing can be on the chain: they may be claimed
        again. Returns how many there were.
        """
        with self._write() as db:
            cursor = db.execute(
                "UPDATE intents SET status = 'abandoned', updated_at = ? WHERE status = 'planned'",
                (self._clock(),),
            )
            return cursor.rowcount


class Signed(NamedTuple):
    """A signed transaction of an intent, as `record_signed` journals it."""

    key: str
    nonce: int
    tx_hash: str
    raw_tx: str | bytes
    max_fee: int
    priority_fee: int


def _record_signed(db: sqlite3.Connection, record: Signed, now: float) -> None:
    key, tx_hash = record.key, record.tx_hash
    raw = record.raw_tx
    raw = "0x" + raw.hex() if isinstance(raw, bytes) else raw
    status = _intent_status(db, key)
    if status not in ("planned", "signed", "sent"):
        raise JournalStateError(f"journal: intent {key} is {status}; it cannot sign")
    try:
        db.execute(
            "INSERT INTO transactions (tx_hash, intent_key, nonce, raw_tx, max_fee,"
            " priority_fee, signed_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'signed')",
            (
                tx_hash,
                key,
                sqlite_int(record.nonce, "nonce"),
                raw,
                str(uint(record.max_fee, "max_fee")),
                str(uint(record.priority_fee, "priority_fee")),
                now,
            ),
        )
    except sqlite3.IntegrityError:
        raise JournalStateError(f"journal: transaction {tx_hash} is already journaled") from None
    if status == "planned":
        set_status(db, key, "signed", now)


def _mark_sent(db: sqlite3.Connection, key: str, tx_hash: str, now: float) -> None:
    _tx_status(db, key, tx_hash, allowed=LIVE_TX)
    db.execute(
        "UPDATE transactions SET status = 'sent', sent_at = COALESCE(sent_at, ?)"
        " WHERE tx_hash = ?",
        (now, tx_hash),
    )
    if _intent_status(db, key) == "signed":
        set_status(db, key, "sent", now)


def _abandon(db: sqlite3.Connection, key: str, now: float) -> None:
    status = _intent_status(db, key)
    if status != "planned":
        raise JournalStateError(
            f"journal: intent {key} is {status}; only planned ones can be abandoned"
        )
    set_status(db, key, "abandoned", now)


def _intent_status(db: sqlite3.Connection, key: str) -> str:
    row = db.execute("SELECT status FROM intents WHERE key = ?", (key,)).fetchone()
    if row is None:
        raise JournalStateError(f"journal: no intent with key {key}")
    return str(row[0])


def _tx_status(
    db: sqlite3.Connection, key: str, tx_hash: str, *, allowed: tuple[str, ...]
) -> str:
    row = db.execute(
        "SELECT status FROM transactions WHERE tx_hash = ? AND intent_key = ?",
        (tx_hash, key),
    ).fetchone()
    if row is None:
        raise JournalStateError(f"journal: no transaction {tx_hash} for intent {key}")
    status = str(row[0])
    if status not in allowed:
        raise JournalStateError(f"journal: transaction {tx_hash} is already {status}")
    return status

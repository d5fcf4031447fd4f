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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from keeper.errors import FatalError, InputFileError
from keeper.types import Opportunity

FORMAT = "keeper-journal"
SCHEMA_VERSION = 2  # 2: batch_members (a v1 journal is upgraded in place)
INTENT_STATUSES = ("planned", "signed", "sent", "confirmed", "reverted", "dropped", "abandoned")
TX_STATUSES = ("signed", "sent", "confirmed", "reverted", "dropped", "replaced")
RETRYABLE = ("dropped", "abandoned")
_LIVE_TX = ("signed", "sent")
_MAX_SQLITE_INT = 2**63 - 1

_V2 = """
CREATE TABLE batch_members (
    member_key TEXT PRIMARY KEY REFERENCES intents (key),
    lead_key TEXT NOT NULL REFERENCES intents (key)
);
CREATE INDEX batch_members_by_lead ON batch_members (lead_key);
"""
_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE intents (
    key TEXT PRIMARY KEY,
    chain_id INTEGER NOT NULL,
    strategy TEXT NOT NULL,
    account TEXT NOT NULL,
    collateral TEXT NOT NULL,
    debt TEXT NOT NULL,
    debt_to_cover TEXT NOT NULL,
    expected_profit TEXT NOT NULL,
    block INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN {INTENT_STATUSES!r}),
    attempts INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE transactions (
    tx_hash TEXT PRIMARY KEY,
    intent_key TEXT NOT NULL REFERENCES intents (key),
    nonce INTEGER NOT NULL,
    raw_tx TEXT NOT NULL,
    max_fee TEXT NOT NULL,
    priority_fee TEXT NOT NULL,
    signed_at REAL NOT NULL,
    sent_at REAL,
    status TEXT NOT NULL CHECK (status IN {TX_STATUSES!r}),
    block_number INTEGER,
    gas_used INTEGER,
    realized_profit TEXT
);
CREATE INDEX transactions_by_intent ON transactions (intent_key);
CREATE INDEX transactions_by_status ON transactions (status);
{_V2}"""


class _Taken(Exception):
    """A key of a batch is already taken (rolls the batch's claims back)."""


class JournalStateError(FatalError):
    """An update the journal's state does not allow (unknown key or hash, wrong status)."""


@dataclass(frozen=True, slots=True)
class TxRecord:
    """One signed transaction of an intent."""

    intent_key: str
    tx_hash: str
    nonce: int
    raw_tx: str
    max_fee: int
    priority_fee: int
    status: str
    signed_at: float
    sent_at: float | None
    block_number: int | None
    gas_used: int | None
    realized_profit: int | None


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """One claimed opportunity and the transactions signed for it, oldest first."""

    key: str
    chain_id: int
    strategy: str
    account: str
    collateral: str
    debt: str
    debt_to_cover: int
    expected_profit: int
    block: int
    status: str
    attempts: int
    created_at: float
    updated_at: float
    transactions: tuple[TxRecord, ...]


@dataclass(frozen=True, slots=True)
class JournalSummary:
    """Intent counts by status, and the profit and gas of mined transactions."""

    counts: Mapping[str, int]
    realized_profit: int
    gas_used: int


class Journal:
    """The keeper's execution journal in one SQLite file (created if missing)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._db = self._open()

    # -- opening ---------------------------------------------------------------------------

    def _fail(self, reason: str) -> InputFileError:
        return InputFileError(f"journal {self.path}: {reason}".replace("\n", " "))

    def _open(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise self._fail("is a directory, not a keeper journal")
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._fail(f"cannot open ({exc})") from None
        try:
            self._setup(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise self._fail(f"not a keeper journal or corrupted ({exc})") from None
        except UnicodeDecodeError:  # SQLite's own message quoted garbage from the file
            db.close()
            raise self._fail("not a keeper journal or corrupted (unreadable text)") from None
        except InputFileError:
            db.close()
            raise
        return db

    def _setup(self, db: sqlite3.Connection) -> None:
        db.execute("PRAGMA busy_timeout = 5000")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise self._fail(f"cannot switch to WAL mode (got {mode})")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise self._fail(f"corrupted ({check})")
        db.execute("BEGIN IMMEDIATE")
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            if not tables:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("format", FORMAT), ("schema_version", str(SCHEMA_VERSION))],
                )
            else:
                self._check_meta(db, tables)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _check_meta(self, db: sqlite3.Connection, tables: set[str]) -> None:
        if not {"meta", "intents", "transactions"} <= tables:
            raise self._fail("not a keeper journal (an SQLite file without the journal tables)")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT:
            raise self._fail("not a keeper journal (no keeper-journal format mark)")
        version = meta.get("schema_version", "")
        if not version.isdigit():
            raise self._fail(f"bad schema version {version!r}")
        if int(version) == 1:  # v2 only adds the batch table: upgrade in place
            for statement in _V2.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                       (str(SCHEMA_VERSION),))
        elif int(version) != SCHEMA_VERSION:
            raise self._fail(
                f"schema version {version} is not supported (this keeper reads {SCHEMA_VERSION})"
            )

    def close(self) -> None:
        """Close the file (every record is already committed)."""
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
            return self._claim_one(db, opportunity, chain_id, self._clock())

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
                    if not self._claim_one(db, opportunity, chain_id, now):
                        raise _Taken  # rolls every claim of this batch back
                db.executemany(
                    "INSERT INTO batch_members (member_key, lead_key) VALUES (?, ?)",
                    [(m.key, lead.key) for m in members],
                )
        except _Taken:
            return False
        return True

    def _claim_one(
        self, db: sqlite3.Connection, opportunity: Opportunity, chain_id: int, now: float
    ) -> bool:
        params = {
            "key": opportunity.key,
            "chain_id": _int(chain_id, "chain_id"),
            "strategy": opportunity.strategy,
            "account": opportunity.account,
            "collateral": opportunity.collateral,
            "debt": opportunity.debt,
            "debt_to_cover": str(_uint(opportunity.debt_to_cover, "debt_to_cover")),
            "expected_profit": str(_big(opportunity.net_profit, "net_profit")),
            "block": _int(opportunity.block, "block"),
            "now": now,
        }
        cursor = db.execute(
            f"""
            INSERT INTO intents (key, chain_id, strategy, account, collateral, debt,
                debt_to_cover, expected_profit, block, status, attempts, created_at,
                updated_at)
            VALUES (:key, :chain_id, :strategy, :account, :collateral, :debt,
                :debt_to_cover, :expected_profit, :block, 'planned', 1, :now, :now)
            ON CONFLICT (key) DO UPDATE SET
                chain_id = excluded.chain_id, strategy = excluded.strategy,
                account = excluded.account, collateral = excluded.collateral,
                debt = excluded.debt, debt_to_cover = excluded.debt_to_cover,
                expected_profit = excluded.expected_profit, block = excluded.block,
                status = 'planned', attempts = intents.attempts + 1, updated_at = :now
            WHERE intents.status IN {RETRYABLE!r}
            """,
            params,
        )
        if cursor.rowcount != 1:
            return False
        # A fresh claim stands alone: forget any batch an earlier attempt put it in.
        db.execute("DELETE FROM batch_members WHERE member_key = ? OR lead_key = ?",
                   (opportunity.key, opportunity.key))
        return True

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
        raw = "0x" + raw_tx.hex() if isinstance(raw_tx, bytes) else raw_tx
        with self._write() as db:
            status = self._intent_status(db, key)
            if status not in ("planned", "signed", "sent"):
                raise JournalStateError(f"journal: intent {key} is {status}; it cannot sign")
            now = self._clock()
            try:
                db.execute(
                    "INSERT INTO transactions (tx_hash, intent_key, nonce, raw_tx, max_fee,"
                    " priority_fee, signed_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'signed')",
                    (
                        tx_hash,
                        key,
                        _int(nonce, "nonce"),
                        raw,
                        str(_uint(max_fee, "max_fee")),
                        str(_uint(priority_fee, "priority_fee")),
                        now,
                    ),
                )
            except sqlite3.IntegrityError:
                raise JournalStateError(
                    f"journal: transaction {tx_hash} is already journaled"
                ) from None
            if status == "planned":
                self._set_intent(db, key, "signed", now)

    def mark_sent(self, key: str, tx_hash: str) -> None:
        """The transaction was handed to a node (again, after a restart, is fine)."""
        with self._write() as db:
            self._tx_status(db, key, tx_hash, allowed=_LIVE_TX)
            now = self._clock()
            db.execute(
                "UPDATE transactions SET status = 'sent', sent_at = COALESCE(sent_at, ?)"
                " WHERE tx_hash = ?",
                (now, tx_hash),
            )
            if self._intent_status(db, key) == "signed":
                self._set_intent(db, key, "sent", now)

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
            self._tx_status(db, key, tx_hash, allowed=("signed", "sent", "dropped", "replaced"))
            if self._intent_status(db, key) in ("confirmed", "reverted"):
                raise JournalStateError(f"journal: intent {key} already has a mined transaction")
            now = self._clock()
            db.execute(
                "UPDATE transactions SET status = ?, block_number = ?, gas_used = ?,"
                " realized_profit = ? WHERE tx_hash = ?",
                (
                    outcome,
                    _int(block, "block"),
                    _int(gas_used, "gas_used"),
                    str(_big(profit, "realized_profit")),
                    tx_hash,
                ),
            )
            db.execute(
                "UPDATE transactions SET status = 'replaced'"
                " WHERE intent_key = ? AND tx_hash != ? AND status IN ('signed', 'sent')",
                (key, tx_hash),
            )
            self._set_intent(db, key, outcome, now)

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
                self._set_intent(db, str(row[0]), "sent", now)
        return [tx for tx in self.pending() if tx.tx_hash in tx_hashes]

    def mark_dropped(self, key: str, tx_hash: str) -> None:
        """The transaction left the mempool unmined; with none other live, the intent is dropped."""
        with self._write() as db:
            self._tx_status(db, key, tx_hash, allowed=_LIVE_TX)
            db.execute("UPDATE transactions SET status = 'dropped' WHERE tx_hash = ?", (tx_hash,))
            live = db.execute(
                "SELECT COUNT(*) FROM transactions WHERE intent_key = ? AND status IN (?, ?)",
                (key, *_LIVE_TX),
            ).fetchone()[0]
            if live == 0 and self._intent_status(db, key) in ("signed", "sent"):
                self._set_intent(db, key, "dropped", self._clock())

    def mark_abandoned(self, key: str) -> None:
        """Give up a planned intent before anything was signed (it may be claimed again)."""
        with self._write() as db:
            status = self._intent_status(db, key)
            if status != "planned":
                raise JournalStateError(
                    f"journal: intent {key} is {status}; only planned ones can be abandoned"
                )
            self._set_intent(db, key, "abandoned", self._clock())

    # -- reads -----------------------------------------------------------------------------

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

    def get(self, key: str) -> IntentRecord | None:
        """The intent with this opportunity key and its transactions, or None."""
        row = self._db.execute(
            "SELECT key, chain_id, strategy, account, collateral, debt, debt_to_cover,"
            " expected_profit, block, status, attempts, created_at, updated_at"
            " FROM intents WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        rows = self._db.execute(
            f"{_TX_SELECT} WHERE intent_key = ? ORDER BY signed_at, rowid", (key,)
        ).fetchall()
        return IntentRecord(
            key=row[0],
            chain_id=row[1],
            strategy=row[2],
            account=row[3],
            collateral=row[4],
            debt=row[5],
            debt_to_cover=int(row[6]),
            expected_profit=int(row[7]),
            block=row[8],
            status=row[9],
            attempts=row[10],
            created_at=row[11],
            updated_at=row[12],
            transactions=tuple(_tx_record(r) for r in rows),
        )

    def pending(self) -> list[TxRecord]:
        """Transactions signed or sent but not resolved, by nonce: what a restart must recover.

        A 'signed' one may or may not have reached a node before the crash:
        re-broadcast its `raw_tx` (same hash) or wait for its receipt.
        """
        rows = self._db.execute(
            f"{_TX_SELECT} WHERE status IN (?, ?) ORDER BY nonce, signed_at, rowid", _LIVE_TX
        ).fetchall()
        return [_tx_record(r) for r in rows]

    def members(self, lead_key: str) -> list[str]:
        """The member keys of the batch `lead_key` leads (empty for a single liquidation)."""
        rows = self._db.execute(
            "SELECT member_key FROM batch_members WHERE lead_key = ? ORDER BY rowid",
            (lead_key,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def max_nonce(self) -> int | None:
        """The highest nonce of any journaled transaction not known to be dropped (for sync)."""
        value = self._db.execute(
            "SELECT MAX(nonce) FROM transactions WHERE status != 'dropped'"
        ).fetchone()[0]
        return None if value is None else int(value)

    def summary(self) -> JournalSummary:
        """Intent counts by status (every status listed), total realized profit and gas used."""
        counts = dict.fromkeys(INTENT_STATUSES, 0)
        for status, count in self._db.execute(
            "SELECT status, COUNT(*) FROM intents GROUP BY status"
        ):
            counts[status] = count
        profit = 0
        gas = 0
        for value, used in self._db.execute(
            "SELECT realized_profit, gas_used FROM transactions"
            " WHERE status IN ('confirmed', 'reverted')"
        ):
            profit += int(value) if value is not None else 0
            gas += used or 0
        return JournalSummary(counts=counts, realized_profit=profit, gas_used=gas)

    # -- helpers ---------------------------------------------------------------------------

    def _intent_status(self, db: sqlite3.Connection, key: str) -> str:
        row = db.execute("SELECT status FROM intents WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise JournalStateError(f"journal: no intent with key {key}")
        return str(row[0])

    def _set_intent(self, db: sqlite3.Connection, key: str, status: str, now: float) -> None:
        """Set an intent's status, and its batch members' (they share its transactions)."""
        db.execute(
            "UPDATE intents SET status = ?, updated_at = ? WHERE key = ?"
            " OR key IN (SELECT member_key FROM batch_members WHERE lead_key = ?)",
            (status, now, key, key),
        )

    def _tx_status(
        self, db: sqlite3.Connection, key: str, tx_hash: str, *, allowed: tuple[str, ...]
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


_TX_SELECT = (
    "SELECT intent_key, tx_hash, nonce, raw_tx, max_fee, priority_fee, status, signed_at,"
    " sent_at, block_number, gas_used, realized_profit FROM transactions"
)


def _tx_record(row: tuple[Any, ...]) -> TxRecord:
    return TxRecord(
        intent_key=row[0],
        tx_hash=row[1],
        nonce=row[2],
        raw_tx=row[3],
        max_fee=int(row[4]),
        priority_fee=int(row[5]),
        status=row[6],
        signed_at=row[7],
        sent_at=row[8],
        block_number=row[9],
        gas_used=row[10],
        realized_profit=None if row[11] is None else int(row[11]),
    )


def _big(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


def _uint(value: int, name: str) -> int:
    if _big(value, name) < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


def _int(value: int, name: str) -> int:
    """A non-negative int that fits an SQLite INTEGER (nonces, blocks, gas, chain ids)."""
    if _uint(value, name) > _MAX_SQLITE_INT:
        raise ValueError(f"{name} {value} does not fit a 64-bit signed integer")
    return value

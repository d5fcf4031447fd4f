"""The journal file's schema: its tables, opening it durably, upgrading an older version.

A journal is one SQLite file marked as a keeper journal in its `meta` table
(`format`, `schema_version`). Opening one switches it to WAL mode with
`synchronous=FULL`, runs a quick integrity check and creates the tables in a
new (empty) file; a file that is not a journal, is corrupted or has a schema
this keeper does not read is refused with a one-line `InputFileError`.

Versions: 1 had intents and transactions; 2 added `batch_members` (a v1 file
is upgraded in place when opened).

Amounts, fees and profits are stored as decimal TEXT because SQLite integers
are 64-bit; the value checks below refuse what would not round-trip.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from keeper.errors import InputFileError

FORMAT = "keeper-journal"
SCHEMA_VERSION = 2  # 2: batch_members (a v1 journal is upgraded in place)
INTENT_STATUSES = ("planned", "signed", "sent", "confirmed", "reverted", "dropped", "abandoned")
TX_STATUSES = ("signed", "sent", "confirmed", "reverted", "dropped", "replaced")
RETRYABLE = ("dropped", "abandoned")  # intents that may be claimed again
LIVE_TX = ("signed", "sent")  # transactions that may still be mined
_MAX_SQLITE_INT = 2**63 - 1

_Fail = Callable[[str], InputFileError]  # a reason -> the one-line error naming the file

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


def open_journal_db(path: Path) -> sqlite3.Connection:
    """Open (or create) the journal at `path`: WAL, synced commits, schema checked or made."""

    def fail(reason: str) -> InputFileError:
        return InputFileError(f"journal {path}: {reason}".replace("\n", " "))

    if path.is_dir():
        raise fail("is a directory, not a keeper journal")
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise fail(f"cannot open ({exc})") from None
    try:
        _setup(db, fail)
    except sqlite3.DatabaseError as exc:
        db.close()
        raise fail(f"not a keeper journal or corrupted ({exc})") from None
    except UnicodeDecodeError:  # SQLite's own message quoted garbage from the file
        db.close()
        raise fail("not a keeper journal or corrupted (unreadable text)") from None
    except InputFileError:
        db.close()
        raise
    return db


def _setup(db: sqlite3.Connection, fail: _Fail) -> None:
    db.execute("PRAGMA busy_timeout = 5000")
    mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise fail(f"cannot switch to WAL mode (got {mode})")
    db.execute("PRAGMA synchronous = FULL")
    # Checkpoints run when the daemon says (`Journal.checkpoint`, after each step), never
    # inside a send's commit: one there copies the WAL into the file and syncs it (a claim
    # and signed record's p99.9 went from 0.5 to 1.5 ms, at most 3.9 ms, with SQLite's
    # automatic one every 1,000 pages).
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute("PRAGMA foreign_keys = ON")
    check = db.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        raise fail(f"corrupted ({check})")
    db.execute("BEGIN IMMEDIATE")
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if not tables:
            _run(db, _SCHEMA)
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("format", FORMAT), ("schema_version", str(SCHEMA_VERSION))],
            )
        else:
            _check_meta(db, tables, fail)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _check_meta(db: sqlite3.Connection, tables: set[str], fail: _Fail) -> None:
    if not {"meta", "intents", "transactions"} <= tables:
        raise fail("not a keeper journal (an SQLite file without the journal tables)")
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("format") != FORMAT:
        raise fail("not a keeper journal (no keeper-journal format mark)")
    version = meta.get("schema_version", "")
    if not version.isdigit():
        raise fail(f"bad schema version {version!r}")
    if int(version) == 1:  # v2 only adds the batch table: upgrade in place
        _run(db, _V2)
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                   (str(SCHEMA_VERSION),))
    elif int(version) != SCHEMA_VERSION:
        raise fail(
            f"schema version {version} is not supported (this keeper reads {SCHEMA_VERSION})"
        )


def _run(db: sqlite3.Connection, script: str) -> None:
    # One statement at a time: executescript would commit the open transaction.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def big(value: int, name: str) -> int:
    """`value` if it is an int (any size: stored as decimal text)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


def uint(value: int, name: str) -> int:
    """`value` if it is a non-negative int (any size)."""
    if big(value, name) < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


def sqlite_int(value: int, name: str) -> int:
    """A non-negative int that fits an SQLite INTEGER (nonces, blocks, gas, chain ids)."""
    if uint(value, name) > _MAX_SQLITE_INT:
        raise ValueError(f"{name} {value} does not fit a 64-bit signed integer")
    return value

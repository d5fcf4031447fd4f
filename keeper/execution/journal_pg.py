"""The execution journal in PostgreSQL, shared by an account's replicas and fenced by epoch.

With `[ha]` configured, the replicas of one sending account keep one journal in a
PostgreSQL schema instead of a local SQLite file (keeper/ha/ holds the leader lease).
`PgJournal` is a `Journal`: the very same claims, status writes and reads
(keeper/execution/journal.py, journal_claims.py, journal_view.py) run on PostgreSQL
through `_PgDb`, which speaks the small part of `sqlite3.Connection` they use (`?` and
`:name` parameters, `rowcount`, `fetchone`, `fetchall`, `rowid` ordering) over psycopg 3.
So the exactly-once rules cannot drift between the two backends.

Fencing. Every write transaction starts, in the same round trip as its BEGIN, with
`SELECT epoch FROM keeper_lease WHERE account = … FOR SHARE`, and is rolled back with
`Fenced` unless that epoch is the one this journal writes under (`epoch`, set when the
replica became leader). The share lock is held until COMMIT, so a standby's takeover
(an UPDATE of that row that raises the epoch) waits for a write in progress and every
write after it fails: whatever the old leader committed, the new leader's recovery reads.
Before the round trip, `held()` (the lease checked in memory, with its safety margin)
must say yes, so a leader that lost its lease fails fast without asking the server.

Durability: PostgreSQL's commit is synced (`synchronous_commit = on`) for the writes the
SQLite journal syncs (a signed transaction before its broadcast); claims, `sent` marks
and abandons commit with `synchronous_commit = off`, as the SQLite journal skips their
fsync. A session stuck inside a transaction (a paused leader) is ended by the server
after `idle_in_transaction_session_timeout`, which frees the lease row for the takeover.

Schema: the tables of the SQLite journal (amounts as decimal TEXT, the same statuses),
with a `seq` column where SQLite orders by `rowid`, in their own PostgreSQL schema (one
schema per sending account: `meta` records the account and refuses another). Bundle mode's
`bundle_txs` (keeper/execution/bundles_journal.py) is one of them, made with the rest under
the schema's advisory lock: `BundleBook` on a `PgJournal` runs its own statements through
`_PgDb` and writes through the fenced `_write`, as the journal's claims do.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg import sql

from keeper.errors import ConfigError, KeeperError
from keeper.execution.journal import Journal
from keeper.execution.journal_schema import FORMAT, INTENT_STATUSES, SCHEMA_VERSION, TX_STATUSES

__all__ = ["LEASE_TABLE", "Fenced", "PgJournal", "lease_key", "open_schema"]

LEASE_TABLE = "keeper_lease"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {LEASE_TABLE} (
    account TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS intents (
    key TEXT PRIMARY KEY,
    chain_id BIGINT NOT NULL,
    strategy TEXT NOT NULL,
    account TEXT NOT NULL,
    collateral TEXT NOT NULL,
    debt TEXT NOT NULL,
    debt_to_cover TEXT NOT NULL,
    expected_profit TEXT NOT NULL,
    block BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN {INTENT_STATUSES!r}),
    attempts BIGINT NOT NULL DEFAULT 1,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS transactions (
    seq BIGSERIAL UNIQUE,
    tx_hash TEXT PRIMARY KEY,
    intent_key TEXT NOT NULL REFERENCES intents (key),
    nonce BIGINT NOT NULL,
    raw_tx TEXT NOT NULL,
    max_fee TEXT NOT NULL,
    priority_fee TEXT NOT NULL,
    signed_at DOUBLE PRECISION NOT NULL,
    sent_at DOUBLE PRECISION,
    status TEXT NOT NULL CHECK (status IN {TX_STATUSES!r}),
    block_number BIGINT,
    gas_used BIGINT,
    realized_profit TEXT,
    epoch BIGINT DEFAULT NULLIF(current_setting('keeper.epoch', true), '')::bigint
);
CREATE INDEX IF NOT EXISTS transactions_by_intent ON transactions (intent_key);
CREATE INDEX IF NOT EXISTS transactions_by_status ON transactions (status);
CREATE TABLE IF NOT EXISTS batch_members (
    seq BIGSERIAL UNIQUE,
    member_key TEXT PRIMARY KEY REFERENCES intents (key),
    lead_key TEXT NOT NULL REFERENCES intents (key)
);
CREATE INDEX IF NOT EXISTS batch_members_by_lead ON batch_members (lead_key);
CREATE TABLE IF NOT EXISTS bundle_txs (
    tx_hash TEXT PRIMARY KEY REFERENCES transactions (tx_hash),
    sender TEXT NOT NULL,
    first_block BIGINT NOT NULL,
    last_block BIGINT NOT NULL,
    bid TEXT
)
"""


class Fenced(KeeperError):
    """A journal write under an epoch that is not the lease's current one (or with the lease
    lapsed in memory): this replica is not the leader; nothing was written."""


def lease_key(chain_id: int, address: str) -> str:
    """The lease row of one sending account: its chain id and lower-case address."""
    return f"{chain_id}:{address.lower()}"


@lru_cache(maxsize=256)
def _translate(query: str) -> str:
    """SQLite's parameter styles and `rowid` as psycopg and PostgreSQL spell them."""
    query = re.sub(r"\browid\b", "seq", query)
    # SQLite's two-argument MAX is a scalar (the larger one): PostgreSQL's GREATEST. The
    # aggregate MAX(column) has one argument and stays.
    query = re.sub(r"\bMAX\(([^(),]+),([^(),]+)\)", r"GREATEST(\1,\2)", query, flags=re.I)
    query = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", query)
    return query.replace("?", "%s")


class _PgDb:
    """The part of `sqlite3.Connection` the journal's statements use, over one psycopg
    connection in autocommit mode (transactions are the explicit BEGIN … COMMIT of
    `PgJournal._write`). A connection the server closed (a restart, a session ended for
    idling inside a transaction) is opened again at the next statement outside one."""

    def __init__(self, conn: psycopg.Connection[Any], reopen: Callable[[], psycopg.Connection[Any]]
                 ) -> None:
        self.conn = conn
        self._reopen = reopen
        self.writing = False  # inside `PgJournal._write`: never reopened there (unfenced)

    def ensure(self) -> psycopg.Connection[Any]:
        """The connection, opened again first if the server closed it."""
        if self.conn.closed:
            self.conn = self._reopen()
        return self.conn

    def execute(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        if not self.writing:
            self.ensure()
        try:
            return self.conn.execute(cast(Any, _translate(query)), params or None)
        except psycopg.errors.UniqueViolation as exc:
            # The journal's own handling of a duplicate is written for sqlite3's error.
            raise sqlite3.IntegrityError(str(exc)) from None

    def executemany(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(cast(Any, _translate(query)), list(rows))

    def close(self) -> None:
        self.conn.close()


def connect(dsn: str, schema: str, *, idle_seconds: float | None = None) -> psycopg.Connection[Any]:
    """An autocommit connection whose `search_path` is `schema` (created if missing); with
    `idle_seconds`, the server ends this session when it idles that long inside a
    transaction. A server that cannot be reached is one `ConfigError` line (no password)."""
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
        raise ConfigError(f"ha.dsn: cannot connect to PostgreSQL ({reason})") from None
    try:
        # IF NOT EXISTS is not atomic: a replica starting at the same moment can create the
        # schema between the check and the insert, and this one fails on the catalog's unique
        # index; the schema is there either way.
        with contextlib.suppress(psycopg.errors.UniqueViolation, psycopg.errors.DuplicateSchema):
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        if idle_seconds is not None:
            conn.execute(sql.SQL("SET idle_in_transaction_session_timeout = {}").format(
                sql.Literal(max(1, int(idle_seconds * 1000)))))
    except psycopg.Error as exc:  # no right to create the schema, say
        conn.close()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"ha.journal_schema {schema}: cannot use it ({reason})") from None
    return conn


def open_schema(conn: psycopg.Connection[Any], account: str) -> None:
    """Create the journal's tables in the connection's schema, or check they are a keeper
    journal of this schema version for `account` (a lease key)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(cast(Any, statement))
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            conn.execute("INSERT INTO meta (key, value) VALUES ('format', %s),"
                         " ('schema_version', %s), ('account', %s)",
                         (FORMAT, str(SCHEMA_VERSION), account))
            return
    where = conn.execute("SELECT current_schema()").fetchone()
    if meta.get("format") != FORMAT or meta.get("schema_version") != str(SCHEMA_VERSION):
        raise ConfigError(f"ha: schema {where and where[0]} holds no keeper journal of "
                          f"schema version {SCHEMA_VERSION}")
    if meta.get("account") != account:
        raise ConfigError(f"ha: schema {where and where[0]} is the journal of account "
                          f"{meta.get('account')}, not {account}: one schema per account "
                          "(set ha.schema)")


class PgJournal(Journal):
    """`Journal` on PostgreSQL; every write is fenced by the lease epoch (module docstring).

    `epoch` is None on a standby: every write then raises `Fenced`, reads work.
    `held()`: is the lease still held, checked in memory (no round trip)?
    """

    def __init__(
        self, dsn: str, schema: str, account: str, *, held: Callable[[], bool],
        idle_seconds: float = 1.0, clock: Callable[[], float] = time.time,
    ) -> None:
        conn = connect(dsn, schema, idle_seconds=idle_seconds)
        try:
            open_schema(conn, account)
        except psycopg.Error as exc:  # no right to create the tables, say
            conn.close()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "refused"
            raise ConfigError(f"ha.journal_schema {schema}: cannot use it ({reason})") from None
        except BaseException:
            conn.close()
            raise
        self.path = Path(f"postgresql:{schema}")
        self.account_key = account
        self.epoch: int | None = None
        self._held = held
        self._clock = clock
        self._pg = _PgDb(conn, lambda: connect(dsn, schema, idle_seconds=idle_seconds))
        self._begins: dict[tuple[bool, int], sql.Composed] = {}
        # JournalView's reads go through the same adapter (sqlite3's call shapes).
        super(Journal, self).__init__(cast(sqlite3.Connection, self._pg))

    def close(self) -> None:
        self._pg.close()

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        epoch = self.epoch
        if epoch is None or not self._held():
            raise Fenced(f"journal: not the leader (epoch {epoch}, lease not held): not written")
        conn = self._pg.ensure()
        self._pg.writing = True
        try:
            try:
                cursor = conn.execute(self._begin(durable, epoch))
            except psycopg.Error:
                if not conn.closed:
                    raise
                # The server had ended the session (nothing was written): once more, anew.
                conn = self._pg.ensure()
                cursor = conn.execute(self._begin(durable, epoch))
            while cursor.nextset():  # to the last statement's result: the epoch
                pass
            row = cursor.fetchone()
            if row is None or int(row[0]) != epoch:
                raise Fenced(f"journal: the lease epoch is {row and row[0]}, this replica "
                             f"writes under {epoch}: another replica leads; not written")
            yield cast(sqlite3.Connection, self._pg)
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                conn.close()  # broken: the next statement opens a new session
            raise
        finally:
            self._pg.writing = False
        conn.execute("COMMIT")

    def _begin(self, durable: bool, epoch: int) -> sql.Composed:
        """BEGIN, the epoch this write is made under (each transaction row records it),
        and the lease row's epoch read under a share lock: one round trip."""
        begin = self._begins.get((durable, epoch))
        if begin is None:
            begin = self._begins[(durable, epoch)] = sql.SQL(
                "BEGIN; {}SET LOCAL keeper.epoch = {}; "
                "SELECT epoch FROM {} WHERE account = {} FOR SHARE"
            ).format(sql.SQL("" if durable else "SET LOCAL synchronous_commit = off; "),
                     sql.Literal(str(epoch)), sql.Identifier(LEASE_TABLE),
                     sql.Literal(self.account_key))
        return begin

    def checkpoint(self) -> None:
        """Nothing to do: PostgreSQL checkpoints on its own, away from the commits."""

    def abandon_unsigned(self) -> int:
        """At a start, the planned intents left by an earlier run are freed; a standby's
        start frees none: they are the leader's, and are freed when this replica leads
        (`Executor.start` again, under its epoch)."""
        return 0 if self.epoch is None else super().abandon_unsigned()

    def tx_epochs(self) -> dict[str, int | None]:
        """tx hash -> the epoch of the leader that journaled it (for audits and tests)."""
        rows = self._pg.execute("SELECT tx_hash, epoch FROM transactions").fetchall()
        return {str(h): (None if e is None else int(e)) for h, e in rows}

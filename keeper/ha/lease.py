"""The leader lease of one sending account's replicas: a row in PostgreSQL with an expiry
and an epoch.

One row per account (`keeper_lease`, in the journal's schema): `holder`, `epoch` and
`expires_at`, read and written with the server's clock, so the replicas' clocks need not
agree. A standby takes the lease when it has expired (or never existed): one statement
sets it as holder, raises the epoch by one and sets the expiry `seconds` ahead. The
leader renews it every `seconds / 5`, and only while the epoch is still its own.

The epoch is the fencing token: every journal write carries it (keeper/execution/
journal_pg.py) and fails once a takeover raised it. The leader also knows, without
asking the server, until when its lease surely holds: a renewal sent at local monotonic
time t sets the expiry at the server at t' + seconds with t' >= t, so the lease holds
until t + seconds; `held()` says yes only until t + seconds - `margin` (30 % of the
lease: room for the two clocks' rates to differ, and for the time between the check and
the broadcast). A process paused past that (SIGSTOP, a long GC, a partition) finds
`held()` false the moment it runs again: it neither journals nor broadcasts.

A leader that misses its renewal deadline does not try to win the lease back: `lost` is
set and the replica steps down (keeper/ha/replica.py). The lease is kept by a thread with
its own connection, so a busy event loop (a ranking in progress) cannot delay a renewal.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import structlog

from keeper.errors import ConfigError
from keeper.execution.journal_pg import LEASE_TABLE, connect

log = structlog.get_logger(__name__)

_ACQUIRE = f"""
INSERT INTO {LEASE_TABLE} AS l (account, holder, epoch, expires_at)
VALUES (%(account)s, %(holder)s, 1, clock_timestamp() + %(seconds)s * interval '1 second')
ON CONFLICT (account) DO UPDATE SET holder = excluded.holder, epoch = l.epoch + 1,
    expires_at = excluded.expires_at
WHERE l.expires_at < clock_timestamp()
RETURNING epoch
"""
_RENEW = f"""
UPDATE {LEASE_TABLE} SET expires_at = clock_timestamp() + %(seconds)s * interval '1 second'
WHERE account = %(account)s AND holder = %(holder)s AND epoch = %(epoch)s
RETURNING epoch
"""
_RELEASE = f"""
UPDATE {LEASE_TABLE} SET expires_at = clock_timestamp() - interval '1 second'
WHERE account = %(account)s AND holder = %(holder)s AND epoch = %(epoch)s
"""


def replica_name(configured: str | None = None) -> str:
    """This process's holder name: the configured replica name (else the host name), its
    pid and a random suffix, so that a restarted replica is never taken for its old self."""
    return f"{configured or socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


class Lease:
    """The lease of `account` (a `lease_key`) as replica `holder`; see the module docstring.

    `on_change` is called from the lease's thread when the lease is acquired and when it
    is lost (call `loop.call_soon_threadsafe` from it).
    """

    def __init__(
        self, dsn: str, schema: str, account: str, holder: str, *, seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.account = account
        self.holder = holder
        self.seconds = seconds
        self.renew_every = seconds / 5
        self.margin = seconds * 0.3
        self._clock = clock
        self.epoch: int | None = None
        self._valid_until = 0.0
        self.acquired_at: float | None = None  # monotonic time the lease was taken
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_change: Callable[[], None] = lambda: None

    def held(self) -> bool:
        """The lease surely holds now (in memory: no round trip)."""
        return (self.epoch is not None and not self.lost.is_set()
                and self._clock() < self._valid_until)

    def start(self, on_change: Callable[[], None]) -> None:
        """Start the thread that takes the lease when it is free and keeps it."""
        self._on_change = on_change
        self._thread = threading.Thread(target=self._run, name="keeper-lease", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop keeping the lease; `release` ends it at once at the server (a clean stop:
        a standby takes over without waiting for the expiry)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.seconds * 2 + 5)
        epoch = self.epoch
        if release and epoch is not None and not self.lost.is_set():
            self.lost.set()  # from now on, `held()` is false
            with contextlib.suppress(psycopg.Error, ConfigError), connect(
                    self.dsn, self.schema) as conn:
                conn.execute(_RELEASE, self._params(epoch))

    def _params(self, epoch: int | None = None) -> dict[str, Any]:
        return {"account": self.account, "holder": self.holder, "seconds": self.seconds,
                "epoch": epoch}

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        try:
            while not self._stop.is_set():
                started = self._clock()
                if self.epoch is not None and started >= self._valid_until:
                    self._lose("the renewal deadline passed")
                    return
                try:
                    if conn is None or conn.closed:
                        conn = self._connect()
                    if self.epoch is None:
                        self._try_acquire(conn, started)
                    elif not self._renew(conn, started):
                        self._lose("another replica holds the lease")
                        return
                except psycopg.errors.LockNotAvailable:
                    pass  # a journal write holds the row (a paused one ends with its session)
                except psycopg.Error as exc:  # the server or the network: try again
                    log.warning("leader lease: cannot reach PostgreSQL", reason=str(exc)[:200])
                    if conn is not None:
                        conn.close()
                    conn = None
                self._stop.wait(max(0.0, self.renew_every - (self._clock() - started)))
        finally:
            if conn is not None:
                conn.close()

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = connect(self.dsn, self.schema)
        except ConfigError as exc:  # unreachable now: tried again at the next turn
            raise psycopg.OperationalError(str(exc)) from None
        # Never wait long on the row a write of the leader holds: try again at the next turn.
        wait = max(1, int(self.renew_every * 1000))
        conn.execute(f"SET lock_timeout = {wait}")
        conn.execute(f"SET statement_timeout = {max(wait * 2, 100)}")
        return conn

    def _try_acquire(self, conn: psycopg.Connection[Any], started: float) -> None:
        row = conn.execute(_ACQUIRE, self._params()).fetchone()
        if row is None:
            return
        self._valid_until = started + self.seconds - self.margin
        self.epoch = int(row[0])
        self.acquired_at = started
        log.warning("leader lease acquired", epoch=self.epoch, holder=self.holder)
        self._on_change()

    def _renew(self, conn: psycopg.Connection[Any], started: float) -> bool:
        row = conn.execute(_RENEW, self._params(self.epoch)).fetchone()
        if row is None:
            return False
        self._valid_until = started + self.seconds - self.margin
        return True

    def _lose(self, why: str) -> None:
        self.lost.set()
        log.error("leader lease lost; this replica stops sending", epoch=self.epoch,
                  reason=why)
        self._on_change()

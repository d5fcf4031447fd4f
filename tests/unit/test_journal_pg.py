"""The PostgreSQL journal (keeper/execution/journal_pg.py) and the leader lease (keeper/ha/
lease.py), on a real PostgreSQL server the session starts (tests/conftest.py `postgres`).

The SQLite journal's own tests (tests/unit/test_journal.py) run again here with `Journal`
swapped for a `PgJournal` that holds the lease, so both backends keep one behaviour; then
the fencing: a write under a stale epoch or a lapsed lease fails and leaves nothing, a
takeover waits for a write in progress, a standby reads but cannot write.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from keeper.errors import ConfigError
from keeper.execution.journal_pg import LEASE_TABLE, Fenced, PgJournal, connect, lease_key
from keeper.ha.lease import Lease
from tests.unit import test_journal as sqlite_tests
from tests.unit.test_journal import opportunity, sign_and_record

ACCOUNT = lease_key(1, "0x00000000000000000000000000000000000000aa")


def schema_of(name: str) -> str:
    return "t_" + hashlib.sha256(name.encode()).hexdigest()[:16]


def set_epoch(dsn: str, schema: str, epoch: int, account: str = ACCOUNT) -> None:
    """Write the lease row as a takeover would (no waiting for the expiry)."""
    with connect(dsn, schema) as conn:
        conn.execute(
            f"INSERT INTO {LEASE_TABLE} (account, holder, epoch, expires_at)"
            " VALUES (%s, 'test', %s, now() + interval '1 hour') ON CONFLICT (account)"
            " DO UPDATE SET epoch = excluded.epoch", (account, epoch))


def leading(dsn: str, schema: str, *, clock: Callable[[], float] = time.time,
            held: Callable[[], bool] = lambda: True) -> PgJournal:
    journal = PgJournal(dsn, schema, ACCOUNT, held=held, clock=clock)
    set_epoch(dsn, schema, 1)
    journal.epoch = 1
    return journal


SHARED = [
    "test_claim_once_only", "test_claim_refused_while_handled_or_done",
    "test_dropped_and_abandoned_may_be_claimed_again", "test_restart_keeps_state",
    "test_replacement_and_resolution",
    "test_dropping_one_of_two_live_transactions_keeps_the_intent_live",
    "test_invalid_transitions_raise", "test_big_ints_round_trip",
    "test_abandon_unsigned_frees_planned_intents_only",
    "test_batch_claims_all_or_none_and_members_follow_the_lead",
    "test_a_member_of_a_dropped_batch_may_be_sent_alone",
    "test_unmine_puts_orphaned_transactions_back_to_sent",
]


@pytest.mark.parametrize("name", SHARED)
def test_the_sqlite_journal_tests_pass_on_postgres(
    name: str, postgres: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """Each SQLite journal test, with every `Journal(path)` a `PgJournal` in the schema of
    that path (a reopened path is a restart on the same journal)."""

    def opener(path: str | Path, *, clock: Callable[[], float] = time.time) -> PgJournal:
        return leading(postgres, schema_of(f"{request.node.name}:{path}"), clock=clock)

    monkeypatch.setattr(sqlite_tests, "Journal", opener)
    test = getattr(sqlite_tests, name)
    kwargs: dict[str, Any] = {}
    params = test.__code__.co_varnames[: test.__code__.co_argcount]
    if "path" in params:
        kwargs["path"] = tmp_path / "journal.sqlite"
    if "tmp_path" in params:
        kwargs["tmp_path"] = tmp_path
    if "status" in params:
        for status in ("signed", "sent", "confirmed", "reverted"):
            test(path=tmp_path / f"{status}.sqlite", status=status)
        return
    test(**kwargs)


@pytest.fixture
def schema(request: pytest.FixtureRequest) -> str:
    return schema_of(request.node.name)


def test_a_write_under_a_stale_epoch_fails_and_leaves_nothing(postgres: str, schema: str) -> None:
    journal = leading(postgres, schema)
    try:
        assert journal.claim(opportunity("a"), 1)
        sign_and_record(journal, "a", 0, "0xaa")
        set_epoch(postgres, schema, 2)  # another replica took the lease
        with pytest.raises(Fenced, match="epoch is 2"):
            journal.claim(opportunity("b"), 1)
        with pytest.raises(Fenced):
            journal.mark_sent("a", "0xaa")
        assert journal.get("b") is None
        (tx,) = journal.pending()
        assert tx.status == "signed"  # what the old leader committed, the new one reads
        assert journal.tx_epochs() == {"0xaa": 1}
        journal.epoch = 2  # the new leader's journal writes under the new epoch
        journal.mark_sent("a", "0xaa")
        sign_and_record(journal, "a", 0, "0xab")
        assert journal.tx_epochs() == {"0xaa": 1, "0xab": 2}
    finally:
        journal.close()


def test_a_lapsed_lease_fails_without_asking_the_server(postgres: str, schema: str) -> None:
    held = [True]
    journal = leading(postgres, schema, held=lambda: held[0])
    try:
        assert journal.claim(opportunity("a"), 1)
        held[0] = False
        journal._pg.conn.close()  # any round trip would now fail with another error
        with pytest.raises(Fenced, match="lease not held"):
            journal.claim(opportunity("b"), 1)
    finally:
        journal.close()


def test_an_unreachable_server_is_one_line_without_the_password() -> None:
    with pytest.raises(ConfigError, match=r"^ha\.dsn: cannot connect") as error:
        PgJournal("postgresql://keeper:s3cret-pw@127.0.0.1:1/keeper", "k", ACCOUNT,
                  held=lambda: True)
    assert "s3cret-pw" not in str(error.value) and "\n" not in str(error.value)


def test_a_standby_reads_but_cannot_write(postgres: str, schema: str) -> None:
    leader = leading(postgres, schema)
    standby = PgJournal(postgres, schema, ACCOUNT, held=lambda: True)
    try:
        leader.claim(opportunity("a"), 1)
        sign_and_record(leader, "a", 5, "0xaa")
        assert [t.tx_hash for t in standby.pending()] == ["0xaa"]
        assert standby.max_nonce() == 5
        with pytest.raises(Fenced, match="not the leader"):
            standby.claim(opportunity("b"), 1)
    finally:
        leader.close()
        standby.close()


def test_one_schema_is_one_account(postgres: str, schema: str) -> None:
    leading(postgres, schema).close()
    with pytest.raises(ConfigError, match="one schema per account"):
        PgJournal(postgres, schema, lease_key(1, "0x" + "bb" * 20), held=lambda: True)


@pytest.fixture
def leases(postgres: str, schema: str) -> Iterator[list[Lease]]:
    made: list[Lease] = []
    yield made
    for lease in made:
        lease.stop(release=False)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_one_leader_then_a_takeover_with_a_higher_epoch(
    postgres: str, schema: str, leases: list[Lease],
) -> None:
    PgJournal(postgres, schema, ACCOUNT, held=lambda: True).close()  # the tables
    # 2 s leases: a renewal thread starved for 1.4 s (a loaded machine) would lose it.
    first = Lease(postgres, schema, ACCOUNT, "a", seconds=2)
    second = Lease(postgres, schema, ACCOUNT, "b", seconds=2)
    leases += [first, second]
    first.start(lambda: None)
    wait_until(first.held)
    second.start(lambda: None)
    time.sleep(2.5)  # over a lease length: the leader renews, the standby never gets it
    assert first.held() and second.epoch is None
    first.stop(release=False)  # dies: no release, the lease must expire
    stopped = time.monotonic()
    wait_until(second.held)
    assert second.epoch == (first.epoch or 0) + 1
    assert time.monotonic() - stopped >= 1.0  # not before the old lease's expiry
    assert not first.held()


def test_a_clean_stop_hands_over_at_once(postgres: str, schema: str, leases: list[Lease]) -> None:
    PgJournal(postgres, schema, ACCOUNT, held=lambda: True).close()
    first = Lease(postgres, schema, ACCOUNT, "a", seconds=5)
    second = Lease(postgres, schema, ACCOUNT, "b", seconds=5)
    leases += [first, second]
    first.start(lambda: None)
    wait_until(first.held)
    second.start(lambda: None)
    first.stop(release=True)
    stopped = time.monotonic()
    wait_until(second.held)
    assert time.monotonic() - stopped < 3  # well before the 5 s expiry


def test_a_paused_leader_finds_its_lease_lapsed(postgres: str, schema: str,
                                                leases: list[Lease]) -> None:
    PgJournal(postgres, schema, ACCOUNT, held=lambda: True).close()
    now = [1000.0]
    lease = Lease(postgres, schema, ACCOUNT, "a", seconds=10, clock=lambda: now[0])
    leases.append(lease)
    lease.start(lambda: None)
    wait_until(lease.held)
    now[0] += 10 * 0.7 + 0.01  # past the lease less its margin, without a renewal landing
    assert not lease.held()


def test_a_takeover_waits_for_a_write_in_progress(postgres: str, schema: str) -> None:
    """The share lock a write holds on the lease row: the takeover's update waits for the
    commit, so the new leader reads every write the old one committed."""
    journal = leading(postgres, schema)
    try:
        journal.claim(opportunity("a"), 1)
        took: list[float] = []

        def takeover() -> None:
            with psycopg.connect(postgres, autocommit=True) as conn:
                conn.execute(f"SET search_path TO {schema}")
                conn.execute(f"UPDATE {LEASE_TABLE} SET epoch = epoch + 1")
                took.append(time.monotonic())

        with journal._write() as db:
            db.execute("UPDATE intents SET attempts = 5 WHERE key = ?", ("a",))
            thread = threading.Thread(target=takeover)
            thread.start()
            time.sleep(0.3)
            assert took == []  # blocked by the write's share lock
            committed_at = time.monotonic()
        thread.join(timeout=10)
        assert took and took[0] >= committed_at
        record = journal.get("a")
        assert record is not None and record.attempts == 5
        with pytest.raises(Fenced):
            journal.mark_abandoned("a")
    finally:
        journal.close()


def test_a_session_the_server_ended_is_opened_again(postgres: str, schema: str) -> None:
    """A restarted server, or a session ended for idling inside a transaction (a paused
    leader's): the next write opens a new session; nothing half-written is kept."""
    journal = leading(postgres, schema)
    try:
        assert journal.claim(opportunity("a"), 1)
        pid = journal._pg.conn.info.backend_pid
        with psycopg.connect(postgres, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert journal.claim(opportunity("b"), 1)
        assert journal._pg.conn.info.backend_pid != pid
        assert [k for k in ("a", "b") if journal.get(k) is not None] == ["a", "b"]
    finally:
        journal.close()


def test_a_leader_paused_inside_a_write_does_not_block_the_takeover(
    postgres: str, schema: str, leases: list[Lease],
) -> None:
    """The server ends a session idle inside a transaction after the lease's length, which
    frees the lease row for the standby; the paused write then fails, nothing kept."""
    journal = PgJournal(postgres, schema, ACCOUNT, held=lambda: True, idle_seconds=0.5)
    try:
        set_epoch(postgres, schema, 1)
        journal.epoch = 1
        with connect(postgres, schema) as conn:  # the leader's lease has just expired
            conn.execute(f"UPDATE {LEASE_TABLE} SET expires_at = now() - interval '1 second'")
        standby = Lease(postgres, schema, ACCOUNT, "b", seconds=0.5)
        leases.append(standby)
        with pytest.raises(psycopg.Error, match="idle-in-transaction"), journal._write() as db:
            db.execute("UPDATE intents SET attempts = 9")
            standby.start(lambda: None)
            paused = time.monotonic()
            wait_until(standby.held, timeout=10)  # while the write is still "paused"
            took = time.monotonic() - paused
        assert standby.epoch == 2 and took < 5
        with pytest.raises(Fenced):
            journal.claim(opportunity("late"), 1)
    finally:
        journal.close()


def test_a_schema_the_role_may_not_create_is_one_line(postgres: str) -> None:
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS weak")
        admin.execute("CREATE ROLE weak LOGIN")
    weak = postgres.replace("user=postgres", "user=weak")
    with pytest.raises(ConfigError, match=r"^ha\.journal_schema nope: cannot use it") as error:
        PgJournal(weak, "nope", ACCOUNT, held=lambda: True)
    assert "\n" not in str(error.value)



def _open_together(dsn: str, schema: str, replicas: int) -> tuple[int, list[BaseException]]:
    """`replicas` journals opened on `schema` by as many threads at the same moment: how
    many opened, and what the others raised."""
    barrier = threading.Barrier(replicas)
    opened: list[PgJournal] = []
    failed: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            opened.append(PgJournal(dsn, schema, ACCOUNT, held=lambda: True))
        except Exception as exc:
            failed.append(exc)

    threads = [threading.Thread(target=start) for _ in range(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for journal in opened:
        journal.close()
    return len(opened), failed


def test_replicas_starting_together_open_a_new_schema(postgres: str, schema: str) -> None:
    """Replicas started at the same moment on a schema that does not exist yet all open it
    (PostgreSQL's `CREATE SCHEMA IF NOT EXISTS` is not atomic: the second of two sessions
    can fail on the catalog's unique index; the race benchmark's two replicas hit it)."""
    for round_ in range(5):
        opened, failed = _open_together(postgres, f"{schema}_{round_}", 4)
        assert not failed, failed
        assert opened == 4

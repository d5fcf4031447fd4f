"""What the journal costs on the send path: SQLite (the default) against PostgreSQL ([ha]).

Run: `python -m benchmarks.bench_journal_pg [--volleys 200] [--sends 1 4]`.

A volley's journal work, as `Volley`/`Sender.send_all` do it: one `claim_all` (not
synced), one `record_signed_all` (synced: before the broadcast), one `mark_sent_all` (not
synced), for N sends. SQLite: a file in a temporary folder (WAL, synchronous=FULL).
PostgreSQL: a local server from the pgserver wheel (fsync on), the journal holding the
lease, so every write also carries the epoch check (`SELECT … FOR SHARE` in the round trip
of its BEGIN). Reported: the median and p99 of the time from the claim to the signed
record on disk (what stands before the first broadcast), and of the whole volley.
Benchmarks report numbers; they assert nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from keeper.execution.journal import Journal, Signed
from keeper.execution.journal_pg import LEASE_TABLE, PgJournal, connect, lease_key
from keeper.ha.local_pg import LocalPostgres
from tests.unit.test_journal import opportunity

ACCOUNT = lease_key(1, "0x" + "ab" * 20)


def volleys(journal: Journal, count: int, sends: int) -> tuple[list[float], list[float]]:
    """(claim -> signed on disk, whole volley) seconds for `count` volleys of `sends`."""
    before: list[float] = []
    whole: list[float] = []
    nonce = 0
    for v in range(count):
        opps = [opportunity(f"v{v}s{s}") for s in range(sends)]
        started = time.perf_counter()
        claimed = journal.claim_all([(o, ()) for o in opps], 1)
        assert all(claimed)
        records = [Signed(o.key, nonce + i, f"0x{v:08x}{i:04x}", "0x02f8" + "ab" * 120,
                          30 * 10**9, 10**9) for i, o in enumerate(opps)]
        journal.record_signed_all(records)
        signed = time.perf_counter()
        journal.mark_sent_all([(r.key, r.tx_hash) for r in records])
        done = time.perf_counter()
        nonce += sends
        before.append(signed - started)
        whole.append(done - started)
    return before, whole


def describe(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{name} median {statistics.median(ordered) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volleys", type=int, default=200)
    parser.add_argument("--sends", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    with LocalPostgres() as pg, tempfile.TemporaryDirectory() as folder:
        with connect(pg.dsn, "bench") as conn:
            PgJournal(pg.dsn, "bench", ACCOUNT, held=lambda: True).close()  # the tables
            conn.execute(f"INSERT INTO {LEASE_TABLE} VALUES (%s, 'bench', 1,"
                         " now() + interval '1 day')", (ACCOUNT,))
        openers: list[tuple[str, Callable[[], Journal]]] = [
            ("sqlite", lambda: Journal(Path(folder) / "journal.sqlite")),
            ("postgresql", lambda: PgJournal(pg.dsn, "bench", ACCOUNT, held=lambda: True)),
        ]
        for sends in args.sends:
            for name, opener in openers:
                journal = opener()
                if isinstance(journal, PgJournal):
                    journal.epoch = 1
                try:
                    before, whole = volleys(journal, args.volleys, sends)
                finally:
                    journal.close()
                print(f"{name}, {sends} send(s) a volley: "
                      f"{describe('claim -> signed on disk', before)}; "
                      f"{describe('whole volley', whole)}", flush=True)
                # the next round claims other keys: v{n} repeats, so start afresh
                if name == "sqlite":
                    for suffix in ("", "-wal", "-shm"):
                        Path(folder, "journal.sqlite" + suffix).unlink(missing_ok=True)
                else:
                    with connect(pg.dsn, "bench") as conn:
                        conn.execute("TRUNCATE batch_members, transactions, intents")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

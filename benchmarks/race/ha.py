"""`--ha`: the race's keeper side with `[ha]` on: two replicas of the account, one journal.

`ReplicaPair.start` gives the harness (harness.py, through keepers.py's `KeeperSide`):

- a PostgreSQL server of its own (keeper/ha/local_pg.py: the pgserver wheel's binaries, on
  a free port; its folder in the system's temporary directory, since the server's Unix
  socket path must stay under 108 bytes and a workdir may be deep; its log is copied into
  the workdir at the end, and it is stopped and deleted), or the server `dsn` names (the
  suite's), in a fresh schema per race;
- two `keeper run` replicas of the devnet liquidator, `keeper-a` and `keeper-b`: each the
  race's usual config (keepers.py's `keeper_config`, in `keeper-a/`, `keeper-b/`) plus
  `[ha]` on that schema with the default one-second lease, each with its own monitoring
  port, started together: the one that takes the lease leads and sends, the other follows
  the chain with warm books, as in the failover test (tests/integration/ha_cluster.py).

Ready: both replicas synced to the head the race starts at, and one leading (its log's
"leading" line). The keeper's own view is the /metrics of the replica(s) that led (a
standby ranks every block too, so its `found` counts would count the same opportunities
twice), the head the highest of both. They are stopped standby first (SIGTERM), so the
leader's clean stop, which releases its lease, hands it to nobody. The timing table reads
`sent_at` from the shared journal (timing.py's `sent_rows`), and the notes say which
replica led, how many transactions each lease epoch journaled (a takeover during the race
shows as a second epoch) and each replica's CPU time: on one machine the standby takes its
share of the cores the leader, anvil and the competitor share (replicas of a real
deployment run on separate machines). The verdict is the chain's, as without `[ha]`. A
replica that lost its lease exits (code 75, for its supervisor to restart it as a
standby): the harness has no supervisor, so that ends the race with that line.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from benchmarks.race.keepers import (
    HEAD,
    KEY_ENV,
    Process,
    cpu_seconds,
    free_port,
    keeper_command,
    keeper_config,
    scrape,
)
from benchmarks.race.timing import BotSend, PgJournalAt, keeper_sends
from keeper.devnet.info import DevnetInfo
from keeper.ha.local_pg import LocalPostgres

if TYPE_CHECKING:
    from benchmarks.race.harness import RaceResult

LEADING = '"leading: this replica signs and sends"'
LEASE_SECONDS = 1.0  # the product's default
REPLICAS = ("a", "b")


class ReplicaPair:
    """Two `[ha]` replicas of the keeper's account on one PostgreSQL journal (see the module
    docstring); a `KeeperSide`."""

    def __init__(self, processes: list[Process], ports: list[int], journal: PgJournalAt,
                 workdir: Path, server: LocalPostgres | None) -> None:
        self.processes = processes
        self.ports = ports
        self.journal = journal
        self.workdir = workdir
        self.server = server
        self.cpu: dict[str, float | None] = {}

    @classmethod
    def start(cls, info: DevnetInfo, workdir: Path, *, tip_gwei: Decimal,
              flash_executor: str | None, dsn: str | None = None) -> ReplicaPair:
        server = LocalPostgres().start() if dsn is None else None
        journal = PgJournalAt(server.dsn if server else str(dsn),
                              f"race_{uuid.uuid4().hex[:8]}")
        processes: list[Process] = []
        ports: list[int] = []
        try:
            for name in REPLICAS:
                folder = workdir / f"keeper-{name}"
                folder.mkdir(parents=True, exist_ok=True)
                ports.append(free_port())
                config = keeper_config(info, folder, tip_gwei=tip_gwei,
                                       flash_executor=flash_executor, monitoring_port=ports[-1])
                with config.open("a") as out:  # a local server with trust auth: no secret
                    out.write(f'\n[ha]\ndsn = "{journal.dsn}"\njournal_schema = '
                              f'"{journal.schema}"\nreplica = "race-{name}"\n'
                              f"lease_seconds = {LEASE_SECONDS}\n")
                processes.append(Process(f"keeper-{name}", keeper_command(config), workdir,
                                         env=KEY_ENV))
        except BaseException:
            for process in processes:
                process.stop(timeout=10)
            if server is not None:
                server.stop()
            raise
        return cls(processes, ports, journal, workdir, server)

    def led(self) -> list[str]:
        """The replicas that logged taking the lead, each once per time it did."""
        return [p.name for p in self.processes
                for line in p.stderr_path.read_text(errors="replace").splitlines()
                if LEADING in line]

    def ready(self, target: int) -> tuple[bool, bool]:
        metrics = [scrape(port) for port in self.ports]
        synced = all(m.get(HEAD, 0) >= target > 0 for m in metrics)
        return any(metrics), synced and bool(self.led())

    def metrics(self) -> dict[str, float]:
        leaders = set(self.led())
        out: dict[str, float] = {}
        for process, port in zip(self.processes, self.ports, strict=True):
            for name, value in scrape(port).items():
                if name.startswith(HEAD):
                    out[name] = max(out.get(name, 0.0), value)
                elif process.name in leaders:
                    out[name] = out.get(name, 0.0) + value
        return out

    def stop(self) -> None:
        leaders = set(self.led())
        self.cpu = {p.name: cpu_seconds(p) for p in self.processes}
        for process in sorted(self.processes, key=lambda p: p.name in leaders):
            process.stop()

    def sends(self) -> list[BotSend]:
        return keeper_sends(self.journal)

    def notes(self) -> list[str]:
        with psycopg.connect(self.journal.dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(
                sql.Identifier(self.journal.schema)))
            epochs = conn.execute("SELECT epoch, count(*) FROM transactions GROUP BY epoch"
                                  " ORDER BY epoch").fetchall()
        by_epoch = ", ".join(f"epoch {e}: {n}" for e, n in epochs) or "none"
        cpu = ", ".join(f"{n} {'-' if s is None else f'{s:.1f} s'}" for n, s in self.cpu.items())
        return [f"[ha] replicas {', '.join(p.name for p in self.processes)} on PostgreSQL "
                f"(schema {self.journal.schema}, lease {LEASE_SECONDS:g} s); took the lead: "
                f"{', '.join(self.led()) or 'none'}; transactions journaled by lease "
                f"{by_epoch}; CPU (user + system) {cpu}"]

    def close(self) -> None:
        if self.server is None:
            with contextlib.suppress(psycopg.Error), psycopg.connect(
                    self.journal.dsn, autocommit=True, connect_timeout=5) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(self.journal.schema)))
            return
        with contextlib.suppress(OSError):
            shutil.copyfile(self.server.root / "server.log", self.workdir / "postgres.log")
        self.server.stop()


def compare_lines(plain: RaceResult, ha: RaceResult) -> list[str]:
    """The same race without and with `[ha]`, side by side (one invocation, so both ran on
    the same machine at nearly the same load)."""

    def keeper(result: RaceResult) -> dict[str, str]:
        v, t = result.verdict, result.timing
        totals = v.totals.get("keeper")
        bot = t.bots["keeper"].summary() if "keeper" in t.bots else {}
        causes = ", ".join(f"{c} {n}" for c, n in sorted(v.causes("keeper").items()))
        return {
            "keeper first liquidations": f"{v.win_rate('keeper'):.1%} "
                                         f"({totals.first if totals else 0}/{v.accounts})",
            "keeper bonus share": f"{v.capture('keeper'):.1%}",
            "competitor first liquidations": f"{v.win_rate('competitor'):.1%}",
            "bonus taken (both)": f"${v.bonus_total:,.0f}",
            "keeper txs / reverted": f"{totals.transactions if totals else 0} / "
                                     f"{totals.reverted if totals else 0}"
                                     + (f" ({causes})" if causes else ""),
            "keeper step block -> first send p50": _ms(bot.get("first_send_p50_ms")),
            "keeper head -> send p50 / p90": f"{_ms(bot.get('head_to_send_p50_ms'))} / "
                                             f"{_ms(bot.get('head_to_send_p90_ms'))}",
            "keeper's first send came first": f"{t.keeper_sent_first}/{t.both_sent} steps",
            "race seconds, load average": f"{result.seconds:.0f} s, {result.load[0]:.1f} -> "
                                          f"{result.load[1]:.1f}",
        }

    left, right = keeper(plain), keeper(ha)
    width, column = max(len(k) for k in left), max(len(v) for v in left.values())
    out = [f" {'':<{width}}  {'without [ha]':<{column}}  with [ha] (two replicas, PostgreSQL)"]
    out += [f" {k:<{width}}  {left[k]:<{column}}  {right[k]}" for k in left]
    return out + [f" without: {n}" for n in plain.notes] + [f" with: {n}" for n in ha.notes]


def _ms(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"

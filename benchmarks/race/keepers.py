"""The race's keeper side: the daemon's process, its config, its /metrics and its sends.

`OneKeeper` is the default: one `keeper run` with a SQLite journal in the workdir. With
`--ha`, `benchmarks/race/ha.py`'s `ReplicaPair` stands in its place (two replicas of the
same account on a PostgreSQL journal); the harness drives either through `KeeperSide`.
`Process` (a bot's child process, its output in the workdir) serves the competitor too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import IO, Protocol

from benchmarks.race.timing import BotSend, keeper_sends
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY
from keeper.devnet.info import DevnetInfo
from keeper.devnet.tokens import DEFAULT_TOKENS
from keeper.paths import project_root

HEAD = "keeper_head_block"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keeper_config(info: DevnetInfo, workdir: Path, *, tip_gwei: Decimal,
                  flash_executor: str | None, monitoring_port: int) -> Path:
    """The daemon's config for the devnet (the key comes from the environment)."""
    weth = info.tokens["WETH"].address
    min_profit = Decimal(5) / next(t.usd_price for t in DEFAULT_TOKENS if t.symbol == "WETH")
    flash = f'flash_executor = "{flash_executor}"\n' if flash_executor else ""
    # The prepared liquidations plan for the devnet's published feed rules.
    feeds = "".join(
        f'[[execution.feeds]]\naddress = "{info.feeds[s]}"\ndeviation_bps = {r.deviation_bps}\n'
        f"heartbeat_seconds = {r.heartbeat}\n\n" for s, r in info.feed_rules.items())
    path = workdir / "keeper.toml"
    path.write_text(
        f'[chain]\nchain_id = {info.chain_id}\nhttp_urls = ["{info.rpc_url}"]\n'
        f'ws_url = "{info.ws_url}"\nblock_time_seconds = 1\n\n'
        f'[execution]\nmode = "live"\nquote_token = "{weth}"\n'
        f'min_profit_quote = "{min_profit}"\nmax_fee_per_gas_gwei = "5000"\n'
        f'priority_fee_gwei = "{tip_gwei}"\njournal = "{workdir / "keeper-journal.sqlite"}"\n'
        f"{flash}\n"
        f"{feeds}"
        f'[monitoring]\nenabled = true\nhost = "127.0.0.1"\nport = {monitoring_port}\n\n'
        # The product's breakers, but a gas budget for crash-day base fees (up to ~1,950
        # gwei on the bundled path: the default 1 ETH an hour lasts a few liquidations).
        '[breakers]\nmax_gas_per_hour_eth = "1000"\n\n'
        f'[dex]\nuniswap_v2_factory = "{info.uniswap_v2.factory}"\n\n'
        f'[strategies.aave_v3]\naddresses_provider = "{info.aave_v3.addresses_provider}"\n\n'
        f'[strategies.morpho_blue]\nmorpho = "{info.morpho_blue.morpho}"\n')
    return path



def _term_with_parent() -> None:
    # In the child between fork and exec: SIGTERM when the harness dies, even by SIGKILL,
    # so a bot never outlives its race (the daemon would retry its dead node forever).
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Process:
    """A bot's child process, its output in the workdir; stopped with SIGTERM, then killed."""

    def __init__(self, name: str, command: list[str], workdir: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.stdout_path = workdir / f"{name}.out"
        self.stderr_path = workdir / f"{name}.err"
        self._out: IO[str] = self.stdout_path.open("w")
        self._err: IO[str] = self.stderr_path.open("w")
        self.process = subprocess.Popen(
            command, stdout=self._out, stderr=self._err, cwd=project_root(),
            env={**os.environ, **(env or {})}, text=True,
            preexec_fn=_term_with_parent)  # noqa: PLW1509 (only calls prctl, no locks)

    def check(self) -> None:
        code = self.process.poll()
        if code is not None:
            tail = self.stderr_path.read_text().strip().splitlines()[-3:]
            raise RuntimeError(f"{self.name} exited with {code}: {' | '.join(tail)}")

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._out.close()
        self._err.close()
        return int(self.process.returncode)


def scrape(port: int) -> dict[str, float]:
    """The keeper's /metrics: its own view of the race (outcomes, breakers, head)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith(("keeper_head_block", "keeper_outcomes_total",
                            "keeper_breaker_tripped", "keeper_races_lost_total",
                            "keeper_opportunities_")) and "_created" not in line:
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def cpu_seconds(process: Process) -> float | None:
    """The user + system CPU time a running process has used so far (Linux's /proc), else
    None: what a bot cost the machine's shared cores."""
    try:
        stat = Path(f"/proc/{process.process.pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # from field 3 (state): utime is 14, stime 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def keeper_command(config: Path) -> list[str]:
    """`keeper run` with `config`, logging JSON lines (to its stderr)."""
    return [sys.executable, "-c", "from keeper.cli import main; main()", "--config",
            str(config), "--log-format", "json", "run"]


KEY_ENV = {"KEEPER_ACCOUNT__PRIVATE_KEY": DEVNET_LIQUIDATOR_KEY}


class KeeperSide(Protocol):
    """The keeper's process(es) in a race, as the harness sees them."""

    processes: list[Process]

    def ready(self, target: int) -> tuple[bool, bool]:
        """(its monitoring is up, it is ready: synced to `target` and able to send)."""
        ...

    def metrics(self) -> dict[str, float]:
        """Its own view, from /metrics."""
        ...

    def stop(self) -> None:
        """Stop the process(es) (SIGTERM: what is in flight is finished)."""
        ...

    def sends(self) -> list[BotSend]:
        """Every transaction it sent, from its journal (after `stop`)."""
        ...

    def notes(self) -> list[str]:
        ...

    def close(self) -> None:
        """Release what it holds beyond its processes."""
        ...


class OneKeeper:
    """One `keeper run` as the devnet liquidator, its SQLite journal in the workdir."""

    def __init__(self, info: DevnetInfo, workdir: Path, *, tip_gwei: Decimal,
                 flash_executor: str | None) -> None:
        self.port = free_port()
        self.journal = workdir / "keeper-journal.sqlite"
        config = keeper_config(info, workdir, tip_gwei=tip_gwei,
                               flash_executor=flash_executor, monitoring_port=self.port)
        self.processes = [Process("keeper", keeper_command(config), workdir, env=KEY_ENV)]
        self.cpu: float | None = None

    def ready(self, target: int) -> tuple[bool, bool]:
        metrics = scrape(self.port)  # empty until the daemon's monitoring is up
        return bool(metrics), metrics.get(HEAD, 0) >= target > 0

    def metrics(self) -> dict[str, float]:
        return scrape(self.port)

    def stop(self) -> None:
        self.cpu = cpu_seconds(self.processes[0])
        for process in self.processes:
            process.stop()

    def sends(self) -> list[BotSend]:
        return keeper_sends(self.journal)

    def notes(self) -> list[str]:
        return [] if self.cpu is None else [f"keeper CPU {self.cpu:.1f} s (user + system)"]

    def close(self) -> None:
        pass


def start_keepers(info: DevnetInfo, workdir: Path, *, tip_gwei: Decimal,
                  flash_executor: str | None, ha: bool = False,
                  ha_dsn: str | None = None) -> KeeperSide:
    """The keeper side, started: one daemon, or with `ha` two replicas (ha.py)."""
    if not ha:
        return OneKeeper(info, workdir, tip_gwei=tip_gwei, flash_executor=flash_executor)
    from benchmarks.race.ha import ReplicaPair  # noqa: PLC0415 (the ha extra: psycopg)

    return ReplicaPair.start(info, workdir, tip_gwei=tip_gwei, flash_executor=flash_executor,
                             dsn=ha_dsn)

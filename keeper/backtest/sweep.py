"""`keeper backtest sweep`: many price-path backtests, price paths x parameter sets, on Ray.

Each cell of the grid (one price path, one `Tuning`: bid share, minimum profit, batch
size, insert position) is one Ray task running the ordinary price-path backtest
(`keeper.backtest.devnet_replay.run_price_path`) on its own anvil: its own free port, its
own `--cache-path` folder (`keeper.anvil`), and `--prune-history` so it keeps its recent
states in memory and spills nothing to disk. The replay is deterministic, so a cell's
report is the one `keeper backtest --devnet --price-path P --bid-share S --insert I ...`
gives (the wall-clock fields aside). The driver gathers every cell's report into one
`keeper.backtest.sweep_report.SweepReport`: a table and a plot of capture and PnL per
parameter set.

Ray is an optional extra (`pip install 'keeper[sweep]'`): it is imported here, inside the
command, and nowhere else, so the daemon never needs it; without it the command is one
`keeper: error:` line. Locally, `ray.init` starts a private Ray instance capped at
`--cpus`; with `--ray-address` the tasks go to an existing cluster, whose every node must
hold the same keeper checkout (installed with its npm packages): a node without the
devnet's cached state deploys it once (about a minute) before its first task.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from keeper.anvil import Anvil
from keeper.backtest.path_file import PricePath, load_path, resolve_path
from keeper.backtest.sweep_params import DEFAULT_BATCH, Tuning, grid
from keeper.backtest.sweep_report import Cell, SweepReport, print_sweep, write_sweep_html
from keeper.backtest.trial import insert_position
from keeper.demo import DEMO_MIN_PROFIT_USD
from keeper.devnet.deploy import DevnetSpec, cache_key, start_devnet
from keeper.devnet.info import DevnetInfo
from keeper.errors import FatalError, InputFileError, KeeperError
from keeper.paths import cache_dir

PRUNE_STATES = 256  # states each task's anvil keeps in memory (a step is at most 33 blocks)
OBJECT_STORE_BYTES = 128 * 1024**2  # a local Ray's object store: reports are small


class SweepUsageError(FatalError):
    """The options do not describe a sweep (no path, a bad parameter list...)."""


@dataclass(frozen=True)
class Job:
    """One cell's work, shipped to a Ray worker (everything in it pickles)."""

    path: PricePath
    tuning: Tuning
    spec: DevnetSpec
    steps: int | None
    capital_usd: Decimal | None


def start_pruned(spec: DevnetSpec) -> tuple[Anvil, DevnetInfo, bool]:
    """The cached devnet on its own anvil with `--prune-history` (deployed and cached first
    when this machine has no cached state yet)."""
    folder = cache_dir() / "devnet"
    key = cache_key(spec)
    state, info_path = folder / f"{key}.state.json", folder / f"{key}.devnet.json"
    if not (state.is_file() and info_path.is_file()):
        anvil, _info, _cached = start_devnet(spec)
        anvil.stop()
    anvil = Anvil(load_state=state, args=["--prune-history", str(PRUNE_STATES)]).start()
    try:
        info = DevnetInfo.read(info_path).model_copy(
            update={"rpc_url": anvil.rpc_url, "ws_url": anvil.ws_url})
    except BaseException:
        anvil.stop()
        raise
    return anvil, info, True


def run_job(job: Job) -> dict[str, Any]:
    """One backtest (a Ray task's body): its report as JSON. The engine's log goes nowhere
    but warnings, to the worker's stderr (Ray keeps it in the node's session logs)."""
    from keeper.backtest.devnet_replay import run_price_path  # noqa: PLC0415 (the engine)
    from keeper.log import configure_logging  # noqa: PLC0415

    configure_logging("json", "warning", stream=sys.stderr)
    report = run_price_path(job.path, spec=job.spec, max_steps=job.steps,
                            capital_usd=job.capital_usd, tuning=job.tuning, start=start_pruned)
    return report.to_json()


def _import_ray() -> Any:
    try:
        import ray  # noqa: PLC0415 (optional: only the sweep needs it)
    except ModuleNotFoundError as exc:
        if exc.name != "ray":
            raise
        raise KeeperError("keeper backtest sweep needs Ray: pip install 'keeper[sweep]'"
                          ) from None
    return ray


def run_sweep(jobs: Sequence[Job], *, ray_address: str | None, cpus: int,
              on_done: Callable[[int, int], None] | None = None) -> list[Cell]:
    """Every job as a Ray task (one CPU each); the cells in the jobs' order. A task that
    failed is a cell with its error, never a lost row."""
    ray = _import_ray()
    if ray_address is None:
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                 object_store_memory=OBJECT_STORE_BYTES, configure_logging=False)
    else:
        ray.init(address=ray_address, log_to_driver=False, configure_logging=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(run_job)
        pending = {task.remote(job): index for index, job in enumerate(jobs)}
        cells: list[Cell | None] = [None] * len(jobs)
        waiting = list(pending)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            index = pending[ready[0]]
            job = jobs[index]
            try:
                cells[index] = Cell(job.path.path.stem, job.steps, job.tuning,
                                    report=ray.get(ready[0]))
            except ray.exceptions.RayError as exc:
                reason = " ".join(str(getattr(exc, "cause", None) or exc).split())
                cells[index] = Cell(job.path.path.stem, job.steps, job.tuning,
                                    error=reason[-300:])
            if on_done is not None:
                on_done(len(jobs) - len(waiting), len(jobs))
        return [c for c in cells if c is not None]
    finally:
        ray.shutdown()


def _decimals(text: str, what: str, *, none: bool = False) -> list[Decimal | None]:
    out: list[Decimal | None] = []
    for item in (t.strip() for t in text.split(",")):
        if none and item.lower() == "none":
            out.append(None)
            continue
        try:
            out.append(Decimal(item))
        except InvalidOperation:
            raise SweepUsageError(f"{what}: {item!r} is not a number") from None
    return out


def parse_grid(bid_shares: str, min_profits: str, batch_sizes: str,
               inserts: str = "next-block") -> list[Tuning]:
    """The parameter sets of comma-separated lists; one clear line for a bad value."""
    shares = _decimals(bid_shares, "--bid-share", none=True)
    floors = [d for d in _decimals(min_profits, "--min-profit-usd") if d is not None]
    try:
        batches = [int(b) for b in batch_sizes.split(",")]
        positions = [insert_position(i.strip()) for i in inserts.split(",")]
        return grid(shares, floors, batches, positions)
    except ValueError as exc:
        raise SweepUsageError(f"bad sweep parameter: {exc}") from None


@click.command("sweep")
@click.option("--price-path", "paths", multiple=True, required=True, metavar="FILE",
              help="A price path (a shipped name or a CSV file); repeat for several.")
@click.option("--steps", type=click.IntRange(1), help="Play only the first K steps of each.")
@click.option("--bid-share", "bid_shares", default="none", show_default=True,
              help="Comma-separated bid shares within [0, 1] ('none': no bid policy).")
@click.option("--min-profit-usd", "min_profits", default=str(DEMO_MIN_PROFIT_USD),
              show_default=True, help="Comma-separated minimum profits, USD.")
@click.option("--batch-size", "batch_sizes", default=str(DEFAULT_BATCH), show_default=True,
              help="Comma-separated largest flash batches (1 to 20).")
@click.option("--insert", "inserts", default="next-block", show_default=True,
              help="Comma-separated insert positions of the keeper's reaction to a step's "
                   "prices: next-block, after-oracle (in the prices' own block).")
@click.option("--borrowers", default=300, show_default=True, type=click.IntRange(1, 2000))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--capital", type=click.FloatRange(min=0, min_open=True), metavar="USD",
              help="The liquidator holds this much of each asset instead of 5M each.")
@click.option("--ray-address", metavar="ADDRESS",
              help="An existing Ray cluster (e.g. ray://head:10001 or auto); a local Ray "
                   "instance when not given.")
@click.option("--cpus", type=click.IntRange(1), default=os.cpu_count() or 1, show_default=True,
              help="CPUs of the local Ray instance: backtests at once (without --ray-address).")
@click.option("--html", "html_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the combined report (table and plots) here.")
@click.option("--json-out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the combined report with every cell's full report as JSON here.")
def sweep(  # noqa: PLR0917 (click passes every option as an argument)
    paths: tuple[str, ...], steps: int | None, bid_shares: str, min_profits: str,
    batch_sizes: str, inserts: str, borrowers: int, seed: int, capital: float | None,
    ray_address: str | None, cpus: int, html_path: Path | None, json_out: Path | None,
) -> None:
    """Backtest every price path with every parameter set, as Ray tasks; one report."""
    from keeper.backtest.report import check_writable  # noqa: PLC0415

    _import_ray()  # missing: one line now, before any devnet starts
    tunings = parse_grid(bid_shares, min_profits, batch_sizes, inserts)
    loaded = [load_path(resolve_path(p)) for p in paths]
    for path in loaded:
        if steps is not None and steps > len(path.points):
            raise SweepUsageError(f"--steps {steps}: {path.path.name} has only "
                                  f"{len(path.points)} steps")
    for out, what in ((html_path, "the sweep's HTML report"), (json_out, "the sweep's JSON")):
        if out is not None:
            check_writable(out, what)
    spec = DevnetSpec(borrowers=borrowers, seed=seed)
    capital_usd = Decimal(str(capital)) if capital is not None else None
    jobs = [Job(p, t, spec, steps, capital_usd) for p in loaded for t in tunings]
    console = Console(stderr=True)
    if ray_address is None:  # one deploy here, not one per task, when nothing is cached yet
        anvil, _info, _cached = start_devnet(spec)
        anvil.stop()
    console.print(f"sweep: {len(loaded)} paths x {len(tunings)} parameter sets = {len(jobs)} "
                  f"backtests on {ray_address or f'a local Ray instance ({cpus} CPUs)'}")
    started = time.monotonic()
    cells = run_sweep(jobs, ray_address=ray_address, cpus=cpus,
                      on_done=lambda done, total: console.print(f"  {done}/{total} done"))
    report = SweepReport(cells, seconds=time.monotonic() - started)
    # The table first: a file that fails to write at the end loses nothing on the console.
    print_sweep(Console(width=None if sys.stdout.isatty() else 160), report)
    if html_path is not None:
        write_sweep_html(report, html_path)
        console.print(f"HTML report written to {html_path}")
    if json_out is not None:
        try:
            json_out.write_text(report.dumps())
        except OSError as exc:
            raise InputFileError(f"{json_out}: cannot write ({exc.strerror})") from None
        console.print(f"JSON written to {json_out}")
    failed = [c for c in cells if c.error is not None]
    if failed:
        raise KeeperError(f"{len(failed)} of {len(cells)} backtests failed (see the table)")

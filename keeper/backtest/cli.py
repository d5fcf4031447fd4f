"""`keeper backtest`: replay history with the keeper inserted, and report what it earned.

Three sources of history, one report (`keeper.backtest.model.BacktestReport`):

- `--devnet --price-path FILE`: a historical price path driven through the devnet's feeds
  (`keeper.backtest.devnet_replay`); FILE may name a path shipped in keeper/backtest/paths.
- `--rpc URL --from A --to B`: an archive node's blocks replayed on a fork.
- `--tape FILE --from A --to B`: the same, from a tape written by `keeper record`.

The archive replay lives in `keeper.backtest.archive` and is imported only when asked for.
A progress bar runs while replaying; then the console summary, `--html PATH` for the report
with plots, and `--json` for machines (the JSON alone goes to stdout).
"""

from __future__ import annotations

import asyncio
import importlib
import json
from decimal import Decimal
from pathlib import Path

import click
from rich.console import Console

from keeper.backtest.model import BacktestReport
from keeper.backtest.report import (
    ReplayProgress,
    check_writable,
    print_summary,
    timed,
    write_html,
)
from keeper.backtest.sweep_params import DEFAULT_BATCH, Tuning
from keeper.backtest.trial import INSERTS, insert_position
from keeper.cli import AppState
from keeper.demo import DEMO_MIN_PROFIT_USD
from keeper.devnet.deploy import DevnetSpec
from keeper.errors import FatalError, InputFileError, KeeperError
from keeper.log import configure_logging, reset_logging


class BacktestUsageError(FatalError):
    """The options do not describe one backtest (missing source, bad block range...)."""


def _check_source(devnet: bool, price_path: str | None, rpc: str | None, tape: Path | None,
                  blocks: tuple[int | None, int | None]) -> None:
    """One source of history, with what it needs: one clear error otherwise."""
    chosen = [name for name, on in (("--devnet", devnet), ("--rpc", rpc), ("--tape", tape)) if on]
    if len(chosen) != 1:
        raise BacktestUsageError(
            "give exactly one of --devnet --price-path FILE, --rpc URL or --tape FILE"
            + (f" (got {' and '.join(chosen)})" if chosen else ""))
    if devnet and price_path is None:
        raise BacktestUsageError("--devnet needs --price-path FILE")
    if price_path is not None and not devnet:
        raise BacktestUsageError("--price-path drives the devnet: add --devnet")
    first, last = blocks
    if devnet:
        if first is not None or last is not None:
            raise BacktestUsageError("--from/--to select archive blocks; with --devnet use --steps")
        return
    if first is None or last is None:
        raise BacktestUsageError(f"{chosen[0]} needs --from BLOCK and --to BLOCK")
    if first < 0 or last < first:
        raise BacktestUsageError(f"bad block range --from {first} --to {last}: "
                                 "need 0 <= from <= to")


def _run_archive(state: AppState, console: Console, *, rpc: str | None, tape: Path | None,
                 first: int, last: int, insert: str) -> BacktestReport:
    if tape is not None and not tape.is_file():
        raise InputFileError(f"{tape}: tape file not found")
    try:
        archive = importlib.import_module("keeper.backtest.archive")
    except ModuleNotFoundError as exc:
        if exc.name != "keeper.backtest.archive":
            raise
        raise KeeperError("archive replay is not available") from None
    config = state.config() if state.config_path.is_file() else None
    with ReplayProgress(console) as progress:
        report: BacktestReport = asyncio.run(archive.run_archive(
            rpc_url=rpc, tape=tape, from_block=first, to_block=last, insert=insert,
            config=config, progress=progress,
        ))
    return report


class _BacktestGroup(click.Group):
    """`keeper backtest [options]` runs one backtest; `keeper backtest sweep` many, on Ray
    (imported only when asked for: Ray is an optional extra)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return ["sweep"]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name != "sweep":
            return None
        from keeper.backtest.sweep import sweep  # noqa: PLC0415

        return sweep


@click.group("backtest", cls=_BacktestGroup, invoke_without_command=True)
@click.option("--devnet", is_flag=True, help="Replay a price path on the local devnet.")
@click.option("--price-path", metavar="FILE",
              help="time_utc,price[,gas_gwei] CSV, or the name of a shipped path "
                   "(eth_usd_2021-05-19_10min, eth_usd_2020-03-12_10min, steth_eth_2022-06_depeg).")
@click.option("--borrowers", default=300, show_default=True, type=click.IntRange(1, 2000),
              help="Devnet borrower population.")
@click.option("--seed", default=7, show_default=True, type=int, help="Devnet population seed.")
@click.option("--steps", type=click.IntRange(1), help="Play only the first K steps of the path.")
@click.option("--capital", type=click.FloatRange(min=0, min_open=True), metavar="USD",
              help="The liquidator holds this much of each asset (USD at the devnet's starting "
                   "prices) instead of 5M each (--devnet).")
@click.option("--bid-share", type=click.FloatRange(0, 1),
              help="Bid this share of each liquidation's profit as its tip (--devnet; "
                   "default: no bid policy).")
@click.option("--min-profit-usd", type=click.FloatRange(min=0),
              help=f"The keeper's minimum profit, USD (--devnet; {DEMO_MIN_PROFIT_USD} "
                   "by default).")
@click.option("--batch-size", type=click.IntRange(1, 20),
              help=f"The largest flash batch (--devnet; {DEFAULT_BATCH} by default).")
# A devnet profile adds its protocol (keeper.demo_profiles; one flag each, as `keeper demo`).
@click.option("--maker", "profile_name", flag_value="maker", default=None,
              help="Replay on the Maker devnet profile: the keeper also barks, takes, bites "
                   "and bids on Maker's auctions; each step is 10 minutes of chain time "
                   "(--devnet).")
@click.option("--perp", "profile_name", flag_value="perp",
              help="Replay on the Perp v2 devnet profile: each step's vAMM trades follow its "
                   "prices and the keeper liquidates Perp accounts beside the lending "
                   "markets (--devnet).")
@click.option("--rpc", metavar="URL", help="Archive node to replay blocks from.")
@click.option("--tape", type=click.Path(path_type=Path, dir_okay=False),
              help="A tape written by `keeper record`, instead of --rpc.")
@click.option("--from", "first", type=int, help="First block to replay (archive, tape).")
@click.option("--to", "last", type=int, help="Last block to replay (archive, tape).")
@click.option("--insert", type=click.Choice(INSERTS),
              help="Where the keeper's transactions go: after-oracle (in the price update's "
                   "own block, right after it) or next-block (the top of the blocks after "
                   "it). Default: after-oracle for --rpc/--tape, next-block for --devnet.")
@click.option("--html", "html_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the HTML report with plots here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (only that).")
@click.option("--log-file", default="keeper-backtest.log", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The engine's decisions, as JSON lines.")
@click.pass_obj
def backtest(  # noqa: PLR0917 (click passes every option as an argument)
    state: AppState, devnet: bool, price_path: str | None, borrowers: int, seed: int,
    steps: int | None, capital: float | None, bid_share: float | None,
    min_profit_usd: float | None, batch_size: int | None, profile_name: str | None,
    rpc: str | None, tape: Path | None,
    first: int | None, last: int | None, insert: str | None, html_path: Path | None,
    as_json: bool,
    log_file: Path,
) -> None:
    """Replay history with the keeper inserted; report capture rate and PnL.

    `keeper backtest sweep --help`: many price-path backtests at once, on Ray."""
    if click.get_current_context().invoked_subcommand is not None:
        return
    _check_source(devnet, price_path, rpc, tape, (first, last))
    if profile_name is not None and not devnet:
        raise BacktestUsageError(f"--{profile_name} is a devnet profile: add --devnet")
    if capital is not None and not devnet:
        raise BacktestUsageError("--capital sets the devnet liquidator's funds: add --devnet")
    tuned = (bid_share, min_profit_usd, batch_size)
    if not devnet and any(v is not None for v in tuned):
        raise BacktestUsageError("--bid-share, --min-profit-usd and --batch-size tune the "
                                 "devnet keeper: add --devnet")
    tuning = Tuning(None if bid_share is None else Decimal(str(bid_share)),
                    DEMO_MIN_PROFIT_USD if min_profit_usd is None
                    else Decimal(str(min_profit_usd)),
                    DEFAULT_BATCH if batch_size is None else batch_size,
                    insert_position(insert or "next-block"))
    if html_path is not None:
        check_writable(html_path, "the HTML report")
    # Imported here: it pulls in the engine and the devnet, which the archive path does not need.
    from keeper.backtest import devnet_replay, path_file  # noqa: PLC0415
    from keeper.demo_profiles import profile  # noqa: PLC0415

    path = path_file.load_path(path_file.resolve_path(price_path)) if price_path else None
    if path is not None and steps is not None and steps > len(path.points):
        raise BacktestUsageError(f"--steps {steps}: {path.path.name} has only "
                                 f"{len(path.points)} steps")
    try:
        sink = log_file.open("a")
    except OSError as exc:
        raise InputFileError(f"{log_file}: cannot write the log ({exc.strerror})") from None
    console = Console(stderr=as_json)
    # The report is written while the log is open (matplotlib logs as it loads), and the
    # log's handlers go before it closes: a record into a closed file is a traceback.
    with sink:
        configure_logging("json", "info", stream=sink)
        try:
            if path is not None:
                with ReplayProgress(console, unit="steps") as progress:
                    report = devnet_replay.run_price_path(
                        path, spec=DevnetSpec(borrowers=borrowers, seed=seed),
                        max_steps=steps, progress=progress, tuning=tuning,
                        profile=profile(profile_name),
                        capital_usd=Decimal(str(capital)) if capital is not None else None)
            else:
                assert first is not None and last is not None
                report = _run_archive(state, console, rpc=rpc, tape=tape, first=first,
                                      last=last, insert=insert or "after-oracle")
            _output(console, report, html_path, as_json)
        finally:
            reset_logging()


def _output(console: Console, report: BacktestReport, html_path: Path | None,
            as_json: bool) -> None:
    """The summary (or the JSON) first: an HTML report that fails to write loses nothing."""
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        print_summary(console, report)
    if html_path is not None:
        with timed() as took:
            write_html(report, html_path)
        console.print(f"HTML report written to {html_path} in {took[0]:.1f} s")

"""`keeper record --rpc URL --from A --to B --out TAPE`: record what an offline replay needs.

Recording is a replay: the same fork, the same historical blocks and the same keeper
(from the config file, when there is one) as `keeper backtest --rpc`, but the fork reads
the source through a `RecordingProxy`. anvil fetches every account and storage slot it
touches from its fork URL at block A-1 (historical transactions, the keeper's cold start,
its simulations), and `anvil_dumpState` would not give those back (a fork dumps only what
it changed). The proxy writes each answer down; the tape holds them as the state at A-1,
plus the historical blocks (see `keeper.backtest.tape`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import click

from keeper.backtest.archive import (
    FORK_REQUEST_TIMEOUT,
    BacktestError,
    Insert,
    ReplayResult,
    check_range,
    open_archive,
    replay_on_fork,
    start_fork,
)
from keeper.backtest.history import ArchiveHistory, HistoricalBlock
from keeper.backtest.proxy import HistoryTap, RecordingProxy
from keeper.backtest.tape import Parent, TapeHeader, write_tape
from keeper.chain.http import HttpRpc
from keeper.cli import AppState
from keeper.config import KeeperConfig
from keeper.errors import InputFileError


class RecordingHistory:
    """An `ArchiveHistory` that keeps every block it hands out, for the tape."""

    def __init__(self, archive: ArchiveHistory) -> None:
        self.archive = archive
        self.chain_id = archive.chain_id
        self.blocks: dict[int, HistoricalBlock] = {}

    async def block(self, number: int) -> HistoricalBlock:
        block = await self.archive.block(number)
        self.blocks[number] = block
        return block

    async def aclose(self) -> None:
        await self.archive.aclose()


async def record_tape(
    *, rpc_url: str, from_block: int, to_block: int, out: Path, insert: Insert = "after-oracle",
    config: KeeperConfig | None = None, progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Replay [from_block, to_block] from `rpc_url` through a recording proxy; write the tape."""
    if not out.parent.is_dir():
        raise InputFileError(f"{out}: its directory does not exist")
    archive = await open_archive(rpc_url)
    history = RecordingHistory(archive)
    proxy = RecordingProxy(archive.rpc)
    try:
        head = int(await archive.rpc.call("eth_blockNumber", []), 16)
        await check_range(head, from_block, to_block)
        parent_raw = await archive.rpc.call("eth_getBlockByNumber", [hex(from_block - 1), False])
        parent = Parent(int(parent_raw["number"], 16), int(parent_raw["timestamp"], 16),
                        int(parent_raw.get("baseFeePerGas", "0x0"), 16),
                        int(parent_raw["gasLimit"], 16), str(parent_raw["miner"]).lower())
        fork = await start_fork(chain_id=archive.chain_id, fork_url=await proxy.start(),
                                block=from_block - 1)
        tap = HistoryTap(await HttpRpc.open(fork.rpc_url, timeout=FORK_REQUEST_TIMEOUT),
                         from_block - 1)
        try:
            result = await replay_on_fork(
                history, fork, from_block=from_block, to_block=to_block, insert=insert,
                config=config, progress=progress, mode="archive", engine_url=await tap.start())
        finally:
            await tap.aclose()
            with contextlib.suppress(Exception):
                fork.stop()
        keeper = None
        if config is not None and config.account.configured:
            loaded = config.account.load()
            keeper = loaded.address.lower() if loaded is not None else None
        header = TapeHeader(archive.chain_id, from_block, to_block, parent,
                            {"insert": insert, "keeper": keeper, "config": config is not None})
        state = await proxy.state(from_block - 1)
        write_tape(out, header, state, tap.answers,
                   [history.blocks[n] for n in sorted(history.blocks)])
        return result
    finally:
        await proxy.aclose()
        await history.aclose()


@click.command("record")
@click.option("--rpc", "rpc_url", required=True, metavar="URL",
              help="Archive node of the chain to record.")
@click.option("--from", "from_block", required=True, type=int, help="First block to record.")
@click.option("--to", "to_block", required=True, type=int, help="Last block to record.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The tape to write (gzip JSON lines).")
@click.option("--insert", type=click.Choice(["after-oracle", "next-block"]),
              default="after-oracle", show_default=True,
              help="Where the recording keeper's transactions go (replay with the same).")
@click.pass_context
def record(ctx: click.Context, *, rpc_url: str, from_block: int, to_block: int, out: Path,
           insert: str) -> None:
    """Record blocks FROM..TO (raw transactions, logs, the state they read) into a tape,
    for `keeper backtest --tape TAPE` without a node."""
    state = ctx.ensure_object(AppState)
    # The keeper of the config file (if any) runs while recording, so its reads are taped.
    config = state.config() if state.config_path.is_file() else None
    position: Insert = "after-oracle" if insert == "after-oracle" else "next-block"
    if from_block < 1 or to_block < from_block:
        raise BacktestError(f"bad block range {from_block}..{to_block}: need 1 <= FROM <= TO")
    result = asyncio.run(record_tape(rpc_url=rpc_url, from_block=from_block, to_block=to_block,
                                     out=out, insert=position, config=config))
    report = result.report
    click.echo(f"recorded blocks {from_block}..{to_block} ({report.blocks_replayed} blocks, "
               f"{len(report.historical)} historical liquidations) to {out}")

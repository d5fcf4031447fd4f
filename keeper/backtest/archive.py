"""`keeper backtest --rpc URL` / `--tape TAPE`: history replayed block by block on a fork,
with the keeper inserted.

The fork starts at block A-1 (`anvil --fork-url URL --fork-block-number A-1`, or a tape's
recorded state at A-1), with mining off (`--no-mining`), `--order fifo` so a block holds the
pool's transactions in arrival order, `--accounts 0` so anvil does not overwrite the dev
accounts' balances (a devnet archive's senders are dev accounts), and `--no-storage-caching`
(anvil's disk cache is keyed by chain id and block number, which devnets reuse). For each
block A..B: its base fee, timestamp, coinbase and gas limit are set, the
historical block's own signed raw transactions are sent in their original order, and the
block is mined with `evm_mine`: one replayed block per historical block, same numbers.
(prevrandao cannot be set: anvil 1.7 has no `anvil_setPrevRandao`; contracts that read it
may diverge. anvil computes no state root on a fork, so the replayed state is judged by the
receipts root and a balance fingerprint of every account the block touched instead.)

The keeper is the real engine (`keeper_from_config`), reading the fork. After each mined
block it steps, ranks, and its executor signs and sends: those transactions wait in the
pool and open the next block ("next-block" insertion: top of the next block). With
"after-oracle" insertion, a block holding a price-feed update (a log the strategies mark
urgent) is first mined as a trial: up to and including the last feed-update transaction,
on an `evm_snapshot`. The engine steps onto that trial block with deep copies of its books
(so the trial leaves no trace in them), its executor simulates at the trial block and
sends; its transactions are taken from the pool, the fork is reverted, and the block is
rebuilt as: earlier keeper transactions, historical prefix, the keeper's new ones, the
historical rest. Block count and numbers still match history.

A historical transaction that fails on the fork because the keeper took its liquidation
first is expected: that liquidation is "beaten".

This module holds the entry points (`run_archive` for the CLI, `replay_tape`,
`replay_on_fork`); the loop is `keeper.backtest.replay`, the report's figures
`keeper.backtest.tally`, the history sources `keeper.backtest.history` and `.tape`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from keeper.anvil import Anvil
from keeper.backtest.history import ArchiveHistory, BacktestError, History
from keeper.backtest.model import BacktestReport, Mode
from keeper.backtest.proxy import HistoryTap
from keeper.backtest.replay import Progress, Replay, ReplayResult
from keeper.backtest.tape import TapeHistory
from keeper.backtest.trial import Insert
from keeper.chain.http import HttpRpc
from keeper.config import KeeperConfig
from keeper.errors import ChainMismatch
from keeper.run import keeper_from_config
from keeper.wiring import Keeper

__all__ = ["BacktestError", "Insert", "ReplayResult", "replay_on_fork", "replay_tape",
           "run_archive", "start_fork"]


def fork_args(fork_url: str | None, block: int) -> list[str]:
    """anvil flags of a replay fork (see the module docstring); a tape's has no fork URL."""
    replay = ["--no-mining", "--order", "fifo", "--accounts", "0"]
    if fork_url is None:
        return replay
    # --no-storage-caching: anvil's on-disk fork cache is keyed by chain id and block number,
    # which a devnet reuses for different histories; and a recording must see every read.
    return [*replay, "--fork-url", fork_url, "--fork-block-number", str(block),
            "--no-storage-caching"]


# -- entry points -----------------------------------------------------------------------------


FORK_REQUEST_TIMEOUT = 300.0


def _backtest_config(config: KeeperConfig, fork_url: str, chain_id: int, journal: Path
                     ) -> KeeperConfig:
    """`config` pointed at the fork: its only endpoint, sending there ("live" on the fork).

    A fork reads every account and slot it has not seen from the archive (and `record`
    puts a recording proxy in between), so its first answers are slow: the engine gets at
    least `FORK_REQUEST_TIMEOUT` seconds per request instead of failing over to nothing."""
    chain = config.chain.model_copy(update={
        "http_urls": [config.chain.http_urls[0].model_copy(update={"url": fork_url})],
        "ws_url": None, "chain_id": chain_id,
        "request_timeout_seconds": max(config.chain.request_timeout_seconds,
                                       FORK_REQUEST_TIMEOUT)})
    execution = config.execution.model_copy(update={"mode": "live", "journal": journal})
    return config.model_copy(update={"chain": chain, "execution": execution})


async def replay_on_fork(
    history: History, fork: Anvil, *, from_block: int, to_block: int, insert: Insert,
    config: KeeperConfig | None, progress: Progress | None, mode: Mode,
    engine_url: str | None = None,
) -> ReplayResult:
    """Replay on a started fork (at from_block-1) with the keeper of `config` (None: no
    keeper, only the historical blocks and their liquidations). The engine reads the fork
    at `engine_url` when given (a `HistoryTap` in front of it)."""
    if config is not None and config.chain.chain_id != history.chain_id:
        raise ChainMismatch(f"the history is chain {history.chain_id}, but chain.chain_id is "
                            f"{config.chain.chain_id}")
    rpc = await HttpRpc.open(fork.rpc_url, timeout=FORK_REQUEST_TIMEOUT)
    keeper: Keeper | None = None
    with tempfile.TemporaryDirectory(prefix="keeper-backtest-") as scratch:
        try:
            if config is not None:
                cfg = _backtest_config(config, engine_url or fork.rpc_url, history.chain_id,
                                       Path(scratch) / "journal.sqlite")
                keeper, _ = await keeper_from_config(cfg, send=cfg.account.configured,
                                                     keep_outcomes=None)
                await keeper.sync()
            replay = Replay(history, rpc, keeper, insert=insert, from_block=from_block,
                            to_block=to_block, mode=mode, progress=progress)
            return await replay.run(history.chain_id)
        finally:
            if keeper is not None:
                await keeper.aclose()
                if keeper.executor is not None:
                    keeper.executor.journal.close()
            await rpc.aclose()


async def check_range(history_head: int, from_block: int, to_block: int) -> None:
    if from_block < 1 or to_block < from_block:
        raise BacktestError(f"bad block range {from_block}..{to_block}: need 1 <= FROM <= TO")
    if to_block > history_head:
        raise BacktestError(f"block {to_block} is past the source's head {history_head}")


async def open_archive(rpc_url: str) -> ArchiveHistory:
    return ArchiveHistory(await HttpRpc.open(rpc_url, timeout=60))


async def start_fork(*, chain_id: int, fork_url: str | None = None, block: int = -1,
                     load_state: Path | None = None) -> Anvil:
    """A replay fork: of `fork_url` at `block`, or of a tape's state file."""
    anvil = Anvil(args=fork_args(fork_url, block), load_state=load_state, chain_id=chain_id,
                  startup_timeout=120)
    # Blocking start in a thread: the fork may fetch from a server on this event loop.
    return await asyncio.to_thread(anvil.start)


async def replay_tape(
    path: Path, *, from_block: int, to_block: int, insert: Insert,
    config: KeeperConfig | None, progress: Progress | None,
) -> ReplayResult:
    """Replay from a tape, offline: anvil starts from the tape's state at A-1."""
    tape = TapeHistory.open(path)
    header = tape.header
    if from_block != header.from_block or not from_block <= to_block <= header.to_block:
        raise BacktestError(f"{path} holds blocks {header.from_block}..{header.to_block} "
                            f"from the state at {header.from_block - 1}: replay "
                            f"--from {header.from_block} --to N (N <= {header.to_block})")
    with tempfile.TemporaryDirectory(prefix="keeper-tape-") as scratch:
        state = Path(scratch) / "state.json"
        state.write_text(json.dumps(tape.anvil_state()))
        fork = await start_fork(chain_id=tape.chain_id, load_state=state)
        try:
            # A loaded state's clock starts at the wall clock: historical timestamps would be
            # "in the past" for evm_setNextBlockTimestamp. Rewind it to block A-1's.
            fork.rpc("evm_setTime", header.parent.timestamp)
            tap = HistoryTap(await HttpRpc.open(fork.rpc_url, timeout=FORK_REQUEST_TIMEOUT),
                             header.parent.number, tape.history)
            try:
                result = await replay_on_fork(
                    tape, fork, from_block=from_block, to_block=to_block, insert=insert,
                    config=config, progress=progress, mode="tape", engine_url=await tap.start())
            finally:
                await tap.aclose()
        finally:
            with contextlib.suppress(Exception):
                fork.stop()
    if header.settings.get("insert") != insert or (
            header.settings.get("config") and config is None):
        result.report.notes.append(
            f"recorded with insert={header.settings.get('insert')}, "
            f"keeper configured={header.settings.get('config')}: a replay with other settings "
            "may read state the tape lacks (read as zero)")
    return result


async def run_archive(
    *, rpc_url: str | None, tape: Path | None, from_block: int, to_block: int, insert: str,
    config: KeeperConfig | None, progress: Callable[[int, int], None] | None,
) -> BacktestReport:
    """Replay [from_block, to_block] from an archive node (`rpc_url`) or a tape, with the
    keeper of `config` inserted at `insert` ("after-oracle" or "next-block")."""
    if insert not in ("after-oracle", "next-block"):
        raise BacktestError(f"--insert must be after-oracle or next-block, not {insert!r}")
    if (rpc_url is None) == (tape is None):
        raise BacktestError("give exactly one of --rpc and --tape")
    position: Insert = "after-oracle" if insert == "after-oracle" else "next-block"
    if tape is not None:
        return (await replay_tape(tape, from_block=from_block, to_block=to_block,
                                  insert=position, config=config, progress=progress)).report
    assert rpc_url is not None
    history = await open_archive(rpc_url)
    try:
        head = int(await history.rpc.call("eth_blockNumber", []), 16)
        await check_range(head, from_block, to_block)
        fork = await start_fork(chain_id=history.chain_id, fork_url=rpc_url,
                                block=from_block - 1)
        try:
            result = await replay_on_fork(
                history, fork, from_block=from_block, to_block=to_block, insert=position,
                config=config, progress=progress, mode="archive")
        finally:
            with contextlib.suppress(Exception):
                fork.stop()
        return result.report
    finally:
        await history.aclose()


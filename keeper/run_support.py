"""What `keeper run` needs beside the engine: its locks, the stop summary of this run, and
the tokens whose symbols the console shows.

`hold_locks` takes the journal's and the account's OS locks (keeper/lock.py) before
anything is read or sent. `run_summary` turns a `DaemonResult` (this run's `RunTally` from
keeper/monitor.py) into the lines printed at the stop: counts, realized profit and gas in
token units (keeper/units.py), then one line per reason for what was abandoned (claimed,
never sent) and lost. `show_token_names` reads the tokens' symbols for the console, notes
the quote token's symbol and decimals in the journal (for `keeper journal`) and flushes
the console's held-back repeats every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from pathlib import Path

import structlog

from keeper import units
from keeper.config import KeeperConfig
from keeper.execution.journal import Journal, JournalSummary
from keeper.lock import account_lock, journal_lock
from keeper.log import flush_repeats
from keeper.monitor import Monitor, RunTally
from keeper.secrets import keystore_address
from keeper.wiring import Keeper

log = structlog.get_logger(__name__)

def run_summary(result: DaemonResult, *, dry_run: bool = False) -> list[str]:
    """The stop summary of this run only, in token units: a first line with the counts and
    profit, then one line per reason for what was abandoned (claimed, never sent) and lost."""
    tally = result.tally
    counts = tally.counts
    seconds = int(result.seconds)
    took = f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else (
        f"{seconds // 60}m{seconds % 60:02d}s")
    where = " on the fork" if dry_run else ""
    head = ("keeper: stopped; dry run on a local fork; "
            if dry_run else "keeper: stopped; ")
    parts = [f"this run ({took}): {counts['confirmed']} liquidations confirmed{where}",
             f"realized profit{where} {units.amount(tally.realized_profit, None)} net of gas"]
    others = [(name, n) for name, n in (
        ("lost", counts["lost"]), ("abandoned", tally.abandoned),
        ("reverted", counts["reverted"]), ("send refused", counts["send-failed"]),
        ("errors", counts["error"]), ("abandoned in flight", result.left_in_flight)) if n]
    # Gas and the other counts on a line of their own: each fits a terminal's width.
    lines = [head + "; ".join(parts), f"  gas paid {units.native(tally.gas_paid)}" + "".join(
        f", {name} {n}" for name, n in others)]
    for label, reasons in (("abandoned", tally.abandoned_reasons()),
                           ("lost", tally.reasons.get("lost")),
                           ("reverted", tally.reasons.get("reverted")),
                           ("send refused", tally.reasons.get("send-failed"))):
        for reason, n in (reasons or {}).items():
            lines.append(f"  {label} {n}: {reason}")
    if result.left_in_flight:
        lines.append(f"  abandoned in flight {result.left_in_flight}: a second signal cut the "
                     "wait; journaled as sent, the next start follows them up")
    lines.append(f"  journal: {result.journal}")
    return lines


@dataclasses.dataclass(frozen=True)
class DaemonResult:
    """How a daemon run ended: this run's tally, and what was abandoned in flight."""

    summary: JournalSummary  # the journal's whole life (`keeper journal` lists it)
    quote_decimals: int
    abandoned: int = 0  # liquidations in flight when a second signal cut the wait short
    tally: RunTally = dataclasses.field(default_factory=RunTally)
    seconds: float = 0.0
    journal: Path = Path()

    @property
    def left_in_flight(self) -> int:
        return self.abandoned



def dry_run_journal(path: Path) -> Path:
    """The dry-run journal next to the live one: keeper-journal.sqlite -> ….dry-run.sqlite."""
    return path.with_name(f"{path.stem}.dry-run{path.suffix}")


def hold_locks(config: KeeperConfig) -> contextlib.ExitStack:
    """The lock of the journal this run writes and, when sending to the chain, the account's
    (keeper/lock.py); a second keeper on either exits with one line naming the holder's pid.
    A dry run locks its own journal only: it sends on its own fork, with the fork's nonces."""
    stack = contextlib.ExitStack()
    if config.ha is not None and config.execution.mode == "live":
        return stack  # replicas share the account: the leader lease stands in for the locks
    try:
        live = config.execution.mode == "live"
        journal = config.execution.journal
        stack.enter_context(journal_lock(journal if live else dry_run_journal(journal)))
        address = sending_address(config) if live else None
        if address is not None:
            stack.enter_context(account_lock(config.chain.chain_id, address))
    except BaseException:
        stack.close()
        raise
    return stack


def sending_address(config: KeeperConfig) -> str | None:
    """The configured account's address; from a keystore's `address` field when it has one
    (no decryption), else from the key."""
    account = config.account
    if account.keystore is not None:
        stored = keystore_address(account.keystore)
        if stored is not None:
            return stored
    loaded = account.load()
    return loaded.address if loaded is not None else None



def dex_tokens(dex: object, quote: str) -> list[str]:
    """The tokens of the V2 pairs (and of each venue of a `Venues`), for their symbols: those
    paired with the quote token first (the debt and collateral assets that can be sold)."""
    books = getattr(dex, "venues", None) or [dex]
    paired: set[str] = set()
    others: set[str] = set()
    for book in books:
        for pair in getattr(book, "pairs", {}).values():
            tokens = (pair.token0, pair.token1)
            (paired if quote.lower() in tokens else others).update(tokens)
    return sorted(paired) + sorted(others - paired)


FOLLOW_SECONDS = 2.0
FLUSH_SECONDS = 1.0  # a burst's count line comes this soon after it went quiet


async def show_token_names(keeper: Keeper, monitor: Monitor, stack: contextlib.ExitStack
                           ) -> None:
    """Console symbols: the DEX tokens now, then, every `FOLLOW_SECONDS`, the tokens of new
    candidates (`Monitor.unnamed`) that are still unknown; each token is tried once. Also
    points the status line's in-flight count at the keeper, notes the quote token in the
    journal (`note_quote`) and flushes held-back repeats every `FLUSH_SECONDS` (a head may
    be minutes away on a quiet chain). The tasks are cancelled when `stack` closes."""
    quote = keeper.engine.quote_token
    monitor.inflight = lambda: keeper.inflight
    await units.load_tokens(keeper.chain, dex_tokens(keeper.engine.dex, quote), quote)
    journal = keeper.executor.journal if keeper.executor is not None else None
    if type(journal) is Journal:  # SQLite only: keeper journal does not read [ha]'s
        note_quote(journal.path, quote)
    tried: set[str] = set()

    async def follow() -> None:
        while True:
            await asyncio.sleep(FOLLOW_SECONDS)
            fresh = monitor.unnamed - tried
            monitor.unnamed.clear()
            if fresh:
                tried.update(fresh)
                await units.load_tokens(keeper.chain, fresh, quote)

    async def flush() -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            flush_repeats()

    for task in (asyncio.ensure_future(follow()), asyncio.ensure_future(flush())):
        stack.callback(task.cancel)


def note_quote(path: Path, quote: str) -> None:
    """The quote token's address, symbol and decimals in the journal's `meta` table, so
    `keeper journal` shows its amounts in that token offline (a journal written before has
    none: whole units of 18 decimals). Its own short connection: the daemon's is idle now.
    A failure is one warning; the journal's records do not depend on it."""
    known = units.token(quote)
    if known is None:
        return
    rows = [("quote_token", quote.lower()), ("quote_symbol", known.symbol),
            ("quote_decimals", str(known.decimals))]
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as db, db:
            db.executemany("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
                           " DO UPDATE SET value = excluded.value", rows)
    except sqlite3.Error as exc:
        log.warning("cannot note the quote token in the journal", journal=str(path),
                    error=str(exc))

"""`keeper journal`: what the keeper did, read from its journal (and, with `--log`, why).

The journal (keeper/execution/journal.py) holds every liquidation the keeper claimed:
the position, the block it was ranked at, the profit it expected, its status, and each
signed transaction with its fees, gas used and realized profit. This command lists them,
filtered (`--status`, `--strategy`, `--account`, `--from-block`/`--to-block`, `--last`),
as a table in whole quote-token units (the symbol and decimals the daemon noted in the
journal's `meta`, keeper/run_support.py; 18 decimals for a journal without them) or as
`--csv` with the exact integers.

`--missed` is the missed-opportunity report of a daemon: every liquidation it ranked
profitable and did not get (abandoned before sending, dropped, reverted or lost), why, and
what it expected it to pay (its ranked net profit), grouped by reason. The journal keeps
statuses, not reasons: `--log` reads the daemon's JSON log (`--log-format json`) for each
key's last word (no capital, the simulation's revert reason, the node's refusal, the race's
winner); `--log -` reads it from standard input (`journalctl -u keeper -o cat`).
Positions liquidatable but never ranked profitable (worth less than the minimum, sized to
nothing for want of capital, or no exit route) are not journaled: with `--log` they come
from the daemon's "liquidatable, not taken" lines (keeper/passed_over.py), one per
position and episode, in a table of their own with the best net ranking found.

The file is opened read-only: a running keeper's journal can be read while it runs.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from keeper.backtest.units import amount, cell, short
from keeper.cli import AppState
from keeper.errors import ConfigError, InputFileError
from keeper.execution.journal_schema import FORMAT, INTENT_STATUSES
from keeper.passed_over import EVENT as PASSED_OVER

GWEI = 10**9
MISSED = ("abandoned", "dropped", "reverted")
# The daemon's log lines that say why a liquidation did not land: event -> short reason.
REASONS = {
    "not enough debt asset on hand; not sent": "no-capital",
    "simulation reverted; not sent": "simulation-failed",
    "simulation failed after the send": "simulation-failed",
    "send refused by the node": "send-refused",
    "lost the race": "lost",
    "liquidation reverted": "reverted",
    "cancelled: the opportunity was gone": "cancelled",
    "its nonce went to another transaction": "nonce-taken",
}
STATUS_REASONS = {  # without a log: what the status alone says
    "abandoned": "not sent",
    "dropped": "dropped",
    "reverted": "reverted",
    "planned": "in flight",
    "signed": "in flight",
    "sent": "in flight",
}


@dataclass(frozen=True)
class Quote:
    """The token profits are counted in (the daemon notes it in the journal's `meta`)."""

    symbol: str = ""
    decimals: int = 18  # a journal written before the note: the wrapped native coin's

    def whole(self, raw: int) -> str:
        return amount(raw / 10**self.decimals)

    @property
    def label(self) -> str:
        return self.symbol or "quote token"


@dataclass(frozen=True)
class Row:
    """One journaled liquidation with its last transaction (if any)."""

    key: str
    strategy: str
    account: str
    collateral: str
    debt: str
    block: int
    status: str
    attempts: int
    updated_at: float
    debt_to_cover: int
    expected_profit: int
    tx_hash: str | None
    mined_block: int | None
    gas_used: int | None
    max_fee: int | None
    priority_fee: int | None
    realized_profit: int | None
    reason: str = ""
    detail: str = ""
    coinbase_bid: int | None = None  # ether paid to block.coinbase (a bundle's bid)


def read_journal(path: Path) -> list[Row]:
    """Every intent of the journal at `path`, oldest first, each with its newest transaction."""
    return read_journal_quoted(path)[1]


def read_journal_quoted(path: Path) -> tuple[Quote, list[Row]]:
    """The journal's quote token (`read_quote`) and its intents (`read_journal`)."""
    if not path.is_file():
        raise InputFileError(f"journal {path}: no such file")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InputFileError(f"journal {path}: cannot open ({exc})") from None
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT:
            raise InputFileError(f"journal {path}: not a keeper journal")
        rows = db.execute(
            "SELECT i.key, i.strategy, i.account, i.collateral, i.debt, i.block, i.status,"
            " i.attempts, i.updated_at, i.debt_to_cover, i.expected_profit, t.tx_hash,"
            " t.block_number, t.gas_used, t.max_fee, t.priority_fee, t.realized_profit"
            " FROM intents i LEFT JOIN transactions t ON t.rowid = ("
            "  SELECT rowid FROM transactions WHERE intent_key = i.key"
            "  ORDER BY (status IN ('confirmed', 'reverted')) DESC, signed_at DESC, rowid DESC"
            "  LIMIT 1)"
            " ORDER BY i.block, i.updated_at, i.key").fetchall()
        bids = _bids(db)
        quote = read_quote(meta)
    except sqlite3.DatabaseError as exc:
        raise InputFileError(f"journal {path}: not a keeper journal or unreadable ({exc})"
                             ) from None
    finally:
        db.close()
    return quote, [Row(key=r[0], strategy=r[1], account=r[2], collateral=r[3], debt=r[4],
                       block=r[5], status=r[6], attempts=r[7], updated_at=r[8],
                       debt_to_cover=int(r[9]), expected_profit=int(r[10]), tx_hash=r[11],
                       mined_block=r[12], gas_used=r[13],
                       max_fee=None if r[14] is None else int(r[14]),
                       priority_fee=None if r[15] is None else int(r[15]),
                       realized_profit=None if r[16] is None else int(r[16]),
                       reason="" if r[6] == "confirmed" else STATUS_REASONS.get(r[6], r[6]),
                       coinbase_bid=bids.get(r[11]))
                   for r in rows]


def read_quote(meta: dict[str, str]) -> Quote:
    """The quote token the daemon noted (`run_support.note_quote`), if it did."""
    decimals = meta.get("quote_decimals", "")
    if not decimals.isdigit() or int(decimals) > 77:
        return Quote()
    return Quote(meta.get("quote_symbol", "")[:12], int(decimals))


def _bids(db: sqlite3.Connection) -> dict[str, int]:
    """The bid each bundled transaction paid block.coinbase (bundle mode's `bundle_txs`,
    keeper/execution/bundles_journal.py; none in a journal that never sent a bundle)."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "bundle_txs" not in tables:
        return {}
    return {str(h): int(b) for h, b in
            db.execute("SELECT tx_hash, bid FROM bundle_txs WHERE bid IS NOT NULL")}


def read_log(path: Path) -> list[dict[str, Any]]:
    """The daemon's JSON log lines that name a key (`-`: standard input, read once)."""
    try:
        lines = (sys.stdin.read() if str(path) == "-" else
                 path.read_text(errors="replace")).splitlines()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the log ({exc.strerror})") from None
    out: list[dict[str, Any]] = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a console line, or a line cut short by a crash
        if isinstance(entry, dict) and isinstance(entry.get("key"), str):
            out.append(entry)
    return out


def read_reasons(entries: Iterable[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """key -> (short reason, detail): the last word the daemon's JSON log has on each key."""
    out: dict[str, tuple[str, str]] = {}
    for entry in entries:
        event = str(entry.get("event", ""))
        if event == "liquidation confirmed":
            out.pop(entry["key"], None)
        elif event in REASONS:
            detail = entry.get("reason") or entry.get("winner") or entry.get("refusal") or ""
            out[entry["key"]] = (REASONS[event], str(detail))
    return out


def with_reasons(rows: Iterable[Row], reasons: dict[str, tuple[str, str]]) -> list[Row]:
    out = []
    for row in rows:
        found = reasons.get(row.key)
        out.append(row if found is None or row.status == "confirmed"
                   else dataclasses.replace(row, reason=found[0], detail=found[1]))
    return out


def select(rows: Sequence[Row], *, statuses: Sequence[str], strategy: str | None,
           account: str | None, first: int | None, last: int | None, missed: bool,
           newest: int | None) -> list[Row]:
    """The rows the filters keep; `newest`: only the last N of them."""
    kept = [r for r in rows
            if (not statuses or r.status in statuses)
            and (not missed or r.status in MISSED)
            and (strategy is None or r.strategy == strategy)
            and (account is None or r.account.lower() == account.lower())
            and (first is None or r.block >= first)
            and (last is None or r.block <= last)]
    return kept[-newest:] if newest else kept


def _pnl(row: Row, quote: Quote) -> str:
    return "-" if row.realized_profit is None else quote.whole(row.realized_profit)


def _gwei(wei: int | None) -> str:
    return "-" if wei is None else f"{wei / GWEI:,.3g}"


def table(rows: Sequence[Row], quote: Quote = Quote()) -> Table:
    """The liquidations, oldest first; amounts in whole quote tokens, bids in gwei (fits 80
    columns: the strategy, the transaction and the exact integers are in `--csv`)."""
    unit = quote.symbol or "quote-token"
    out = Table(title=f"journal: {len(rows)} liquidations ({unit} amounts, bids in gwei)",
                box=box.SIMPLE_HEAD,
                pad_edge=False, collapse_padding=True)
    right = ("block", "expected", "pnl", "gas used", "bid")
    for column in ("block", "status", "reason", "account", "expected", "pnl", "gas used",
                   "bid"):
        out.add_column(column, justify="right" if column in right else "left", no_wrap=True)
    for r in rows:
        out.add_row(str(r.block), r.status, cell(r.reason or "-"), short(r.account),
                    quote.whole(r.expected_profit), _pnl(r, quote),
                    "-" if r.gas_used is None else f"{r.gas_used:,}", _gwei(r.priority_fee))
    return out


def summary(rows: Sequence[Row], quote: Quote = Quote()) -> str:
    counts = Counter(r.status for r in rows)
    realized = sum(r.realized_profit or 0 for r in rows)
    parts = ", ".join(f"{counts[s]} {s}" for s in INTENT_STATUSES if counts[s])
    shown = f"{quote.whole(realized)} {quote.symbol}" if quote.symbol else (
        f"{quote.whole(realized)} (quote token)")
    line = f"{parts or 'nothing'}; realized {shown}"
    bids = [r.coinbase_bid for r in rows if r.coinbase_bid is not None]
    if bids:  # bundles' bids paid to block.coinbase (per row in --csv)
        line += f"; bids to builders {amount(sum(bids) / 10**18)} (ether)"
    return line


def missed_table(rows: Sequence[Row], quote: Quote = Quote()) -> Table:
    """The missed ones by reason: how many, and what they were expected to pay."""
    out = Table(title="missed: ranked, not liquidated", box=box.SIMPLE_HEAD)
    expected = f"expected ({quote.symbol or 'quote'})"
    for column in ("reason", "count", expected):
        out.add_column(column, justify="left" if column == "reason" else "right")
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(r.reason or r.status, []).append(r)
    ordered = sorted(groups.items(), key=lambda g: -sum(r.expected_profit for r in g[1]))
    for reason, members in ordered:
        out.add_row(cell(reason), str(len(members)),
                    quote.whole(sum(r.expected_profit for r in members)))
    return out


def passed_over_table(entries: Iterable[dict[str, Any]], quote: Quote = Quote(), *,
                      strategy: str | None = None) -> Table:
    """The daemon's "liquidatable, not taken" lines (keeper/passed_over.py) by reason: how
    many positions, and the best net profit ranking found for those it valued (below the
    minimum; negative when no size paid for its gas)."""
    out = Table(title="missed: liquidatable, never ranked profitable", box=box.SIMPLE_HEAD)
    for column in ("reason", "positions", f"best net, summed ({quote.symbol or 'quote'})"):
        out.add_column(column, justify="left" if column == "reason" else "right")
    groups: dict[str, list[int | None]] = {}
    for e in entries:
        if e.get("event") == PASSED_OVER and (strategy is None or e.get("strategy") == strategy):
            best = e.get("net_profit")
            groups.setdefault(str(e.get("reason", "")), []).append(
                int(best) if isinstance(best, int) else None)
    for reason, bests in sorted(groups.items(), key=lambda g: -len(g[1])):
        valued = [b for b in bests if b is not None]
        out.add_row(cell(reason), str(len(bests)), quote.whole(sum(valued)) if valued else "")
    return out


CSV_COLUMNS = ("key", "strategy", "account", "collateral", "debt", "block", "status",
               "reason", "detail", "attempts", "updated_at", "debt_to_cover",
               "expected_profit_wei", "tx_hash", "mined_block", "gas_used", "max_fee_wei",
               "priority_fee_wei", "realized_profit_wei", "coinbase_bid_wei")


def csv_lines(rows: Sequence[Row]) -> Iterator[list[object]]:
    """The rows with exact integers (wei, raw token units) and full hashes."""
    yield list(CSV_COLUMNS)
    for r in rows:
        yield [r.key, r.strategy, r.account, r.collateral, r.debt, r.block, r.status, r.reason,
               r.detail, r.attempts,
               datetime.fromtimestamp(r.updated_at, UTC).isoformat(timespec="seconds"),
               r.debt_to_cover, r.expected_profit, r.tx_hash or "", r.mined_block or "",
               r.gas_used if r.gas_used is not None else "",
               r.max_fee if r.max_fee is not None else "",
               r.priority_fee if r.priority_fee is not None else "",
               r.realized_profit if r.realized_profit is not None else "",
               r.coinbase_bid if r.coinbase_bid is not None else ""]


@click.command("journal")
@click.option("--journal", "journal_path", type=click.Path(path_type=Path, dir_okay=False),
              help="The journal file (default: execution.journal of the config).")
@click.option("--dry-run", is_flag=True, help="Read the dry-run journal beside it.")
@click.option("--log", "log_path", type=click.Path(path_type=Path, dir_okay=False,
                                                   allow_dash=True),
              help="The daemon's JSON log (- reads stdin): each liquidation's reason.")
@click.option("--status", "statuses", multiple=True, type=click.Choice(INTENT_STATUSES),
              help="Only this status (repeatable).")
@click.option("--strategy", help="Only this strategy (e.g. aave_v3).")
@click.option("--account", help="Only this borrower.")
@click.option("--from-block", "first", type=click.IntRange(0), help="Ranked at or after.")
@click.option("--to-block", "last", type=click.IntRange(0), help="Ranked at or before.")
@click.option("--last", "newest", type=click.IntRange(1), help="Only the newest N.")
@click.option("--missed", is_flag=True,
              help="The missed-opportunity report: ranked profitable, not liquidated, why.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with exact integers, to stdout.")
@click.pass_obj
def journal(  # noqa: PLR0917 (click passes every option as an argument)
    state: AppState, journal_path: Path | None, dry_run: bool, log_path: Path | None,
    statuses: tuple[str, ...], strategy: str | None, account: str | None, first: int | None,
    last: int | None, newest: int | None, missed: bool, as_csv: bool,
) -> None:
    """List the journaled liquidations: status, reason, gas, bid and realized PnL."""
    if journal_path is None and not dry_run and state.config().ha is not None:
        raise ConfigError("this config's journal is in PostgreSQL ([ha]); keeper journal reads "
                          "SQLite journals only: read it with psql (tables intents, "
                          "transactions) or give --journal")
    path = journal_path if journal_path is not None else state.config().execution.journal
    if dry_run:
        path = path.with_name(f"{path.stem}.dry-run{path.suffix}")
    quote, rows = read_journal_quoted(path)
    entries = read_log(log_path) if log_path is not None else []
    if log_path is not None:
        rows = with_reasons(rows, read_reasons(entries))
    rows = select(rows, statuses=statuses, strategy=strategy, account=account, first=first,
                  last=last, missed=missed, newest=newest)
    if as_csv:
        csv.writer(sys.stdout, lineterminator="\n").writerows(csv_lines(rows))
        return
    console = Console()
    if missed:
        console.print(missed_table(rows, quote))
        if log_path is not None:
            console.print(passed_over_table(entries, quote, strategy=strategy))
    console.print(table(rows, quote))
    console.print(summary(rows, quote))
    if missed and log_path is None:
        console.print("[dim]reasons: add --log with the daemon's JSON log[/dim]")

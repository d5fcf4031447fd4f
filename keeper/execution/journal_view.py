"""Reading the execution journal: its records, what a restart must recover, and summaries.

`JournalView` holds the queries; `Journal` (keeper/execution/journal.py) is a
view that also writes. Records are frozen snapshots of the rows when read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keeper.execution.journal_schema import INTENT_STATUSES, LIVE_TX


@dataclass(frozen=True, slots=True)
class TxRecord:
    """One signed transaction of an intent."""

    intent_key: str
    tx_hash: str
    nonce: int
    raw_tx: str
    max_fee: int
    priority_fee: int
    status: str
    signed_at: float
    sent_at: float | None
    block_number: int | None
    gas_used: int | None
    realized_profit: int | None


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """One claimed opportunity and the transactions signed for it, oldest first."""

    key: str
    chain_id: int
    strategy: str
    account: str
    collateral: str
    debt: str
    debt_to_cover: int
    expected_profit: int
    block: int
    status: str
    attempts: int
    created_at: float
    updated_at: float
    transactions: tuple[TxRecord, ...]


@dataclass(frozen=True, slots=True)
class JournalSummary:
    """Intent counts by status, and the profit and gas of mined transactions."""

    counts: Mapping[str, int]
    realized_profit: int
    gas_used: int


class JournalView:
    """The read side of a journal's open database."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def get(self, key: str) -> IntentRecord | None:
        """The intent with this opportunity key and its transactions, or None."""
        row = self._db.execute(
            "SELECT key, chain_id, strategy, account, collateral, debt, debt_to_cover,"
            " expected_profit, block, status, attempts, created_at, updated_at"
            " FROM intents WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        rows = self._db.execute(
            f"{_TX_SELECT} WHERE intent_key = ? ORDER BY signed_at, rowid", (key,)
        ).fetchall()
        return IntentRecord(
            key=row[0],
            chain_id=row[1],
            strategy=row[2],
            account=row[3],
            collateral=row[4],
            debt=row[5],
            debt_to_cover=int(row[6]),
            expected_profit=int(row[7]),
            block=row[8],
            status=row[9],
            attempts=row[10],
            created_at=row[11],
            updated_at=row[12],
            transactions=tuple(_tx_record(r) for r in rows),
        )

    def pending(self) -> list[TxRecord]:
        """Transactions signed or sent but not resolved, by nonce: what a restart must recover.

        A 'signed' one may or may not have reached a node before the crash:
        re-broadcast its `raw_tx` (same hash) or wait for its receipt.
        """
        rows = self._db.execute(
            f"{_TX_SELECT} WHERE status IN (?, ?) ORDER BY nonce, signed_at, rowid", LIVE_TX
        ).fetchall()
        return [_tx_record(r) for r in rows]

    def members(self, lead_key: str) -> list[str]:
        """The member keys of the batch `lead_key` leads (empty for a single liquidation)."""
        rows = self._db.execute(
            "SELECT member_key FROM batch_members WHERE lead_key = ? ORDER BY rowid",
            (lead_key,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def max_nonce(self) -> int | None:
        """The highest nonce of any journaled transaction not known to be dropped (for sync)."""
        value = self._db.execute(
            "SELECT MAX(nonce) FROM transactions WHERE status != 'dropped'"
        ).fetchone()[0]
        return None if value is None else int(value)

    def summary(self) -> JournalSummary:
        """Intent counts by status (every status listed), total realized profit and gas used."""
        counts = dict.fromkeys(INTENT_STATUSES, 0)
        for status, count in self._db.execute(
            "SELECT status, COUNT(*) FROM intents GROUP BY status"
        ):
            counts[status] = count
        profit = 0
        gas = 0
        for value, used in self._db.execute(
            "SELECT realized_profit, gas_used FROM transactions"
            " WHERE status IN ('confirmed', 'reverted')"
        ):
            profit += int(value) if value is not None else 0
            gas += used or 0
        return JournalSummary(counts=counts, realized_profit=profit, gas_used=gas)


_TX_SELECT = (
    "SELECT intent_key, tx_hash, nonce, raw_tx, max_fee, priority_fee, status, signed_at,"
    " sent_at, block_number, gas_used, realized_profit FROM transactions"
)


def _tx_record(row: tuple[Any, ...]) -> TxRecord:
    return TxRecord(
        intent_key=row[0],
        tx_hash=row[1],
        nonce=row[2],
        raw_tx=row[3],
        max_fee=int(row[4]),
        priority_fee=int(row[5]),
        status=row[6],
        signed_at=row[7],
        sent_at=row[8],
        block_number=row[9],
        gas_used=row[10],
        realized_profit=None if row[11] is None else int(row[11]),
    )

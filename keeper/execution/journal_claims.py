"""Claiming opportunity keys in the journal, alone or as a batch, and batch-wide status writes.

A claim inserts a 'planned' intent, or takes back one whose status is
'dropped' or 'abandoned' (`attempts` + 1); any other status means the key was
or is being handled. A batch is a *lead* intent that owns the transactions and
*member* intents listed in `batch_members`; every status written to the lead is
written to its members in the same database transaction. These run inside a
write transaction the caller (`Journal`) holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Protocol

from keeper.execution.journal_schema import RETRYABLE, big, sqlite_int, uint


class Claimable(Protocol):
    """What a claim writes of an opportunity (an `Opportunity`, or a claim sent ahead of
    the database: keeper/execution/ahead.py)."""

    @property
    def key(self) -> str: ...
    @property
    def strategy(self) -> str: ...
    @property
    def account(self) -> str: ...
    @property
    def collateral(self) -> str: ...
    @property
    def debt(self) -> str: ...
    @property
    def debt_to_cover(self) -> int: ...
    @property
    def net_profit(self) -> int: ...
    @property
    def block(self) -> int: ...


def claim_key(db: sqlite3.Connection, opportunity: Claimable, chain_id: int, now: float) -> bool:
    """Claim `opportunity.key` as a lone intent; False when it is taken."""
    params = {
        "key": opportunity.key,
        "chain_id": sqlite_int(chain_id, "chain_id"),
        "strategy": opportunity.strategy,
        "account": opportunity.account,
        "collateral": opportunity.collateral,
        "debt": opportunity.debt,
        "debt_to_cover": str(uint(opportunity.debt_to_cover, "debt_to_cover")),
        "expected_profit": str(big(opportunity.net_profit, "net_profit")),
        "block": sqlite_int(opportunity.block, "block"),
        "now": now,
    }
    cursor = db.execute(
        f"""
        INSERT INTO intents (key, chain_id, strategy, account, collateral, debt,
            debt_to_cover, expected_profit, block, status, attempts, created_at,
            updated_at)
        VALUES (:key, :chain_id, :strategy, :account, :collateral, :debt,
            :debt_to_cover, :expected_profit, :block, 'planned', 1, :now, :now)
        ON CONFLICT (key) DO UPDATE SET
            chain_id = excluded.chain_id, strategy = excluded.strategy,
            account = excluded.account, collateral = excluded.collateral,
            debt = excluded.debt, debt_to_cover = excluded.debt_to_cover,
            expected_profit = excluded.expected_profit, block = excluded.block,
            status = 'planned', attempts = intents.attempts + 1, updated_at = :now
        WHERE intents.status IN {RETRYABLE!r}
        """,
        params,
    )
    if cursor.rowcount != 1:
        return False
    # A fresh claim stands alone: forget any batch an earlier attempt put it in.
    db.execute("DELETE FROM batch_members WHERE member_key = ? OR lead_key = ?",
               (opportunity.key, opportunity.key))
    return True


def join_batch(db: sqlite3.Connection, lead_key: str, member_keys: Sequence[str]) -> None:
    """List freshly claimed `member_keys` as members of `lead_key`'s batch."""
    db.executemany(
        "INSERT INTO batch_members (member_key, lead_key) VALUES (?, ?)",
        [(member, lead_key) for member in member_keys],
    )


def set_status(db: sqlite3.Connection, key: str, status: str, now: float) -> None:
    """Set an intent's status, and its batch members' (they share its transactions)."""
    db.execute(
        "UPDATE intents SET status = ?, updated_at = ? WHERE key = ?"
        " OR key IN (SELECT member_key FROM batch_members WHERE lead_key = ?)",
        (status, now, key, key),
    )

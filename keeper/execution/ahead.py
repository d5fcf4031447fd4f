"""Sent ahead of the database: a fired level's first transaction, written to an append-only
file before its broadcast and to the journal's database right after it.

Two SQLite transactions, the claim and the signed record, stood between a feed's log and
the first send of the level it fires: 0.3-0.7 ms with the disk idle, 2-5 ms (once 57 ms)
with it busy (the feed-to-send bench beside a test run). One `write` to a file opened for
appending takes tens of microseconds and does not wait on SQLite's locks. So the first
transaction of an armed volley goes this way (`Volley.launch`, `send_ahead`):

1. at arming, its opportunities' keys were claimable in the journal (`Presigned.claimable`),
   and from then to the fire only this process could take them, through the dispatcher,
   which leaves the accounts its sends hold out of a fired level;
2. its signed bytes, nonce, fees and the claim's fields are appended to `<journal>-ahead`
   (written, not synced: like the database's records of pre-signed sends, they survive the
   process, not a power cut);
3. it is broadcast;
4. the claim, the signed record and (when the node took it) the `sent` mark are written to
   the database in one transaction; the entry is then settled.

At start (`adopt`), an entry whose transaction the database lacks (the process ended
between 2 and 4) is claimed and recorded as signed there, so recovery follows it as any
signed transaction (it re-sends the same bytes: nothing is signed twice for its nonce).
The file is emptied at each checkpoint (between steps) once every entry is settled.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from keeper.execution.journal import Journal, Signed, _mark_sent, _record_signed
from keeper.execution.journal_claims import claim_key, join_batch
from keeper.execution.sender import Presigned
from keeper.types import Opportunity, TxIntent

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Claim:
    """What a claim writes of one opportunity (`claim_key` reads exactly these)."""

    key: str
    strategy: str
    account: str
    collateral: str
    debt: str
    debt_to_cover: int
    net_profit: int
    block: int

    @staticmethod
    def of(opp: Opportunity) -> Claim:
        return Claim(opp.key, opp.strategy, opp.account, opp.collateral, opp.debt,
                     opp.debt_to_cover, opp.net_profit, opp.block)


@dataclass(frozen=True)
class Entry:
    """One transaction sent ahead: its send's claims (lead first) and its signed record."""

    claims: tuple[Claim, ...]
    chain_id: int
    nonce: int
    tx_hash: str
    raw: str
    max_fee: int
    priority_fee: int

    @property
    def signed(self) -> Signed:
        return Signed(self.claims[0].key, self.nonce, self.tx_hash, self.raw, self.max_fee,
                      self.priority_fee)


class AheadLog:
    """The append-only file of one journal's transactions sent ahead of its database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.unsettled = 0  # entries written whose database write has not happened yet
        self.adopted = False  # an earlier run's entries are in the database (`adopt` ran)
        self._fd: int | None = None  # opened at the first entry

    def write(self, entry: Entry) -> bool:
        """Append `entry` (one `write`; the caller broadcasts after it returns True).
        False when the file cannot take it (the caller sends the database way)."""
        # Each entry starts a line of its own: one cut short never runs into the next. The
        # fields are read as they are (`asdict` deep-copies them: ~75 us against ~25 us, on
        # the way to a fired level's first send); `entries` reads the same JSON back.
        data = ("\n" + json.dumps({**vars(entry), "claims": [vars(c) for c in entry.claims]})
                ).encode()
        try:
            written = os.write(self.open(), data)
        except OSError as exc:
            log.warning("cannot write ahead of the journal", path=str(self.path),
                        error=str(exc))
            return False
        if written != len(data):  # cut short (a full disk): not an entry
            return False
        self.unsettled += 1
        return True

    def open(self) -> int:
        """The file's descriptor, opened (and created) if it is not yet."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self._fd

    def settled(self) -> None:
        """An entry's database write is done."""
        self.unsettled -= 1

    def entries(self) -> list[Entry]:
        """The entries on file (a line cut short by the end of the process is skipped)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            if not line:
                continue
            try:
                raw = json.loads(line)
                claims = tuple(Claim(**c) for c in raw.pop("claims"))
                out.append(Entry(claims=claims, **raw))
            except (ValueError, TypeError, KeyError):
                continue
        return out

    def clear(self) -> None:
        """Empty the file, if every entry is settled (the database holds them all, an
        earlier run's too)."""
        if self.adopted and self.unsettled == 0 and self.path.exists():
            os.truncate(self.path, 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def ahead_log(journal: Journal) -> AheadLog:
    """`journal`'s ahead file, next to its database."""
    return AheadLog(Path(f"{journal.path}-ahead"))


def settle(journal: Journal, entry: Entry, *, sent: bool, durable: bool) -> bool:
    """Step 4: the entry's claims, signed record and (`sent`) mark in one transaction.
    False when a key was taken meanwhile (it should not be: see the module docstring); the
    signed record is then left out, and the caller logs it."""
    try:
        with journal._write(durable=durable) as db:
            now = journal._clock()
            if not all(claim_key(db, c, entry.chain_id, now) for c in entry.claims):
                raise _Taken  # rolls back the claims made
            if len(entry.claims) > 1:
                join_batch(db, entry.claims[0].key, [c.key for c in entry.claims[1:]])
            _record_signed(db, entry.signed, now)
            if sent:
                _mark_sent(db, entry.claims[0].key, entry.tx_hash, now)
    except _Taken:
        return False
    return True


class _Taken(Exception):
    """A key of an entry sent ahead was taken in the database."""


def adopt(journal: Journal, log_file: AheadLog) -> int:
    """At start: each entry whose transaction the database lacks is claimed (or, already
    claimed by the same run, kept) and recorded as signed, synced; then the file is emptied.
    Returns how many were adopted."""
    entries = log_file.entries()
    log_file.adopted = not entries
    log_file.open()  # now: creating the file took 1-2 ms at the first send
    if not entries:
        return 0
    known = {str(h) for (h,) in journal._db.execute("SELECT tx_hash FROM transactions")}
    adopted = 0
    with journal._write(durable=True) as db:
        now = journal._clock()
        for entry in entries:
            adopted += entry.tx_hash not in known and adopt_entry(db, entry, now)
    log_file.adopted = True
    log_file.clear()
    if adopted:
        log.warning("journal: transactions an earlier run sent ahead of the journal's "
                    "database are recorded now, and followed", count=adopted)
    return adopted


def adopt_entry(db: sqlite3.Connection, entry: Entry, now: float) -> bool:
    """Inside an adoption's write: `entry`'s claims taken (or, already claimed by the same
    run, kept) and its transaction recorded as signed; False when its intent is finished."""
    lead = entry.claims[0].key
    status = db.execute("SELECT status FROM intents WHERE key = ?", (lead,)).fetchone()
    if status is None or status[0] in ("dropped", "abandoned"):
        for claim in entry.claims:
            claim_key(db, claim, entry.chain_id, now)
        if len(entry.claims) > 1:
            join_batch(db, lead, [c.key for c in entry.claims[1:]])
    elif status[0] not in ("planned", "signed", "sent"):
        log.warning("a transaction sent ahead of the journal belongs to a finished intent; "
                    "not adopted", key=lead, tx=entry.tx_hash)
        return False
    _record_signed(db, entry.signed, now)
    return True


def claimable(journal: Journal, keys: Sequence[str]) -> set[str]:
    """The `keys` a claim would take now: not in the journal, or dropped or abandoned."""
    marks = ",".join("?" * len(keys))
    taken = {str(k) for (k,) in journal._db.execute(
        f"SELECT key FROM intents WHERE key IN ({marks})"
        " AND status NOT IN ('dropped', 'abandoned')", list(keys))} if keys else set()
    return set(keys) - taken


def entry_of(intent: TxIntent, chain_id: int, nonce: int, ready: Presigned) -> Entry:
    """The entry of `intent` sent as `ready` signed it."""
    return Entry(tuple(Claim.of(o) for o in intent.opportunities), chain_id, nonce,
                 ready.tx_hash, ready.raw, ready.max_fee, ready.priority_fee)

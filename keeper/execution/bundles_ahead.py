"""Backruns sent ahead of the database: an armed level's first bundle behind an oracle
transaction, written to an append-only file before it leaves and to the journal's database
right after, as `keeper/execution/ahead.py` does for a public volley's first transaction.

Between a hint (or a pending `transmit`) and the first bundle, the claim of the first
wave's keys (one SQLite transaction) took 1.2-9 ms and its signed records 0.6 ms more, on
the 2 shared cores of the auction benchmark: the largest part of the keeper's time to the
builder once a level was ready. One `write` to a file opened for appending takes tens of
microseconds. So, behind a backrun, the first wave of an armed level goes this way
(`AheadSubmitter`):

1. at arming, its keys were claimable in the journal (`LanePresigned.claimable`), and from
   then to the fire only this process could take them, through the dispatcher, which
   leaves the accounts its sends hold out of a fired level (as for ahead.py); the keys are
   state-bound, so a liquidation of ours that landed since has other keys;
2. each transaction is laned, reserved and signed (or taken as signed ahead) as before;
   its claims, signed bytes, nonce, fees, lane and target blocks are appended to
   `<journal>-bundles-ahead` in one write (not synced: like the records of signed-ahead
   bundles, they survive the process, not a power cut);
3. the bundle leaves;
4. before any other write of the launch (the rest's claims, the `sent` marks) and before a
   later dispatch extends their target blocks, the claims, the signed records and the
   bundle rows are written to the database in one transaction (`settle`), then synced
   with the `sent` marks once the bundles are out.

A first-wave intent that does not leave after all (no free lane at the fire, the fee cap,
no capital, a failed signature) gives back its claim, held in memory only
(`AheadSubmitter._abandon`): the database has no row of it to mark abandoned.

At start (`adopt`, before any lane's nonce stream is synced), an entry whose transaction
the database lacks (the process ended between 2 and 4) is claimed and recorded with its
bundle row, synced: the lane's nonce stays taken and `BundleSubmitter.recovery` follows the
transaction to its last target block, as any bundled transaction of an earlier run. The
file is emptied between steps once every entry is settled.

If the write fails (a full disk), the wave is claimed and recorded the database way before
its bundle leaves, as without this file.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from keeper.execution.ahead import AheadLog, Claim, Entry, adopt_entry, claimable
from keeper.execution.bundles import BundleSubmitter
from keeper.execution.bundles_journal import BundleBook
from keeper.execution.bundles_presign import LanePresigned
from keeper.execution.bundles_send import Backrun, Live
from keeper.execution.journal import (
    Journal,
    JournalStateError,
    _mark_sent,
    _record_signed,
)
from keeper.execution.journal_claims import claim_key, join_batch
from keeper.execution.journal_schema import sqlite_int
from keeper.execution.sender import Presigned
from keeper.execution.volley import Follow
from keeper.types import TxIntent

log = structlog.get_logger(__name__)

_ROW = ("INSERT INTO bundle_txs (tx_hash, sender, first_block, last_block)"
        " VALUES (?, ?, ?, ?)")


@dataclass(frozen=True)
class BundleEntry(Entry):
    """One bundled transaction sent ahead: an `Entry` (its send's claims, lead first, and its
    signed record), the lane that signed it and the blocks its bundles target."""

    sender: str
    first_block: int
    last_block: int

    @staticmethod
    def of(live: Live, chain_id: int) -> BundleEntry:
        assert live.intent is not None  # a fresh send, not a recovered one
        tx = live.tx
        return BundleEntry(tuple(Claim.of(o) for o in live.intent.opportunities), chain_id,
                           tx.nonce, tx.tx_hash, tx.raw_tx, tx.max_fee, tx.priority_fee,
                           live.lane.address, tx.first_block, tx.last_block)


class BundleAheadLog(AheadLog):
    """The append-only file of one journal's bundled transactions sent ahead of it."""

    def write_all(self, entries: Sequence[BundleEntry]) -> bool:
        """Append `entries` in one `write`; False when the file cannot take them."""
        data = "".join("\n" + json.dumps({**vars(e), "claims": [vars(c) for c in e.claims]})
                       for e in entries).encode()
        try:
            written = os.write(self.open(), data)
        except OSError as exc:
            log.warning("cannot write bundles ahead of the journal", path=str(self.path),
                        error=str(exc))
            return False
        if written != len(data):  # cut short: the entries on file are read back whole
            return False
        self.unsettled += len(entries)
        return True

    def bundle_entries(self) -> list[BundleEntry]:
        """The entries on file (a line cut short by the end of the process is skipped)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                raw: dict[str, Any] = json.loads(line) if line else {}
                claims = tuple(Claim(**c) for c in raw.pop("claims"))
                out.append(BundleEntry(claims=claims, **raw))
            except (ValueError, TypeError, KeyError):
                continue
        return out


def bundles_ahead_log(journal: Journal) -> BundleAheadLog:
    return BundleAheadLog(Path(f"{journal.path}-bundles-ahead"))


def settle(book: BundleBook, entries: Sequence[BundleEntry], *, sent: bool,
           durable: bool) -> list[str]:
    """Step 4: each entry's claims, signed record and bundle row (and `sent` mark) in one
    transaction. Returns the lead keys of entries whose keys were taken meanwhile (they
    should not be: see the module docstring); those are left out."""
    journal, taken = book.journal, []
    with journal._write(durable=durable) as db:
        now = journal._clock()
        for entry in entries:
            db.execute("SAVEPOINT entry")
            if not all(claim_key(db, c, entry.chain_id, now) for c in entry.claims):
                db.execute("ROLLBACK TO entry")
                taken.append(entry.claims[0].key)
                continue
            if len(entry.claims) > 1:
                join_batch(db, entry.claims[0].key, [c.key for c in entry.claims[1:]])
            _record_signed(db, entry.signed, now)
            db.execute(_ROW, (entry.tx_hash, entry.sender.lower(),
                              sqlite_int(entry.first_block, "block"),
                              sqlite_int(entry.last_block, "block")))
            if sent:
                _mark_sent(db, entry.claims[0].key, entry.tx_hash, now)
            db.execute("RELEASE entry")
    return taken


def adopt(book: BundleBook, log_file: BundleAheadLog) -> int:
    """At start: each entry whose transaction the database lacks is claimed (or, claimed by
    the same run, kept) and recorded with its bundle row, synced; then the file is emptied.
    Returns how many were adopted."""
    entries = log_file.bundle_entries()
    log_file.adopted = not entries
    log_file.open()
    if not entries:
        return 0
    journal = book.journal
    known = {str(h) for (h,) in journal._db.execute("SELECT tx_hash FROM transactions")}
    adopted = 0
    with journal._write(durable=True) as db:
        now = journal._clock()
        for entry in entries:
            if entry.tx_hash in known or not adopt_entry(db, entry, now):
                continue
            db.execute(_ROW, (entry.tx_hash, entry.sender.lower(),
                              sqlite_int(entry.first_block, "block"),
                              sqlite_int(entry.last_block, "block")))
            adopted += 1
    log_file.adopted = True
    log_file.clear()
    if adopted:
        log.warning("journal: bundled transactions an earlier run sent ahead of the "
                    "journal's database are recorded now, and followed", count=adopted)
    return adopted


class AheadSubmitter(BundleSubmitter):
    """A `BundleSubmitter` whose armed backruns' first wave goes ahead of the database (the
    module docstring). The launch is `BundleLauncher.launch`'s; this class takes over its
    first-wave claim (`_claim`), that wave's records (`_journal_group`), and writes what
    is pending to the database once its bundle is out (`_behind`), or before the launch's
    next write if that comes first (`_claim` of the rest, `_union` of a later dispatch)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ahead_log = bundles_ahead_log(self.executor.journal)
        self.sent_ahead = 0  # transactions whose bundle left before their database write
        self._next: Sequence[TxIntent] = ()  # the first wave `launch` is about to claim
        self._unclaimed: dict[str, TxIntent] = {}  # by lead key: claimed in memory only
        self._pending: dict[str, BundleEntry] = {}  # by tx hash: on file, not in the database

    def adopt(self) -> int:
        """An earlier run's entries, before any lane's nonce stream is synced."""
        return adopt(self.book, self.ahead_log)

    def clear(self) -> None:
        """Between steps: the file emptied once every entry is settled."""
        self.ahead_log.clear()

    async def presign(
        self, intents: Sequence[TxIntent], base_fee: int,
        known: Mapping[str, Presigned] | None = None,
    ) -> tuple[int, dict[str, Presigned]]:
        """As `BundleSubmitter.presign`, each marked `claimable` if its send's keys were
        free in the journal now (step 1)."""
        first, signed = await super().presign(intents, base_fee, known)
        keys = {i.opportunity.key: [o.key for o in i.opportunities] for i in intents}
        wanted = [k for lead in signed for k in keys.get(lead, ())]
        free = claimable(self.executor.journal, wanted)
        return first, {lead: _marked_claimable(p, all(k in free for k in keys.get(lead, ())))
                       for lead, p in signed.items()}

    async def launch(
        self, intents: Sequence[TxIntent], base_fee: int, backrun: Backrun | None = None,
        presigned: Mapping[str, Presigned] | None = None,
    ) -> list[Follow]:
        wave_keys: list[str] = []
        if backrun is not None and presigned:
            # The first wave is what was signed ahead (`BundleLauncher.launch`); it is
            # claimed before the launch's first await, so no other launch runs in between.
            wave = next((n for n, i in enumerate(intents)
                         if i.opportunity.key not in presigned), len(intents))
            if wave and all(getattr(presigned[i.opportunity.key], "claimable", False)
                            for i in intents[:wave]):
                self._next = intents[:wave]
                wave_keys = [i.opportunity.key for i in self._next]
        try:
            return await super().launch(intents, base_fee, backrun, presigned)
        finally:
            self._next = ()
            # A first-wave intent not journaled by now never left (a cancelled launch):
            # its claim was in memory only, and a later send of the key is claimed anew.
            for key in wave_keys:
                self._unclaimed.pop(key, None)

    def _abandon(self, key: str) -> None:
        # A first-wave intent that will not be sent (no free lane, fee cap, no capital, a
        # failed signature) was claimed in memory only: the database has no row to mark
        # (marking it raised "no intent with key" and lost the outcome), and left in
        # memory its key would later skip the database claim (`_journal_group`).
        if self._unclaimed.pop(key, None) is None:
            super()._abandon(key)

    def _claim(self, intents: Sequence[TxIntent]) -> list[bool]:
        if self._next and len(intents) == len(self._next) and all(
                a is b for a, b in zip(intents, self._next, strict=True)):
            self._next = ()
            self._unclaimed.update((i.opportunity.key, i) for i in intents)
            return [True] * len(intents)
        self._settle(list(self._pending.values()))
        return super()._claim(intents)

    def _journal_group(self, group: list[Live], *, durable: bool = True) -> None:
        if not group or any(live.key not in self._unclaimed for live in group):
            super()._journal_group(group, durable=durable)
            return
        for live in group:
            del self._unclaimed[live.key]
        entries = [BundleEntry.of(live, self.executor.chain.chain_id) for live in group]
        if self.ahead_log.write_all(entries):
            self._pending.update((e.tx_hash, e) for e in entries)
            self.sent_ahead += len(entries)
            return
        # The file cannot take them: claimed and recorded the database way, before the
        # bundle leaves (a failed record gives the nonces and lanes back).
        claimed = super()._claim([live.intent for live in group if live.intent is not None])
        if not all(claimed) or len(claimed) != len(group):
            for live in group:
                live.lane.nonces.release(live.tx.nonce)
                live.lane.let_go(live.tx.tx_hash)
            raise JournalStateError("journal: a key of a bundle signed ahead was taken")
        super()._journal_group(group, durable=durable)

    def _union(self, target: str, new: list[Live]) -> list[Live]:
        # Extending an earlier dispatch's target blocks writes its rows: they exist first.
        earlier = {live.tx.tx_hash for live in self._groups.get(target, ())}
        self._settle([e for h, e in self._pending.items() if h in earlier])
        return super()._union(target, new)

    def _behind(self, new: list[Live], backrun: Backrun, follows: list[Follow], *,
                wave: int, durable: bool = False,
                journaled: bool = False) -> list[asyncio.Task[None]]:
        sending = super()._behind(new, backrun, follows, wave=wave, durable=durable,
                                  journaled=journaled)
        mine = [h for h in (live.tx.tx_hash for live in new) if h in self._pending]
        if mine:  # once their bundle is out (before the launch marks them sent)
            def written(_: object) -> None:
                self._settle([self._pending[h] for h in mine if h in self._pending])

            if sending:
                sending[0].add_done_callback(written)
            else:
                written(None)
        return sending

    def _settle(self, entries: list[BundleEntry]) -> None:
        """`entries` (on file) into the database (step 4), unsynced: the launch's `sent`
        marks sync them."""
        if not entries:
            return
        for entry in entries:
            self._pending.pop(entry.tx_hash, None)
        try:
            taken = settle(self.book, entries, sent=False, durable=False)
        except Exception:
            log.exception("bundles sent ahead not written to the journal's database; "
                          "a restart adopts them from the file", count=len(entries))
            return
        for _ in entries:
            self.ahead_log.settled()
        for key in taken:
            log.error("a key sent ahead in a bundle was taken in the journal", key=key)


def _marked_claimable(signed: Presigned, claimable: bool) -> Presigned:
    if isinstance(signed, LanePresigned) and signed.claimable != claimable:
        return LanePresigned(signed.to, signed.data, signed.gas, signed.nonce, signed.max_fee,
                             signed.priority_fee, signed.tx_hash, signed.raw, claimable,
                             signer=signed.signer)
    return signed

"""The one owner of the sending account's nonce.

Every transaction the keeper signs takes its nonce from a single
`NonceManager`; nothing else counts nonces (no module globals, no
`eth_getTransactionCount` before each send). The manager is synced at
start-up, and again after the node rejects a nonce, from the larger of the
chain's pending nonce and one past the highest nonce in the journal: the
journal knows of transactions that were signed but may not have reached the
node before a crash.

Rules:

- `reserve()` hands out nonces one at a time under an `asyncio.Lock`, so
  concurrent callers get distinct, contiguous nonces.
- `release(nonce)` gives back a nonce whose transaction was *never
  broadcast* (signing failed, simulation failed, the send was refused). The
  lowest released nonce is handed out again by the next `reserve()` before
  any new one, so a released nonce never leaves a gap that would hold up
  every later transaction. Releasing a nonce that may have reached a node is
  wrong: use a replacement transaction with the same nonce instead.
- `confirm(nonce)` records that a transaction with this nonce was mined (it
  succeeded or reverted: either way the nonce is used up).
- `reissue(nonce)` gives back a nonce whose signed transaction can no longer be
  mined although it left the keeper: a private bundle whose last target block
  passed without it, the chain's nonce still below it. Only then: while any
  bundle holding it can still land, the nonce stays taken (keeper/execution/bundles.py).

Each nonce lane (keeper/execution/lanes.py: one more signing account) has its own
manager, synced from that account's chain nonce and its own journaled transactions.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Awaitable, Callable


class NonceManager:
    """Nonces of one sending account: synced from chain and journal, reserved one by one."""

    def __init__(self, account: str | None = None) -> None:
        self.account = account
        self._lock = asyncio.Lock()
        self._next: int | None = None
        self._released: list[int] = []  # a min-heap of nonces to hand out again
        self._in_flight: set[int] = set()
        self._confirmed: int | None = None

    @property
    def next_nonce(self) -> int | None:
        """The nonce after the highest one handed out so far (None before `sync`)."""
        return self._next

    @property
    def in_flight(self) -> tuple[int, ...]:
        """Nonces reserved and neither released nor confirmed, lowest first."""
        return tuple(sorted(self._in_flight))

    @property
    def highest_confirmed(self) -> int | None:
        """The highest nonce passed to `confirm`, if any."""
        return self._confirmed

    async def sync(
        self, fetch_pending_nonce: Callable[[], Awaitable[int]], journal_max_nonce: int | None
    ) -> int:
        """Set the next nonce to max(chain pending nonce, journal max + 1) and return it.

        `fetch_pending_nonce` is typically `eth_getTransactionCount(account,
        "pending")`. Call this when no reservation is outstanding: in-flight
        reservations are forgotten. Released nonces the chain has not used yet
        and that lie below the new next nonce are kept, to be handed out first.
        """
        async with self._lock:
            chain_nonce = await fetch_pending_nonce()
            if chain_nonce < 0:
                raise ValueError(f"the chain reported a negative nonce: {chain_nonce}")
            if journal_max_nonce is not None and journal_max_nonce < 0:
                raise ValueError(f"journal max nonce must not be negative: {journal_max_nonce}")
            journal_next = -1 if journal_max_nonce is None else journal_max_nonce + 1
            new_next = max(chain_nonce, journal_next)
            self._released = [n for n in self._released if chain_nonce <= n < new_next]
            heapq.heapify(self._released)
            self._in_flight.clear()
            self._next = new_next
            return new_next

    async def skip_to(self, chain_nonce: int) -> None:
        """The node said a nonce is used: hand out nothing below `chain_nonce` again
        (reservations in flight keep theirs; released nonces below it are forgotten)."""
        async with self._lock:
            self._released = [n for n in self._released if n >= chain_nonce]
            heapq.heapify(self._released)
            if self._next is None or chain_nonce > self._next:
                self._next = chain_nonce

    async def reserve(self) -> int:
        """A nonce no other caller holds: the lowest released one, else the next new one."""
        async with self._lock:
            if self._next is None:
                raise RuntimeError("NonceManager.reserve() called before sync()")
            if self._released:
                nonce = heapq.heappop(self._released)
            else:
                nonce = self._next
                self._next += 1
            self._in_flight.add(nonce)
            return nonce

    def release(self, nonce: int) -> None:
        """Give back a reserved nonce whose transaction was never broadcast; it is reused next."""
        if nonce not in self._in_flight:
            raise ValueError(f"nonce {nonce} is not reserved, so it cannot be released")
        self._in_flight.discard(nonce)
        heapq.heappush(self._released, nonce)

    def confirm(self, nonce: int) -> None:
        """Record that a transaction with this nonce was mined; the nonce is used for good.

        Nonces of transactions sent before a restart (found in the journal) may
        be confirmed without having been reserved here.
        """
        self._in_flight.discard(nonce)
        if nonce in self._released:
            self._released.remove(nonce)
            heapq.heapify(self._released)
        if self._confirmed is None or nonce > self._confirmed:
            self._confirmed = nonce
        if self._next is not None and nonce >= self._next:
            self._next = nonce + 1

    def reissue(self, nonce: int) -> None:
        """A nonce whose transaction left the keeper but can never be mined (its bundles
        expired unincluded and the chain has not used it): handed out again first. Unlike
        `release`, it need not have been reserved in this run (a restart recovers it)."""
        self._in_flight.discard(nonce)
        used = self._confirmed is not None and nonce <= self._confirmed
        if self._next is None or nonce >= self._next or used or nonce in self._released:
            return
        heapq.heappush(self._released, nonce)

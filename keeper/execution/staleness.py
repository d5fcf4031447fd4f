"""When a liquidation valued at a head is too old to send: a price rose since, or the next
block has most likely been mined without it.

A ranking is valid for the block after the head it was valued at. Two things make a send
of it revert although nothing of ours or of a rival touched the account:

* a feed posted a higher answer in a later block (`rose`, told by the prepared
  liquidations when the feed's log is heard, before its block's step is applied): the
  position may be healthy again;
* the next block was mined before the send left (a crash's later waves, ranked and sent
  over more than a block time under load): the send lands a block later, behind whatever
  that block posted, which the keeper has not heard yet when it sends. Alone in a devnet
  crash with one-second blocks, every remaining revert was such a send: issued 0-30 ms
  after the block holding a feed's rise was sealed, before its log arrived.

The second is judged by the clock: a head's next block is due a block time after the head
was sealed, and a send valued at that head is not issued more than `deadline` seconds
after it (`execution.send_deadline_blocks` x `chain.block_time_seconds`, by default 0.95
of a block time). When the head was sealed is read from when it was first heard, and,
since a loop busy with a crash block hears the next head late (alone in a one-second
devnet crash, the last revert left was a send issued after the next block's seal but
within 0.95 s of hearing its head), from the chain's rhythm: block n is sealed at the
latest `block_time` x (n - m) after any recent head m was heard. A reading more than half
a block time before head n itself was heard is not taken (a chain without a rhythm, e.g.
one mining as transactions arrive after a quiet spell, must not cut sends short).

What is not sent is left to the next step's ranking, which values it on the newer block:
it would have landed in that block's successor anyway. Bundles do not use the clock: a
builder drops a bundle that reverts and a bundle names its blocks.
"""

from __future__ import annotations

import time

HEARD_KEPT = 64  # heads whose arrival time is kept
RHYTHM_HEADS = 8  # the recent heads a seal time is read from (few: clocks drift)
EARLIEST_SEAL = 0.5  # block times before it was heard that a head can be taken as sealed


class Staleness:
    """What the dispatcher and the volley ask before a send leaves (see the docstring)."""

    def __init__(self, deadline: float | None = None, block_time: float | None = None) -> None:
        self.deadline = deadline  # seconds after a head was sealed; None: no deadline
        self.block_time = block_time  # None: a head is taken as sealed when heard
        self.rose_at = 0  # the last block in which a feed posted a higher answer
        self._heard: dict[int, float] = {}  # head -> time.perf_counter() first heard

    def heard_head(self, number: int, at: float | None = None) -> None:
        """A head (or a log of its block) arrived (at `time.perf_counter()` `at`, default
        now): its next block is due a block time on."""
        if number in self._heard:
            return
        self._heard[number] = time.perf_counter() if at is None else at
        if len(self._heard) > HEARD_KEPT:
            for old in sorted(self._heard)[:-HEARD_KEPT]:
                del self._heard[old]

    def rose(self, block: int) -> None:
        """A feed posted a higher answer in `block`."""
        self.rose_at = max(self.rose_at, block)

    def stale(self, block: int, *, clock: bool = True) -> str | None:
        """Why a send valued at `block` must not leave now, or None (`clock`: the next
        block's deadline counts too)."""
        if block < self.rose_at:
            return "price rose since valued"
        if clock and self.deadline is not None:
            sealed = self.sealed(block)
            if sealed is not None and time.perf_counter() - sealed > self.deadline:
                return "next block due since valued"
        return None

    def sealed(self, block: int) -> float | None:
        """When head `block` was most likely sealed (`time.perf_counter()`), None if it was
        never heard: see the module docstring."""
        heard = self._heard.get(block)
        if heard is None or self.block_time is None:
            return heard
        earliest = heard - EARLIEST_SEAL * self.block_time
        return min([heard, *(due for n, t in self._heard.items() if block - RHYTHM_HEADS <= n
                             if (due := t + (block - n) * self.block_time) >= earliest)])

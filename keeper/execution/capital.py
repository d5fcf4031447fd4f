"""The sending account's capital: token balances, and what sends in flight have reserved.

`available` reads every asked token's balance and the native balance in one
batch (at the engine's head, after the `follow` hook); `reserve` takes a send's
repay amount out of the last read without another read, so concurrent sends
share one balance; `release` gives it back when the send is settled.

Off the critical path: balances change only when a send of ours is mined (a transfer to
us only adds), so a read stays current until one of our sends settles, and `available`
answers from it without a round trip. When one settles (`release` after its receipt), the
balances are read again in the background at once, for the next step; `available` waits
for that read if it is still running. A read that a settlement overtook is not trusted.
With a `follow` hook (the dry-run fork moves to the engine's head first) every
`available` reads, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import structlog
from eth_abi.abi import encode

from keeper.chain.http import HttpRpc

log = structlog.get_logger(__name__)

BALANCE_OF = "0x70a08231"


class Capital:
    """Balances of one account and the amounts of each token committed to sends in flight."""

    def __init__(
        self, chain: HttpRpc, address: str, *,
        follow: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.chain = chain
        self.address = address
        # Called with the engine's head before each balance read: a dry-run fork uses
        # it to move itself to that block while nothing is in flight on it.
        self._follow = follow
        self.native_balance: int | None = None  # read with the token balances
        self._balances: dict[str, int] = {}  # one per token ever read (the markets' assets)
        # token -> amount reserved by sends in flight; a token leaves when none holds any
        self._committed: dict[str, int] = {}
        self._settled = 0  # sends of ours settled (mined, or given up after a broadcast)
        self._current: set[str] = set()  # tokens read since the last settlement
        self._reading: asyncio.Task[None] | None = None  # the background read
        self.reads = 0  # balance reads made (in the background or not)

    @property
    def busy(self) -> bool:
        """True while any send holds capital (is in flight)."""
        return any(self._committed.values())

    async def available(self, tokens: Sequence[str], block: int | None = None) -> dict[str, int]:
        """Balance of each token not already committed to a liquidation in flight (one batch).

        `block` is the engine's head; it is passed to the `follow` hook first. The
        balances read here are what `reserve` takes from, without another read.
        """
        if self._follow is not None:
            if block is not None:
                await self._follow(block)
        else:
            reading = self._reading
            if reading is not None and not reading.done():
                with contextlib.suppress(Exception):  # failed: read again below
                    await asyncio.shield(reading)
            if self.native_balance is not None and self._current.issuperset(tokens):
                return self._free(tokens)
        await self._read(tokens)
        return self._free(tokens)

    def _free(self, tokens: Sequence[str]) -> dict[str, int]:
        return {t: max(0, self._balances[t] - self._committed.get(t, 0)) for t in tokens}

    async def _read(self, tokens: Sequence[str]) -> None:
        settled = self._settled
        data = BALANCE_OF + encode(["address"], [self.address]).hex()
        self.reads += 1
        answers = await self.chain.batch(
            [("eth_call", [{"to": t, "data": data}, "latest"]) for t in tokens]
            + [("eth_getBalance", [self.address, "latest"])]
        )
        self.native_balance = int(answers.pop(), 16)  # for the balance-floor breaker
        if settled != self._settled and self._balances.keys() >= set(tokens):
            return  # a send settled during the read: the balances kept already count it
        self._balances.update({t: int(a, 16) for t, a in zip(tokens, answers, strict=True)})
        if settled == self._settled:
            self._current.update(tokens)

    def prefetch(self) -> None:
        """Read every known token's balance in the background now, unless the last read is
        current or one is running (nothing with a `follow` hook: it reads at each step)."""
        if self._follow is not None or not self._balances:
            return
        if self._reading is not None and not self._reading.done():
            return
        if self._current.issuperset(self._balances):
            return
        self._reading = asyncio.ensure_future(self._background(sorted(self._balances)))

    async def _background(self, tokens: Sequence[str]) -> None:
        try:
            await self._read(tokens)
        except Exception as exc:  # the next `available` reads in the foreground instead
            log.info("background balance read failed", reason=str(exc))
            return
        self._reading = None
        self.prefetch()  # again if a send settled during this read

    async def reserve(self, token: str, amount: int) -> bool:
        """Reserve `amount` of the sender's `token` for one send (concurrent sends share it).

        Reserved against the balance of the last `available` read (read once per block
        with candidates): a send is released only after its receipt, so a balance read
        later already reflects it, and an earlier one errs on the side of holding back.
        Check and reserve run without an await in between.
        """
        if amount == 0:  # a send that takes nothing from the wallet
            return True
        if token not in self._balances:
            await self.available([token])
        if self._balances[token] - self._committed.get(token, 0) < amount:
            return False
        self._committed[token] = self._committed.get(token, 0) + amount
        return True

    def release(self, token: str, amount: int, *, spent: bool) -> None:
        """A send that reserved `amount` is over; `spent`: it was broadcast (assume it paid)."""
        if amount == 0:
            return
        left = self._committed[token] - amount
        if left:
            self._committed[token] = left
        else:
            del self._committed[token]
        if spent:  # until the next `available` read, assume it was all paid
            self._balances[token] -= amount
            self._settled += 1
            self._current.clear()
            self.prefetch()  # (a read running now reads again when it ends)

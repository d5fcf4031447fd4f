"""The sending account's capital: token balances, and what sends in flight have reserved.

`available` reads every asked token's balance and the native balance in one
batch (at the engine's head, after the `follow` hook); `reserve` takes a send's
repay amount out of the last read without another read, so concurrent sends
share one balance; `release` gives it back when the send is settled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from eth_abi.abi import encode

from keeper.chain.http import HttpRpc

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

    @property
    def busy(self) -> bool:
        """True while any send holds capital (is in flight)."""
        return any(self._committed.values())

    async def available(self, tokens: Sequence[str], block: int | None = None) -> dict[str, int]:
        """Balance of each token not already committed to a liquidation in flight (one batch).

        `block` is the engine's head; it is passed to the `follow` hook first. The
        balances read here are what `reserve` takes from, without another read.
        """
        if self._follow is not None and block is not None:
            await self._follow(block)
        data = BALANCE_OF + encode(["address"], [self.address]).hex()
        answers = await self.chain.batch(
            [("eth_call", [{"to": t, "data": data}, "latest"]) for t in tokens]
            + [("eth_getBalance", [self.address, "latest"])]
        )
        self.native_balance = int(answers.pop(), 16)  # for the balance-floor breaker
        self._balances.update({t: int(a, 16) for t, a in zip(tokens, answers, strict=True)})
        return {t: max(0, self._balances[t] - self._committed.get(t, 0)) for t in tokens}

    async def reserve(self, token: str, amount: int) -> bool:
        """Reserve `amount` of the sender's `token` for one send (concurrent sends share it).

        Reserved against the balance of the last `available` read (read once per block
        with candidates): a send is released only after its receipt, so a balance read
        later already reflects it, and an earlier one errs on the side of holding back.
        Check and reserve run without an await in between.
        """
        if token not in self._balances:
            await self.available([token])
        if self._balances[token] - self._committed.get(token, 0) < amount:
            return False
        self._committed[token] = self._committed.get(token, 0) + amount
        return True

    def release(self, token: str, amount: int, *, spent: bool) -> None:
        """A send that reserved `amount` is over; `spent`: it was broadcast (assume it paid)."""
        left = self._committed[token] - amount
        if left:
            self._committed[token] = left
        else:
            del self._committed[token]
        if spent:  # until the next `available` read, assume it was all paid
            self._balances[token] -= amount

"""Tickets that keep broadcasts in call order: the volleys and lone sends of one executor
leave in the order they were called, whichever finished preparing first (a later
volley's nonces must not go out before an earlier one's)."""

from __future__ import annotations

import asyncio
import itertools


class Turns:
    """Tickets in call order; a ticket's turn comes when every earlier one is done."""

    def __init__(self) -> None:
        self._tickets = itertools.count()
        self._turn = 0  # the lowest ticket not yet done
        self._finished: set[int] = set()  # done out of order: only tickets above the turn
        self._moved = asyncio.Event()

    def take(self) -> int:
        return next(self._tickets)

    def ready(self, ticket: int) -> bool:
        """Every earlier ticket is done: `wait(ticket)` would not wait."""
        return self._turn >= ticket

    async def wait(self, ticket: int) -> None:
        while self._turn < ticket:
            await self._moved.wait()

    def done(self, ticket: int) -> None:
        """Ticket `ticket` was broadcast (or will never be): later ones may go."""
        if ticket < self._turn or ticket in self._finished:
            return
        self._finished.add(ticket)
        while self._turn in self._finished:
            self._finished.discard(self._turn)
            self._turn += 1
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()  # wakes every waiter; each checks the turn again on the new event

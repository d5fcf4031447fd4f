"""Balances for sizing off the critical path (no chain): a read stays current until a send
of ours settles, is then read again in the background, and a read that a settlement
overtook is not trusted."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from keeper.chain.http import HttpRpc
from keeper.execution.capital import Capital

ME = "0x" + "11" * 20
TOKEN = "0x" + "22" * 20


class Node(HttpRpc):
    """Answers balance reads with `balance` of every token; `gate` holds a read back."""

    def __init__(self, balance: int) -> None:
        super().__init__("http://node.invalid")
        self.chain_id = 1
        self.balance = balance
        self.reads = 0
        self.gate: asyncio.Event | None = None

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        self.reads += 1
        balance = self.balance  # what the chain holds when the read is answered
        if self.gate is not None:
            await self.gate.wait()
        return [hex(5) if method == "eth_getBalance" else hex(balance) for method, _ in calls]


async def test_a_read_is_used_until_a_send_of_ours_settles() -> None:
    node = Node(100)
    capital = Capital(node, ME)
    assert await capital.available([TOKEN], 1) == {TOKEN: 100}
    assert await capital.available([TOKEN], 2) == {TOKEN: 100}
    assert node.reads == 1  # the second step paid no round trip
    assert await capital.reserve(TOKEN, 60)
    assert await capital.available([TOKEN], 3) == {TOKEN: 40}  # in flight: reserved
    assert node.reads == 1
    node.balance = 40  # mined: the chain holds what is left
    capital.release(TOKEN, 60, spent=True)  # ... and the background read starts now
    await asyncio.sleep(0)
    assert node.reads == 2
    assert await capital.available([TOKEN], 4) == {TOKEN: 40}
    assert node.reads == 2


async def test_a_read_a_settlement_overtook_is_not_trusted() -> None:
    node = Node(100)
    capital = Capital(node, ME)
    await capital.available([TOKEN], 1)
    assert await capital.reserve(TOKEN, 30)
    capital.release(TOKEN, 30, spent=True)  # background read 1 starts, held back
    node.gate = asyncio.Event()
    await asyncio.sleep(0)
    assert await capital.reserve(TOKEN, 20)
    capital.release(TOKEN, 20, spent=True)  # settles while read 1 is out
    node.balance = 50  # read 1 answered 100: older than both spends
    node.gate.set()
    node.gate = None
    free = await capital.available([TOKEN], 2)
    # Read 1 is discarded (it kept 100 - 30 - 20 = 50 from the spends), and read 2 (started
    # when read 1 ended) is what is answered.
    assert free == {TOKEN: 50} and node.reads == 3


async def test_with_a_follow_hook_every_step_reads() -> None:
    node = Node(100)
    moved: list[int] = []

    async def follow(block: int) -> None:
        moved.append(block)

    capital = Capital(node, ME, follow=follow)
    await capital.available([TOKEN], 1)
    await capital.available([TOKEN], 2)
    assert node.reads == 2 and moved == [1, 2]

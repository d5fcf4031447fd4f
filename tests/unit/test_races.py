"""Lost races: a revert explained by another transaction that touched the position first
(`keeper.execution.races.touched` and `winner`), and the breaker that ignores them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from keeper.breakers import BreakerLimits, Breakers
from keeper.chain.http import HttpRpc
from keeper.execution.races import touched, winner

ME = "0x" + "aa" * 20
RIVAL = "0x" + "bb" * 20
BORROWER = "0x" + "cc" * 20


def _log(tx: str, block: int, index: int, slot: int = 3) -> dict[str, Any]:
    topics = ["0x" + "11" * 32] + ["0x" + "00" * 32] * 3
    topics[slot] = "0x" + BORROWER[2:].rjust(64, "0")
    return {"transactionHash": tx, "blockNumber": hex(block), "transactionIndex": hex(index),
            "logIndex": hex(0), "topics": topics}


class FakeChain:
    """Answers the batch of three eth_getLogs (by topic slot) and the senders' lookups."""

    def __init__(self, logs: list[dict[str, Any]], senders: dict[str, str]) -> None:
        self.logs, self.senders = logs, senders
        self.queries: list[Any] = []

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        out: list[Any] = []
        for method, params in calls:
            self.queries.append((method, params))
            if method == "eth_getLogs":
                query = params[0]
                slot = len(query["topics"]) - 1
                start, end = int(query["fromBlock"], 16), int(query["toBlock"], 16)
                out.append([e for e in self.logs if start <= int(e["blockNumber"], 16) <= end
                            and e["topics"][slot] in query["topics"][slot]])
            else:
                out.append({"from": self.senders[params[0]]})
        return out


RECEIPT = {"blockNumber": hex(105), "transactionIndex": hex(4), "transactionHash": "0xours"}


async def lost_to(chain: HttpRpc, accounts: list[str], me: str, *, ranked_at: int,
                  receipt: dict[str, Any]) -> str | None:
    """What the executor asks after a revert: the first touch of the accounts not by us."""
    return winner(await touched(chain, accounts, ranked_at=ranked_at, receipt=receipt), me)


async def test_a_rival_transaction_before_ours_is_the_winner() -> None:
    chain = FakeChain([_log("0xrival", 105, 2), _log("0xlater", 105, 7)],
                      {"0xrival": RIVAL, "0xlater": RIVAL})
    winner = await lost_to(cast(HttpRpc, chain), [BORROWER], ME, ranked_at=103,
                           receipt=RECEIPT)
    assert winner == "0xrival"


async def test_an_earlier_block_counts_and_the_ranked_block_does_not() -> None:
    chain = FakeChain([_log("0xseen", 103, 1, slot=1), _log("0xrival", 104, 0, slot=2)],
                      {"0xseen": RIVAL, "0xrival": RIVAL})
    assert await lost_to(cast(HttpRpc, chain), [BORROWER], ME, ranked_at=103,
                         receipt=RECEIPT) == "0xrival"


async def test_our_own_earlier_transaction_is_no_race() -> None:
    chain = FakeChain([_log("0xmine", 104, 0)], {"0xmine": ME})
    assert await lost_to(cast(HttpRpc, chain), [BORROWER], ME, ranked_at=103,
                         receipt=RECEIPT) is None


async def test_nothing_before_ours_means_a_real_revert() -> None:
    chain = FakeChain([_log("0xafter", 105, 9)], {"0xafter": RIVAL})
    assert await lost_to(cast(HttpRpc, chain), [BORROWER], ME, ranked_at=103,
                         receipt=RECEIPT) is None


def test_lost_races_never_trip_the_revert_breaker() -> None:
    breakers = Breakers(BreakerLimits(max_consecutive_reverts=3))
    for _ in range(10):
        breakers.record_outcome("lost", 10**15)
    assert breakers.allow_send()
    for _ in range(3):
        breakers.record_outcome("reverted", 10**15)
    assert not breakers.allow_send()

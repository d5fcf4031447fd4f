"""The executor's parts hold per-transaction state only while it is live (no chain).

A daemon runs for months: receipts are forgotten once final, a token's reservation
once no send holds it, and a nonce whose transaction never went out is handed back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from keeper.chain.http import HttpRpc
from keeper.execution.capital import Capital
from keeper.execution.fees import FeePolicy
from keeper.execution.journal import Journal, JournalStateError
from keeper.execution.nonces import NonceManager
from keeper.execution.receipts import FINALITY_DEPTH, RecentReceipts
from keeper.execution.sender import Sender

GWEI = 10**9
ME = "0x" + "11" * 20
TOKEN = "0x" + "22" * 20
# A throwaway key made up for this test; it holds nothing on any chain.
PRIVATE_KEY = "0x" + "5c" * 16 + "a1" * 16


class Node(HttpRpc):
    """Answers balance reads with 100 of every token and 5 wei; accepts every send."""

    def __init__(self) -> None:
        super().__init__("http://node.invalid")
        self.chain_id = 1
        self.sent: list[str] = []

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        return [hex(5) if method == "eth_getBalance" else hex(100) for method, _ in calls]

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        assert method == "eth_sendRawTransaction"
        self.sent.append(str(params[0]))
        return None


def _receipt(block: int) -> dict[str, Any]:
    return {"blockNumber": hex(block), "blockHash": "0x" + f"{block:064x}"}


def test_receipts_are_forgotten_once_final() -> None:
    recent = RecentReceipts()
    for block in range(10_000):
        recent.add(f"0x{block:064x}", _receipt(block))
    assert len(recent) == FINALITY_DEPTH  # only the blocks a reorg can still reach
    assert len(recent.final(10_000 + FINALITY_DEPTH)) == FINALITY_DEPTH
    assert len(recent) == 0


async def test_a_token_leaves_the_reservations_when_no_send_holds_it() -> None:
    capital = Capital(Node(), ME)
    assert await capital.available([TOKEN]) == {TOKEN: 100}
    assert capital.native_balance == 5
    assert await capital.reserve(TOKEN, 60)
    assert not await capital.reserve(TOKEN, 60)  # 40 left
    assert capital.busy
    capital.release(TOKEN, 60, spent=True)
    assert not capital.busy and not capital._committed
    assert await capital.available([TOKEN]) == {TOKEN: 100}


async def test_a_nonce_is_handed_back_when_its_transaction_was_never_journaled(
    tmp_path: Path,
) -> None:
    node = Node()
    nonces = NonceManager(ME)

    async def zero() -> int:
        return 0

    await nonces.sync(zero, None)
    with Journal(tmp_path / "j.sqlite") as journal:
        sender = Sender(node, Account.from_key(PRIVATE_KEY), journal,
                        FeePolicy(100 * GWEI, GWEI), nonces)
        with pytest.raises(JournalStateError):  # no such intent: nothing may be sent
            await sender.send(TOKEN, "0x", 21_000, GWEI, key="unknown")
        assert not node.sent
        assert nonces.in_flight == ()
        sent = await sender.send(TOKEN, "0x", 21_000, GWEI, key=None)
        assert sent is not None and sent.nonce == 0  # no gap left behind
        assert len(node.sent) == 1

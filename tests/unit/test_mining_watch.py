"""keeper.execution.mining.MiningWatch._check against a scripted node: bump or not."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from keeper.chain.http import HttpRpc
from keeper.execution.fees import FeePolicy
from keeper.execution.journal import Journal
from keeper.execution.mining import MiningWatch, Pending

GWEI = 10**9


class StuckNode(HttpRpc):
    """The transaction sits in the pool, unmined, while the head moves on."""

    def __init__(self, head: int) -> None:
        super().__init__("http://node.invalid")
        self.head = head
        self.sent: list[str] = []

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        answers: dict[str, Any] = {
            "eth_getTransactionCount": "0x0",
            "eth_getTransactionByHash": {"hash": "0xaa"},
            "eth_getBlockByNumber": {"number": hex(self.head), "baseFeePerGas": hex(GWEI)},
            "eth_getTransactionReceipt": None,
        }
        return [answers[method] for method, _params in calls]

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        assert method == "eth_sendRawTransaction"
        self.sent.append(str(params[0]))
        return "0x" + "bb" * 32


@pytest.mark.parametrize("still_there", [True, False])
async def test_a_stuck_transaction_is_bumped_only_while_the_opportunity_is_there(
    tmp_path: Path, still_there: bool
) -> None:
    node = StuckNode(head=100)
    with Journal(tmp_path / "j.sqlite") as journal:
        watch = MiningWatch(node, "0x" + "11" * 20, journal, FeePolicy(100 * GWEI, GWEI),
                            bump_after_blocks=3)
        pending = Pending(None, 0, (3 * GWEI, GWEI), 100_000, 10**18, ["0xaa"],
                          {"0xaa": "0x01"})
        signed: list[int] = []

        async def sign(nonce: int, fees: tuple[int, int]) -> tuple[str, str]:
            signed.append(nonce)
            return "0x" + "bb" * 32, "0x02"

        assert not await watch._check(pending, sign, lambda: still_there)  # sets sent_block
        node.head = 103
        assert not await watch._check(pending, sign, lambda: still_there)
    if still_there:
        assert signed == [0] and pending.bumped == 1 and node.sent == ["0x02"]
        assert pending.fees[0] * 8 >= 3 * GWEI * 9 and pending.fees[1] * 8 >= GWEI * 9
    else:
        assert signed == [] and pending.bumped == 0 and node.sent == []

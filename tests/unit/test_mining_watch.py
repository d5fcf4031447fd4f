"""keeper.execution.mining.MiningWatch against a scripted node: bump or not; a node that does
not answer (a dropped connection) ends no watch, and a send whose answer was lost counts as sent."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from keeper.chain.http import HttpRpc
from keeper.errors import RpcUnavailable
from keeper.execution import mining
from keeper.execution.fees import FeePolicy
from keeper.execution.journal import Journal
from keeper.execution.mining import MiningWatch, Pending

GWEI = 10**9


class StuckNode(HttpRpc):
    """The transaction sits in the pool, unmined, while the head moves on."""

    def __init__(self, head: int, consumed: int = 0, base_fee: int = GWEI) -> None:
        super().__init__("http://node.invalid")
        self.head = head
        self.consumed = consumed  # the account's nonces used ("latest")
        self.base_fee = base_fee
        self.sent: list[str] = []

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        answers: dict[str, Any] = {
            "eth_getTransactionCount": hex(self.consumed),
            "eth_getTransactionByHash": {"hash": "0xaa"},
            "eth_getBlockByNumber": {"number": hex(self.head),
                                     "baseFeePerGas": hex(self.base_fee)},
            "eth_getTransactionReceipt": None,
        }
        return [answers[method] for method, _params in calls]

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        assert method == "eth_sendRawTransaction"
        self.sent.append(str(params[0]))
        return "0x" + "bb" * 32


async def checked_twice(
    tmp_path: Path, node: StuckNode, nonce: int, worth: Callable[[], bool] | None = None,
) -> tuple[Pending, list[int]]:
    """A watch's two checks of a transaction of `nonce` stuck in `node`'s pool, ten blocks
    apart (past `bump_after_blocks`): the transaction, and the nonces it signed again."""
    with Journal(tmp_path / "j.sqlite") as journal:
        watch = MiningWatch(node, "0x" + "11" * 20, journal, FeePolicy(100 * GWEI, GWEI),
                            bump_after_blocks=3)
        pending = Pending(None, nonce, (3 * GWEI, GWEI), 100_000, 10**18, ["0xaa"],
                          {"0xaa": "0x01"})
        signed: list[int] = []

        async def sign(nonce: int, fees: tuple[int, int]) -> tuple[str, str]:
            signed.append(nonce)
            return "0x" + "bb" * 32, "0x02"

        assert not await watch._check(pending, sign, worth)  # sets sent_block
        node.head += 10
        assert not await watch._check(pending, sign, worth)
    return pending, signed


@pytest.mark.parametrize("still_there", [True, False])
async def test_a_stuck_transaction_is_bumped_only_while_the_opportunity_is_there(
    tmp_path: Path, still_there: bool
) -> None:
    node = StuckNode(head=100)
    pending, signed = await checked_twice(tmp_path, node, 0, lambda: still_there)
    if still_there:
        assert signed == [0] and pending.bumped == 1 and node.sent == ["0x02"]
        assert pending.fees[0] * 8 >= 3 * GWEI * 9 and pending.fees[1] * 8 >= GWEI * 9
    else:
        assert signed == [] and pending.bumped == 0 and node.sent == []


@pytest.mark.parametrize(("consumed", "base_fee", "bumped"), [
    (5, GWEI, False),  # nonces 5..6 of ours still to mine: it waits its turn behind them
    (7, GWEI, True),  # the next to mine: stuck on its fees
    (5, 4 * GWEI, True),  # waiting, but under the base fee: it would stay stuck after them
])
async def test_only_the_next_nonce_to_mine_or_an_underpriced_one_is_bumped(
    tmp_path: Path, consumed: int, base_fee: int, bumped: bool,
) -> None:
    node = StuckNode(head=100, consumed=consumed, base_fee=base_fee)
    pending, signed = await checked_twice(tmp_path, node, 7)
    assert (signed, pending.bumped) == (([7], 1) if bumped else ([], 0))


class TakenNode(StuckNode):
    """The nonce is used; our receipt shows up only after `receipt_after` receipt reads (a
    node that serves a block's state before its receipts), or never (None)."""

    def __init__(self, receipt_after: int | None) -> None:
        super().__init__(head=100)
        self.receipt_after = receipt_after
        self.receipt_reads = 0

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        out: list[Any] = []
        for method, _params in calls:
            if method == "eth_getTransactionReceipt":
                self.receipt_reads += 1
                mined = self.receipt_after is not None and self.receipt_reads > self.receipt_after
                out.append({"status": "0x1"} if mined else None)
            else:
                out.append({"eth_getTransactionCount": "0x1",
                            "eth_getTransactionByHash": None,
                            "eth_getBlockByNumber": {"number": "0x64"}}[method])
        return out


@pytest.mark.parametrize("receipt_after", [1, None])
async def test_a_used_nonce_is_lost_only_when_the_receipt_stays_missing(
    tmp_path: Path, receipt_after: int | None
) -> None:
    """The nonce is used at the first check and our receipt lags it: not lost, the poll then
    finds the receipt. Still missing at the second check: lost."""
    node = TakenNode(receipt_after)
    with Journal(tmp_path / "j.sqlite") as journal:
        watch = MiningWatch(node, "0x" + "11" * 20, journal, FeePolicy(100 * GWEI, GWEI),
                            check_every=0.0)
        pending = Pending(None, 0, (3 * GWEI, GWEI), 100_000, 10**18, ["0xaa"],
                          {"0xaa": "0x01"})
        assert not await watch._check(pending, None)
        mined = await watch.mined(pending, None)
    if receipt_after is None:
        assert mined.receipt is None and pending.taken_checks == 2
    else:
        assert mined.receipt == {"status": "0x1"} and mined.tx_hash == "0xaa"


class FlakyNode(StuckNode):
    """Every request fails as a dropped connection does until `down` requests have failed;
    then the transaction's receipt is there. A send fails the same way (its answer lost)."""

    def __init__(self, down: int) -> None:
        super().__init__(head=100)
        self.down = down
        self.failed = 0

    def _drop(self) -> None:
        if self.failed < self.down:
            self.failed += 1
            raise RpcUnavailable("RPC http://node.invalid unreachable (ServerDisconnectedError)")

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        self._drop()
        return [{"status": "0x1", "transactionHash": "0xaa"}
                if method == "eth_getTransactionReceipt" else None for method, _ in calls]

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        self.sent.append(str(params[0]))
        raise RpcUnavailable("RPC http://node.invalid unreachable (ServerDisconnectedError)")


async def test_unanswered_polls_do_not_end_the_watch(tmp_path: Path) -> None:
    node = FlakyNode(down=4)
    with Journal(tmp_path / "j.sqlite") as journal:
        watch = MiningWatch(node, "0x" + "11" * 20, journal, FeePolicy(100 * GWEI, GWEI),
                            check_every=0.05)
        pending = Pending(None, 0, (3 * GWEI, GWEI), 100_000, 10**18, ["0xaa"],
                          {"0xaa": "0x01"})
        mined = await watch.mined(pending, None)
    assert node.failed == 4 and mined.tx_hash == "0xaa"


async def test_a_node_gone_for_long_ends_the_watch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stop waits for the watches in flight: one on a dead node must not wait out the
    # receipt timeout (a killed chain's daemon once took over 90 s to stop).
    monkeypatch.setattr(mining, "NODE_GONE_AFTER", 0.2)
    node = FlakyNode(down=10**6)
    with Journal(tmp_path / "j.sqlite") as journal:
        watch = MiningWatch(node, "0x" + "11" * 20, journal, FeePolicy(100 * GWEI, GWEI),
                            check_every=0.05)
        pending = Pending(None, 0, (3 * GWEI, GWEI), 100_000, 10**18, ["0xaa"],
                          {"0xaa": "0x01"})
        with pytest.raises(RpcUnavailable):
            await watch.mined(pending, None)
    assert node.failed > 2


async def test_a_replacement_whose_answer_is_lost_is_watched_as_sent(tmp_path: Path) -> None:
    node = FlakyNode(down=0)
    with Journal(tmp_path / "j.sqlite") as journal:
        watch = MiningWatch(node, "0x" + "11" * 20, journal, FeePolicy(100 * GWEI, GWEI))
        pending = Pending(None, 0, (3 * GWEI, GWEI), 100_000, 10**18, ["0xaa"],
                          {"0xaa": "0x01"})

        async def sign(nonce: int, fees: tuple[int, int]) -> tuple[str, str]:
            return "0x" + "bb" * 32, "0x02"

        await watch._bump(pending, sign, GWEI, 101)
        assert await watch._resend(pending, "0xaa")  # not refused: the next check tells
    assert node.sent == ["0x02", "0x01"] and pending.hashes == ["0xaa", "0x" + "bb" * 32]

"""The racing send path on the devnet: a volley is claimed, signed, journaled and broadcast
together, without waiting for its simulations, and keeps the journal's exactly-once rule.

The transactions are ERC-20 `approve` calls from a fresh funded account (they need no
balance, and emit a log of the called contract, as a liquidation does), sent as intents
that fund themselves (no allowance step). The node is the devnet's anvil; where a test
needs a simulation to answer late or to fail, the client holds back or replaces only the
`eth_estimateGas` answer, never the chain's.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from structlog.testing import capture_logs

from keeper.chain.http import HttpRpc, answer_error
from keeper.execution.executor import Executor
from keeper.execution.fees import FeePolicy
from keeper.execution.journal import Journal
from keeper.types import Call, Opportunity, TxIntent
from tests.conftest import Devnet
from tests.factories import candidate
from tests.integration.helpers import tokens

GWEI = 10**9
APPROVE = "0x095ea7b3"
SEND = "eth_sendRawTransaction"
TIMEOUT = 30.0


class Crash(BaseException):
    """The process dies here (nothing after it runs)."""


class Node(HttpRpc):
    """The devnet's anvil, with the simulation's answer held back `late` seconds (and then
    replaced by a revert when `revert`), and the time each request was answered.

    `crash_at_batch`: the process dies just before a batch of sends leaves."""

    def __init__(self, url: str, *, late: float = 0.0, revert: bool = False,
                 crash_at_batch: bool = False) -> None:
        super().__init__(url)
        self.late = late
        self.revert = revert
        self.crash_at_batch = crash_at_batch
        self.answered: list[tuple[str, float, int]] = []  # (method, when, items)

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        if method == "eth_estimateGas" and self.late:
            await asyncio.sleep(self.late)
            if self.revert:
                self.answered.append((method, time.perf_counter(), 1))
                raise answer_error(method, {"code": 3, "message": "execution reverted: gone"})
        result = await super().call(method, params)
        self.answered.append((method, time.perf_counter(), 1))
        return result

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        sends = sum(1 for method, _ in calls if method == SEND)
        if sends and self.crash_at_batch:
            raise Crash
        result = await super().batch(calls)
        if sends:
            self.answered.append((SEND, time.perf_counter(), sends))
        return result


@pytest.fixture
def account(devnet: Devnet) -> LocalAccount:
    """A fresh account with 10 ETH and no transactions."""
    fresh: LocalAccount = Account.from_key("0x" + secrets.token_hex(32))
    devnet.rpc("anvil_setBalance", fresh.address, hex(10 * 10**18))
    return fresh


def _intents(token: str, count: int, block: int) -> list[TxIntent]:
    out = []
    for k in range(count):
        data = APPROVE + encode(["address", "uint256"], ["0x" + "77" * 20, k + 1]).hex()
        opp = Opportunity(
            strategy="aave_v3", key=f"test:volley:{k}", account="0x" + f"{k + 1:040x}",
            collateral=token, debt=token, debt_to_cover=1, collateral_received=1,
            gross_value=10**16, slippage=0, gas_limit=100_000, gas_cost=10**15,
            net_profit=10**16, quote_token=token, health_factor=9 * 10**17, block=block,
            candidate=candidate())
        out.append(TxIntent(opp, Call(token, data), 60_000, None))
    return out


def _executor(chain: HttpRpc, account: LocalAccount, journal: Journal) -> Executor:
    return Executor(chain, account, journal, FeePolicy(100 * GWEI, GWEI),
                    appraise=lambda c, d, got, paid, gas: -gas)


async def test_a_volley_leaves_before_its_simulations_answer(
    devnet: Devnet, account: LocalAccount, journal: Journal
) -> None:
    """Four intents of one dispatch: claimed in one commit; the best one journaled (synced),
    sent and marked sent alone, then the other three journaled in one synced commit,
    broadcast in one batch and marked sent in one commit (nonces in rank order), all
    while their simulations are still unanswered; each then confirms, and the
    simulations' gas is learned."""
    token = tokens(devnet)["WETH"].address
    commits: list[str] = []
    chain = Node(devnet.info.rpc_url, late=0.5)
    async with chain:
        executor = _executor(chain, account, journal)
        await executor.start()
        head = int(await chain.call("eth_blockNumber", []), 16)
        intents = _intents(token, 4, head)
        journal._db.set_trace_callback(commits.append)
        started = time.perf_counter()
        follows = await executor.launch(intents, base_fee=10)
        launched = time.perf_counter()
        journal._db.set_trace_callback(None)
        outcomes = await asyncio.wait_for(asyncio.gather(*follows), TIMEOUT)
    sends = [(when, items) for method, when, items in chain.answered if method == SEND]
    estimates = [when for method, when, _ in chain.answered if method == "eth_estimateGas"]
    assert [items for _, items in sends] == [1, 3]  # the best one, then a batch of three
    assert launched - started < 0.5 and len(estimates) == 4
    assert min(estimates) > sends[0][0]  # every simulation answered after the broadcast
    assert [o.status for o in outcomes] == ["confirmed"] * 4, outcomes
    nonces = []
    for outcome in outcomes:
        async with HttpRpc(devnet.info.rpc_url) as reader:
            tx = await reader.call("eth_getTransactionByHash", [outcome.tx_hash])
        nonces.append(int(tx["nonce"], 16))
    assert nonces == [0, 1, 2, 3]  # rank order is nonce order
    # Claims; then signed records and sent marks of the first, then of the rest: one
    # database transaction each, only the signed records synced.
    synced, mode = [], "FULL"
    for statement in (s.strip().upper() for s in commits):
        if statement.startswith("PRAGMA SYNCHRONOUS"):
            mode = statement.rsplit("=", 1)[1].strip()
        elif statement == "COMMIT":
            synced.append(mode == "FULL")
    assert synced == [False, True, False, True, False], commits
    assert executor.volley.estimates and executor.volley.failed_after_send == 0


async def test_a_simulation_failing_after_the_send_is_logged_and_the_receipt_decides(
    devnet: Devnet, account: LocalAccount, journal: Journal
) -> None:
    token = tokens(devnet)["WETH"].address
    chain = Node(devnet.info.rpc_url, late=0.3, revert=True)
    async with chain:
        executor = _executor(chain, account, journal)
        await executor.start()
        head = int(await chain.call("eth_blockNumber", []), 16)
        with capture_logs() as logs:
            follows = await executor.launch(_intents(token, 2, head), base_fee=10)
            outcomes = await asyncio.wait_for(asyncio.gather(*follows), TIMEOUT)
    assert [o.status for o in outcomes] == ["confirmed"] * 2, outcomes
    failed = [e for e in logs if e["event"] == "simulation failed after the send"]
    assert len(failed) == 2 and all("gone" in e["reason"] for e in failed)
    assert executor.volley.failed_after_send == 2 and not executor.volley.estimates


async def test_a_simulation_failing_before_the_broadcast_drops_the_send(
    devnet: Devnet, account: LocalAccount, journal: Journal
) -> None:
    """The volley waits for its broadcast turn (an earlier send is still going out); its
    simulation fails meanwhile: it is dropped unsigned, its nonce never used, and the
    opportunity may be claimed again."""
    token = tokens(devnet)["WETH"].address
    chain = Node(devnet.info.rpc_url, late=0.05, revert=True)
    async with chain:
        executor = _executor(chain, account, journal)
        await executor.start()
        head = int(await chain.call("eth_blockNumber", []), 16)
        earlier = executor.turns.take()  # an earlier send holds the broadcast turn
        launching = asyncio.ensure_future(executor.launch(_intents(token, 1, head), 10))
        while not any(m == "eth_estimateGas" for m, _, _ in chain.answered):
            await asyncio.sleep(0.01)
        executor.turns.done(earlier)
        [follow] = await asyncio.wait_for(launching, TIMEOUT)
        outcome = await follow
    assert outcome.status == "simulation-failed" and "gone" in outcome.reason
    assert not any(m == SEND for m, _, _ in chain.answered)
    assert executor.nonces.next_nonce == 0
    record = journal.get("test:volley:0")
    assert record is not None and record.status == "abandoned" and not record.transactions


async def test_a_crash_between_the_journal_and_the_broadcast_sends_each_once(
    devnet: Devnet, account: LocalAccount, tmp_path: Path
) -> None:
    """The process dies after the volley's first send went out and the other two were
    signed and put on disk, before their batch leaves. The next run finds all three in
    the journal, waits for the first and broadcasts the very same bytes of the other two
    (never re-signed): each is mined once, and none can be claimed again."""
    token = tokens(devnet)["WETH"].address
    path = tmp_path / "journal.sqlite"
    async with Node(devnet.info.rpc_url, crash_at_batch=True) as dying:
        with Journal(path) as journal:
            executor = _executor(dying, account, journal)
            await executor.start()
            head = int(await dying.call("eth_blockNumber", []), 16)
            intents = _intents(token, 3, head)
            with pytest.raises(Crash):
                await executor.launch(intents, base_fee=10)
            signed = {k: journal.get(i.opportunity.key) for k, i in enumerate(intents)}
    assert [r.status if r is not None else None for r in signed.values()] == [
        "sent", "signed", "signed"]
    hashes = [r.transactions[0].tx_hash for r in signed.values() if r is not None]
    async with HttpRpc(devnet.info.rpc_url) as chain:
        for tx_hash in hashes[1:]:  # the batch never reached the node
            assert await chain.call("eth_getTransactionByHash", [tx_hash]) is None
        with Journal(path) as journal:
            executor = _executor(chain, account, journal)
            await executor.start()
            assert executor.nonces.next_nonce == 3  # past the journaled ones
            jobs = executor.recovery()
            outcomes = await asyncio.wait_for(asyncio.gather(*(j for _, _, j in jobs)),
                                              TIMEOUT)
            again = journal.claim_all([(i.opportunity, ()) for i in intents], chain.chain_id)
            records = [journal.get(i.opportunity.key) for i in intents]
        count = int(await chain.call("eth_getTransactionCount", [account.address, "latest"]),
                    16)
    assert sorted(o.tx_hash for o in outcomes) == sorted(hashes)
    assert all(o.status == "confirmed" for o in outcomes), outcomes
    assert again == [False, False, False]  # exactly once: never claimed again
    assert all(r is not None and len(r.transactions) == 1 for r in records)
    assert count == 3  # three transactions mined, no more


async def test_a_send_the_node_refuses_inside_a_batch_is_told_apart(
    devnet: Devnet, account: LocalAccount, journal: Journal
) -> None:
    """The batch's answer carries one refusal (a gas limit below the intrinsic cost): the
    sends the node has are followed, the refused one is dropped (it may be claimed again)
    and its nonce handed back."""
    token = tokens(devnet)["WETH"].address
    async with HttpRpc(devnet.info.rpc_url) as chain:
        executor = _executor(chain, account, journal)
        await executor.start()
        head = int(await chain.call("eth_blockNumber", []), 16)
        good, other, bad = _intents(token, 3, head)
        bad = TxIntent(bad.opportunity, bad.call, 5_000, None)  # 10,000 gas: refused
        follows = await executor.launch([good, other, bad], base_fee=10)
        outcomes = await asyncio.wait_for(asyncio.gather(*follows), TIMEOUT)
    assert [o.status for o in outcomes] == ["confirmed", "confirmed", "send-failed"], outcomes
    assert "gas" in outcomes[2].reason
    record = journal.get(bad.opportunity.key)
    assert record is not None and record.status == "dropped"
    assert executor.nonces.in_flight == ()


@pytest.fixture
def one_second_blocks(devnet: Devnet) -> Iterator[Devnet]:
    """Blocks every second (transactions wait in the pool meanwhile), then automine again."""
    devnet.rpc("evm_setAutomine", False)
    devnet.rpc("evm_setIntervalMining", 1)
    try:
        yield devnet
    finally:
        devnet.rpc("evm_setIntervalMining", 0)
        devnet.rpc("anvil_dropAllTransactions")
        devnet.rpc("evm_setAutomine", True)


async def test_a_send_whose_simulation_fails_while_it_is_pending_is_withdrawn(
    one_second_blocks: Devnet, account: LocalAccount, journal: Journal
) -> None:
    """Blocks a second apart: the sends wait in the pool when their simulations fail; each
    is replaced by a no-op for its nonce (higher fees), which is mined instead: the
    liquidations never land, nothing reverts, and each is recorded lost (cancelled)."""
    devnet = one_second_blocks
    token = tokens(devnet)["WETH"].address
    chain = Node(devnet.info.rpc_url, late=0.1, revert=True)
    async with chain:
        executor = _executor(chain, account, journal)
        await executor.start()
        head = int(await chain.call("eth_blockNumber", []), 16)
        intents = _intents(token, 2, head)
        follows = await executor.launch(intents, base_fee=10**9)
        outcomes = await asyncio.wait_for(asyncio.gather(*follows), TIMEOUT)
        sent = [journal.get(i.opportunity.key) for i in intents]
    assert [o.status for o in outcomes] == ["lost", "lost"], outcomes
    assert all(o.reason.startswith("cancelled") for o in outcomes)
    for record in sent:  # the liquidation and its cancel: only the cancel was mined
        assert record is not None and len(record.transactions) == 2
        statuses = sorted(tx.status for tx in record.transactions)
        # The cancel is journaled as the intent's mined transaction (`Settlement.cancelled`).
        assert statuses == ["replaced", "reverted"], statuses
    assert executor.volley.failed_after_send == 2

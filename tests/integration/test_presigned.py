"""Pre-signed sends (keeper/execution/armed.py) on the devnet: signed before the decision,
sent as signed only where they still fit, and never at the cost of exactly once.

The transactions are the volley tests' ERC-20 `approve` intents from a fresh funded
account (tests/integration/test_volley.py); the node is the devnet's anvil, and where a
test needs the process to die, the client raises before a batch of sends leaves.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from keeper.chain.http import HttpRpc
from keeper.execution.journal import Journal
from tests.conftest import Devnet
from tests.integration.helpers import tokens
from tests.integration.test_volley import SEND, TIMEOUT, Crash, Node, _executor, _intents


@pytest.fixture
def fresh(devnet: Devnet) -> LocalAccount:
    """A fresh account with 10 ETH and no transactions."""
    account: LocalAccount = Account.from_key("0x" + secrets.token_hex(32))
    devnet.rpc("anvil_setBalance", account.address, hex(10 * 10**18))
    return account


async def _nonce_of(chain: HttpRpc, tx_hash: str) -> int:
    tx = await chain.call("eth_getTransactionByHash", [tx_hash])
    return int(tx["nonce"], 16)


async def test_a_presigned_volley_leaves_without_signing_and_syncs_after_the_broadcast(
    devnet: Devnet, fresh: LocalAccount, journal: Journal
) -> None:
    """Four intents signed ahead (`Volley.presign`) are sent as they were signed: no
    signature on the way, the very hashes signed ahead, nonces in rank order, the first
    claimed and sent alone, the other three in one batch right after; the claims and the
    signed records are committed before the broadcasts without an fsync, and one synced
    commit (the `sent` marks) follows the last broadcast."""
    token = tokens(devnet)["WETH"].address
    commits: list[str] = []
    chain = Node(devnet.info.rpc_url)
    async with chain:
        executor = _executor(chain, fresh, journal)
        await executor.start()
        head = int(await chain.call("eth_blockNumber", []), 16)
        intents = _intents(token, 4, head)
        first, presigned = await executor.volley.presign(intents, base_fee=10)
        assert first == 0 and len(presigned) == 4
        signatures: list[int] = []
        sign = executor.sender.sign

        async def counted(*args: Any) -> tuple[str, str]:
            signatures.append(1)
            return await sign(*args)

        executor.sender.sign = counted  # type: ignore[method-assign,assignment]
        journal._db.set_trace_callback(commits.append)
        follows = await executor.launch(intents, base_fee=10, presigned=presigned)
        journal._db.set_trace_callback(None)
        outcomes = await asyncio.wait_for(asyncio.gather(*follows), TIMEOUT)
        nonces = [await _nonce_of(chain, o.tx_hash) for o in outcomes]
    assert [o.status for o in outcomes] == ["confirmed"] * 4, outcomes
    assert [o.tx_hash for o in outcomes] == [presigned[i.opportunity.key].tx_hash
                                             for i in intents]
    assert nonces == [0, 1, 2, 3] and signatures == []
    assert [items for method, _, items in chain.answered if method == SEND] == [1, 3]
    synced, mode = [], "FULL"
    for statement in (s.strip().upper() for s in commits):
        if statement.startswith("PRAGMA SYNCHRONOUS"):
            mode = statement.rsplit("=", 1)[1].strip()
        elif statement == "COMMIT":
            synced.append(mode == "FULL")
    # The first's claim, signed record and sent mark in one commit after its broadcast (it
    # went ahead of the database: keeper/execution/ahead.py), then the others' claims and
    # signed records: unsynced; then the others' `sent` marks with the first's again, in
    # one synced commit, which takes every record before it to disk.
    assert synced == [False, False, False, True], commits
    for intent in intents:
        record = journal.get(intent.opportunity.key)
        assert record is not None and record.status == "confirmed"
        assert record.transactions[0].raw_tx == presigned[intent.opportunity.key].raw


async def test_a_presigned_transaction_whose_nonce_another_send_took_is_never_sent(
    devnet: Devnet, fresh: LocalAccount, journal: Journal
) -> None:
    """Two intents signed ahead for nonces 0 and 1; another send then takes nonce 0. When
    the two go, each is handed a nonce it was not signed with: both are signed anew (1, 2),
    and neither transaction signed ahead ever reaches the node."""
    token = tokens(devnet)["WETH"].address
    async with HttpRpc(devnet.info.rpc_url) as chain:
        executor = _executor(chain, fresh, journal)
        await executor.start()
        head = int(await chain.call("eth_blockNumber", []), 16)
        other, *intents = _intents(token, 3, head)
        _, presigned = await executor.volley.presign(intents, base_fee=10)
        assert sorted(p.nonce for p in presigned.values()) == [0, 1]
        taken = await executor.sender.send(other.call.to, other.call.data, 60_000, 10,
                                           key=None)
        assert taken is not None and taken.nonce == 0
        follows = await executor.launch(intents, base_fee=10, presigned=presigned)
        outcomes = await asyncio.wait_for(asyncio.gather(*follows), TIMEOUT)
        nonces = [await _nonce_of(chain, o.tx_hash) for o in outcomes]
        for early in presigned.values():
            assert await chain.call("eth_getTransactionByHash", [early.tx_hash]) is None
    assert [o.status for o in outcomes] == ["confirmed"] * 2, outcomes
    assert nonces == [1, 2]
    assert not {o.tx_hash for o in outcomes} & {p.tx_hash for p in presigned.values()}


async def test_a_restart_never_sends_a_second_transaction_for_a_journaled_nonce(
    devnet: Devnet, fresh: LocalAccount, tmp_path: Path
) -> None:
    """A pre-signed volley of three: the first leaves, the process dies as the batch of the
    other two is about to leave (their records were written, not synced). The next run
    broadcasts the journaled bytes of those two (the same hashes) and starts its nonces
    past them; transactions signed ahead for nonces 1 and 2 before the crash, for other
    intents, are never sent: those two get nonces 3 and 4, signed anew."""
    token = tokens(devnet)["WETH"].address
    path = tmp_path / "journal.sqlite"
    async with Node(devnet.info.rpc_url, crash_at_batch=True) as dying:
        intents = _intents(token, 5, int(await dying.call("eth_blockNumber", []), 16))
        crashed, later = intents[:3], intents[3:]
        with Journal(path) as journal:
            executor = _executor(dying, fresh, journal)
            await executor.start()
            _, presigned = await executor.volley.presign(crashed, base_fee=10)
            # Signed ahead as if the volley's last two were another level's first two.
            stale = await executor.sender.presign(
                [executor.volley._unsigned(i) for i in later], 10, 1)
            with pytest.raises(Crash):
                await executor.launch(crashed, base_fee=10, presigned=presigned)
            statuses = [getattr(journal.get(i.opportunity.key), "status", None)
                        for i in crashed]
    # The first left and was marked sent on the way out; the batch never left.
    assert statuses == ["sent", "signed", "signed"]
    async with HttpRpc(devnet.info.rpc_url) as chain:
        with Journal(path) as journal:
            executor = _executor(chain, fresh, journal)
            await executor.start()
            assert executor.nonces.next_nonce == 3  # past every journaled nonce
            jobs = executor.recovery()
            recovered = await asyncio.wait_for(asyncio.gather(*(j for _, _, j in jobs)),
                                               TIMEOUT)
            follows = await executor.launch(later, base_fee=10, presigned=stale)
            outcomes = await asyncio.wait_for(asyncio.gather(*follows), TIMEOUT)
            again = journal.claim_all([(i.opportunity, ()) for i in crashed], chain.chain_id)
        mined = {await _nonce_of(chain, o.tx_hash): o.tx_hash for o in (*recovered, *outcomes)}
        count = int(await chain.call("eth_getTransactionCount", [fresh.address, "latest"]), 16)
        for early in stale.values():
            assert await chain.call("eth_getTransactionByHash", [early.tx_hash]) is None
    assert sorted(o.tx_hash for o in recovered) == sorted(
        p.tx_hash for p in presigned.values())  # the journaled bytes, never re-signed
    assert all(o.status == "confirmed" for o in (*recovered, *outcomes)), (recovered, outcomes)
    assert sorted(mined) == [0, 1, 2, 3, 4] and count == 5
    assert again == [False, False, False]

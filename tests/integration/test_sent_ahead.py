"""An armed volley's first transaction sent ahead of the journal's database (keeper/execution/
ahead.py) on the devnet: on file before its broadcast and claimed in the database only
after it; and a process that dies between the two leaves it on file, where the next run
finds it, records it and follows it, never signing anything else for its nonce.

The transactions are the volley tests' ERC-20 `approve` intents from a fresh funded
account (tests/integration/test_volley.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from keeper.chain.http import HttpRpc
from keeper.execution import volley
from keeper.execution.ahead import ahead_log
from keeper.execution.journal import Journal
from tests.conftest import Devnet
from tests.integration.helpers import tokens
from tests.integration.test_presigned import _nonce_of, fresh
from tests.integration.test_volley import TIMEOUT, Crash, _executor, _intents

__all__ = ["fresh"]  # the fixture, used by name


async def test_the_first_send_is_on_file_before_its_broadcast_and_claimed_after_it(
    devnet: Devnet, fresh: LocalAccount, journal: Journal
) -> None:
    token = tokens(devnet)["WETH"].address
    async with HttpRpc(devnet.info.rpc_url) as chain:
        executor = _executor(chain, fresh, journal)
        await executor.start()
        head = int(await chain.call("eth_blockNumber", []), 16)
        intents = _intents(token, 3, head)
        _, presigned = await executor.volley.presign(intents, base_fee=10)
        assert all(p.claimable for p in presigned.values())
        first = intents[0].opportunity.key
        seen: list[tuple[bool, list[str]]] = []
        broadcast = executor.sender._broadcast

        async def watched(signed: Any) -> Any:
            if not seen:  # the first broadcast: what the journal and the file hold then
                assert executor.ahead is not None
                seen.append((journal.get(first) is None,
                             [e.tx_hash for e in executor.ahead.entries()]))
            return await broadcast(signed)

        executor.sender._broadcast = watched  # type: ignore[method-assign]
        follows = await executor.launch(intents, base_fee=10, presigned=presigned)
        outcomes = await asyncio.wait_for(asyncio.gather(*follows), TIMEOUT)
        assert executor.ahead is not None and executor.ahead.unsettled == 0
        executor.ahead.clear()
        assert executor.ahead.entries() == []
    assert seen == [(True, [presigned[first].tx_hash])]
    assert [o.status for o in outcomes] == ["confirmed"] * 3, outcomes
    record = journal.get(first)
    assert record is not None and record.status == "confirmed"
    assert record.transactions[0].tx_hash == presigned[first].tx_hash


async def test_a_run_that_died_before_the_database_write_is_followed_by_the_next(
    devnet: Devnet, fresh: LocalAccount, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first transaction left; the process died before the claim and the signed record
    reached the database. The next run records it from the file (signed, then followed to
    its receipt: the same bytes), starts its nonces past it, and the key cannot be claimed
    again."""
    token = tokens(devnet)["WETH"].address
    path = tmp_path / "journal.sqlite"

    def dies(*args: Any, **kwargs: Any) -> bool:
        raise Crash

    async with HttpRpc(devnet.info.rpc_url) as chain:
        intents = _intents(token, 2, int(await chain.call("eth_blockNumber", []), 16))
        with Journal(path) as journal:
            executor = _executor(chain, fresh, journal)
            await executor.start()
            _, presigned = await executor.volley.presign(intents, base_fee=10)
            with monkeypatch.context() as patched:
                patched.setattr(volley, "settle", dies)
                with pytest.raises(Crash):
                    await executor.launch(intents, base_fee=10, presigned=presigned)
            first = intents[0].opportunity.key
            assert journal.get(first) is None  # never reached the database
        with Journal(path) as journal:
            assert [e.tx_hash for e in ahead_log(journal).entries()] == [
                presigned[first].tx_hash]
            executor = _executor(chain, fresh, journal)
            await executor.start()
            assert executor.nonces.next_nonce == 1  # past the one sent ahead
            record = journal.get(first)
            assert record is not None and record.status == "signed"
            jobs = executor.recovery()
            recovered = await asyncio.wait_for(asyncio.gather(*(j for _, _, j in jobs)),
                                               TIMEOUT)
            again = journal.claim_all([(intents[0].opportunity, ())], chain.chain_id)
            assert ahead_log(journal).entries() == []
        assert [o.tx_hash for o in recovered] == [presigned[first].tx_hash]
        assert [o.status for o in recovered] == ["confirmed"]
        assert await _nonce_of(chain, presigned[first].tx_hash) == 0
    assert again == [False]

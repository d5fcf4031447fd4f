"""A volley's sends valued before a feed posted a higher answer (`Dispatcher.price_rose`,
heard while they waited their turn), or valued at a head whose next block is due by the
clock (keeper/execution/staleness.py), are dropped unsent: the position may be healthy
again, and alone in a crash such sends were the keeper's remaining reverts. Signed ahead
or not.

The transactions are the volley tests' ERC-20 `approve` intents from a fresh funded
account (tests/integration/test_volley.py).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from eth_account.signers.local import LocalAccount

from keeper.chain.http import HttpRpc
from keeper.execution.journal import Journal
from tests.conftest import Devnet
from tests.integration.helpers import tokens
from tests.integration.test_presigned import fresh
from tests.integration.test_volley import TIMEOUT, _executor, _intents

__all__ = ["fresh"]  # the fixture, used by name


@pytest.mark.parametrize(("signed_ahead", "cause"), [
    (False, "rise"), (True, "rise"), (False, "due"), (True, "due")])
async def test_stale_sends_are_not_sent(
    devnet: Devnet, fresh: LocalAccount, journal: Journal, signed_ahead: bool, cause: str
) -> None:
    token = tokens(devnet)["WETH"].address
    async with HttpRpc(devnet.info.rpc_url) as chain:
        executor = _executor(chain, fresh, journal)
        await executor.start()
        head = int(await chain.call("eth_blockNumber", []), 16)
        stale, fresh_ones = _intents(token, 2, head), _intents(token, 4, head + 1)[2:]
        presigned = (await executor.volley.presign(stale, base_fee=10))[1] if signed_ahead \
            else None
        staleness = executor.volley.staleness
        if cause == "rise":
            staleness.rose(head + 1)  # a rise posted in the block after they were valued
        else:  # their head was heard 1.2 s ago; sends valued at it leave within 0.95 s
            staleness.deadline = 0.95
            staleness.heard_head(head, at=time.perf_counter() - 1.2)
            staleness.heard_head(head + 1)  # the fresh ones': heard now
        follows = await executor.launch(stale, base_fee=10, presigned=presigned)
        dropped = await asyncio.wait_for(asyncio.gather(*follows), TIMEOUT)
        assert executor.nonces.next_nonce == 0  # nothing was signed and sent
        follows = await executor.launch(fresh_ones, base_fee=10)
        sent = await asyncio.wait_for(asyncio.gather(*follows), TIMEOUT)
    reason = "price rose since valued" if cause == "rise" else "next block due since valued"
    assert [(o.status, o.reason) for o in dropped] == [("simulation-failed", reason)] * 2
    assert [o.status for o in sent] == ["confirmed"] * 2  # valued at the rise's block
    for intent in stale:
        record = journal.get(intent.opportunity.key)
        assert record is not None and record.status == "abandoned"

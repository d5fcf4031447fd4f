"""Liquidations paid from the account's own tokens in bundle mode (keeper/execution/lanes.py):
they all need nonce lane 0, so one dispatch's go in ONE bundle from it, on consecutive
nonces, and land together, alone or behind a backrun; after a restart, each of them
still holds the lane (and its nonce) until its bundle can no longer land, and none is
resent alone (a later nonce alone could not land).

The devnet builder as in test_bundles.py; the debt "token" answers every call with the
largest word (a balance and an allowance that cover anything), so capital and allowance
checks pass without a real token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from keeper.chain.http import HttpRpc
from keeper.execution.bundles import Backrun
from keeper.execution.journal import Journal
from keeper.types import TxIntent
from tests.integration.test_bundles import (
    GWEI,
    Net,
    builder_net,
    built,
    close_clients,
    executor,
    funded,
    hinted,
    intent,
    started,
    tx_of,
    victim,
)

__all__ = ["close_clients"]  # its autouse fixture closes the builder clients here too

TOKEN = "0x00000000000000000000000000000000000070c3"
TOKEN_CODE = "0x7f" + "ff" * 32 + "60005260206000f3"  # returns 2**256 - 1 to every call
SPENDER = "0x" + "5e" * 20


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    for built_net in builder_net():
        built_net.anvil.rpc("anvil_setCode", TOKEN, TOKEN_CODE)
        yield built_net


def own(account: str, block: int, tag: str) -> TxIntent:
    """A liquidation the account pays with its own `TOKEN` (the strategy's own call)."""
    flash = intent(account, block, tag)
    opp = flash.opportunity
    opp = type(opp)(**{**{f: getattr(opp, f) for f in opp.__slots__}, "debt": TOKEN})
    return TxIntent(opp, flash.call, flash.gas_limit, SPENDER)


async def test_a_dispatch_paid_from_the_wallet_goes_in_one_bundle_from_lane_0(
    net: Net, journal: Journal,
) -> None:
    """Three paid from the wallet and one flash liquidation: the three on lane 0 with
    consecutive nonces in one bundle, the flash one on lane 1, all in the next block."""
    accounts = funded(net, 2)
    async with started(net, journal, accounts) as (chain, ex, head):
        nonce = int(await chain.call("eth_getTransactionCount",
                                     [accounts[0].address, "latest"]), 16)
        follows = await ex.launch([own(victim(), head, f"own{n}") for n in range(3)]
                                  + [intent(victim(), head, "flash")], base_fee=GWEI)
        lane0 = ex.bundles.lanes.lanes[0]
        assert len(lane0.held) == 3 and lane0.shared == lane0.held
        tasks = [asyncio.ensure_future(f) for f in follows]
        await built(net, tasks)
        outcomes = [t.result() for t in tasks]
    assert [o.status for o in outcomes] == ["confirmed"] * 4, outcomes
    assert {o.block for o in outcomes} == {head + 1}
    mined = [tx_of(net, o.tx_hash) for o in outcomes]
    assert [str(m["from"]).lower() for m in mined] == [accounts[0].address.lower()] * 3 + [
        accounts[1].address.lower()]
    assert [int(str(m["nonce"]), 16) for m in mined[:3]] == [nonce, nonce + 1, nonce + 2]
    included = [b for b in net.client("builder_blocks")[-1]["bundles"]
                if b["status"] == "included"]
    assert len(included) == 2  # lane 0's one bundle of three, lane 1's of one
    assert lane0.holder is None and not lane0.held and not lane0.shared


async def test_wallet_paid_liquidations_backrun_a_hinted_update_from_lane_0(
    net: Net, journal: Journal,
) -> None:
    """Behind a hinted oracle transaction: both right behind it, lane 0's nonces in order."""
    accounts = funded(net, 1)
    hinted_hash = hinted(net)
    async with started(net, journal, accounts) as (_chain, ex, head):
        follows = await ex.launch([own(victim(), head, "b1"), own(victim(), head, "b2")],
                                  base_fee=GWEI, backrun=Backrun(hinted_hash))
        tasks = [asyncio.ensure_future(f) for f in follows]
        await built(net, tasks)
        first, second = (t.result() for t in tasks)
    assert first.status == second.status == "confirmed", (first, second)
    block = net.client("eth_getBlockByNumber", hex(first.block), False)["transactions"]
    at = block.index(hinted_hash)
    assert block[at + 1:at + 3] == [first.tx_hash, second.tx_hash]
    nonces = [int(str(tx_of(net, o.tx_hash)["nonce"]), 16) for o in (first, second)]
    assert nonces[1] == nonces[0] + 1


async def test_after_a_restart_lane_0s_shared_bundle_holds_it_until_it_lands(
    net: Net, tmp_path: Path,
) -> None:
    """The process dies with two wallet-paid transactions out in one bundle: after the
    restart lane 0 holds both (shared), nothing new is signed on it, and both land with
    the bytes signed before."""
    accounts = funded(net, 1)
    path = tmp_path / "lane0.sqlite"
    async with HttpRpc(net.endpoints[0].url) as chain:
        with Journal(path) as first_journal:
            ex = executor(net, chain, first_journal, accounts)
            await ex.start()
            head = int(await chain.call("eth_blockNumber", []), 16)
            follows = await ex.launch([own(victim(), head, "r1"), own(victim(), head, "r2")],
                                      base_fee=GWEI)
            for follow in follows:
                follow.close()  # the process dies: the bundle is out, nothing followed
            sent = {t.tx_hash for t in ex.bundles.book.live()}
        with Journal(path) as journal:
            ex = executor(net, chain, journal, accounts)
            await ex.start()
            lane0 = ex.bundles.lanes.lanes[0]
            assert lane0.held == sent and lane0.shared == sent
            jobs = ex.recovery()
            recovered = [asyncio.ensure_future(job) for _, _, job in jobs]
            [refused] = await ex.launch([own(victim(), head, "r3")], base_fee=GWEI)
            assert (await refused).status == "send-failed"  # lane 0 holds a bundle
            await built(net, recovered)
    outcomes = [r.result() for r in recovered]
    assert [o.status for o in outcomes] == ["confirmed"] * 2, outcomes
    assert {o.tx_hash for o in outcomes} == sent
    assert lane0.holder is None and not lane0.held

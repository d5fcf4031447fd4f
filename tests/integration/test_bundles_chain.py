"""Lane 0's chain (keeper/execution/bundles_chain.py): a later dispatch's liquidations paid
from the account's tokens join lane 0's unresolved bundle instead of being refused (they
were `send-failed`, "every nonce lane holds a bundle", while the public bot took the
positions): the new bundle holds the earlier transactions first, the builder includes one
of the two, and each transaction is mined once.

The devnet builder as in test_bundles.py, the debt "token" as in test_bundles_lane0.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from keeper.execution.bundles import Backrun
from keeper.execution.journal import Journal
from tests.integration.test_bundles import (
    GWEI,
    Net,
    builder_net,
    built,
    close_clients,
    funded,
    hinted,
    started,
    tx_of,
    victim,
)
from tests.integration.test_bundles_lane0 import TOKEN, TOKEN_CODE, own

__all__ = ["close_clients"]  # its autouse fixture closes the builder clients here too


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    for built_net in builder_net():
        built_net.anvil.rpc("anvil_setCode", TOKEN, TOKEN_CODE)
        yield built_net


def nonce_of(net: Net, tx_hash: str) -> int:
    return int(str(tx_of(net, tx_hash)["nonce"]), 16)


async def test_a_later_dispatch_joins_lane_0s_bundle(net: Net, journal: Journal) -> None:
    """Two wallet-paid liquidations out in lane 0's bundle; a later dispatch's one joins
    it (before: refused), and all three land in one block, in one bundle, nonces n..n+2."""
    accounts = funded(net, 1)
    async with started(net, journal, accounts) as (chain, ex, head):
        nonce = int(await chain.call("eth_getTransactionCount",
                                     [accounts[0].address, "latest"]), 16)
        first = await ex.launch([own(victim(), head, "c1"), own(victim(), head, "c2")],
                                base_fee=GWEI)
        assert ex.bundles.chain.open()  # holding only its chain: wallet-paid ones may join
        later = await ex.launch([own(victim(), head, "c3")], base_fee=GWEI)
        lane0 = ex.bundles.lanes.lanes[0]
        assert len(lane0.held) == 3 and lane0.shared == lane0.held
        tasks = [asyncio.ensure_future(f) for f in [*first, *later]]
        await built(net, tasks)
        outcomes = [t.result() for t in tasks]
    assert [o.status for o in outcomes] == ["confirmed"] * 3, outcomes
    assert {o.block for o in outcomes} == {head + 1}
    assert [nonce_of(net, o.tx_hash) for o in outcomes] == [nonce, nonce + 1, nonce + 2]
    [block] = [b for b in net.client("builder_blocks") if int(b["number"], 16) == head + 1]
    statuses = sorted(b["status"] for b in block["bundles"])
    assert statuses.count("included") == 1, block["bundles"]  # the superset: the earlier
    assert len(block["transactions"]) == 3  # bundle, which it holds, conflicts with it
    assert lane0.holder is None and not lane0.held


async def test_the_new_ones_land_alone_once_the_earlier_bundle_was_mined(
    net: Net, journal: Journal,
) -> None:
    """The earlier bundle is mined before its follower sees it (lane 0 still holds it): the
    later dispatch's bundle leaves the mined transaction out and lands in the next block."""
    accounts = funded(net, 1)
    async with started(net, journal, accounts) as (_chain, ex, head):
        [early] = await ex.launch([own(victim(), head, "m1")], base_fee=GWEI)
        await asyncio.to_thread(net.client.build)  # mined; nothing follows it yet
        [later] = await ex.launch([own(victim(), head + 1, "m2")], base_fee=GWEI)
        tasks = [asyncio.ensure_future(f) for f in (early, later)]
        await built(net, tasks)
        first, second = (t.result() for t in tasks)
    assert (first.status, second.status) == ("confirmed", "confirmed"), (first, second)
    assert (first.block, second.block) == (head + 1, head + 2)
    assert nonce_of(net, second.tx_hash) == nonce_of(net, first.tx_hash) + 1


async def test_a_backrun_takes_lane_0s_chain_in(net: Net, journal: Journal) -> None:
    """Lane 0 holds a plain bundle; a backrun's wallet-paid liquidation joins it: the bundle
    behind the hinted oracle transaction holds the earlier one, then the new one."""
    accounts = funded(net, 1)
    hinted_hash = hinted(net)
    async with started(net, journal, accounts) as (_chain, ex, head):
        [plain] = await ex.launch([own(victim(), head, "p1")], base_fee=GWEI)
        [behind] = await ex.launch([own(victim(), head, "p2")], base_fee=GWEI,
                                   backrun=Backrun(hinted_hash))
        tasks = [asyncio.ensure_future(f) for f in (plain, behind)]
        await built(net, tasks)
        first, second = (t.result() for t in tasks)
    assert (first.status, second.status) == ("confirmed", "confirmed"), (first, second)
    txs = net.client("eth_getBlockByNumber", hex(first.block), False)["transactions"]
    at = txs.index(hinted_hash)
    assert txs[at + 1:at + 3] == [first.tx_hash, second.tx_hash]

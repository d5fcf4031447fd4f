"""A flash liquidation sold into what a pending backrun of ours sells (keeper/execution/
bundles_launch.py `_beside`): it goes behind the oracle transaction too, after the backrun's
liquidations, in the bundle holding them all, so the builder never puts it ahead of them.

Seen in the short auction: a $2.7M liquidation ranked a block after a backrun went in a
bundle of its own that paid more than the backrun's; the builder put it first in the block,
its sale moved the pool, and the four liquidations behind the oracle update, priced before
it, reverted on their exits (the consecutive-revert breaker tripped). Here its bundle pays
the most of all (a higher tip); without `_beside` it lands ahead of the oracle transaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator

import pytest

from keeper.execution.bundles import Backrun
from keeper.execution.journal import Journal
from tests.integration.test_bundles import (
    CLIENTS,
    GWEI,
    Net,
    builder_net,
    built,
    funded,
    intent,
    started,
    victim,
)
from tests.integration.test_bundles_presigned import hinted


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    yield from builder_net()


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    yield
    while CLIENTS:
        await CLIENTS.pop().close()


async def test_a_later_sale_of_the_same_collateral_lands_behind_the_backrun(
    net: Net, journal: Journal,
) -> None:
    accounts = funded(net, 4)
    oracle = hinted(net)
    async with started(net, journal, accounts) as (_chain, ex, head):
        behind = await ex.launch([intent(victim(), head, "b1"), intent(victim(), head, "b2")],
                                 base_fee=GWEI, backrun=Backrun(oracle))
        later = intent(victim(), head, "later")
        rich = dataclasses.replace(later.opportunity, priority_fee=50 * GWEI)
        [alone] = await ex.launch([dataclasses.replace(later, opportunity=rich)], base_fee=GWEI)
        tasks = [asyncio.ensure_future(f) for f in [*behind, alone]]
        await built(net, tasks)
        first, second, third = (t.result() for t in tasks)
    assert first.status == second.status == third.status == "confirmed", (first, second, third)
    assert first.block == second.block == third.block == head + 1
    block = net.client("eth_getBlockByNumber", hex(first.block), False)["transactions"]
    at = block.index(oracle)
    assert block[at:at + 4] == [oracle, first.tx_hash, second.tx_hash, third.tx_hash]
    fates = {b["bundleHash"]: b for b in net.client("builder_blocks")[-1]["bundles"]}
    included = [b for b in fates.values() if b["status"] == "included"]
    assert [b["kind"] for b in included] == ["mev_sendBundle"], included

"""Bundled transactions signed ahead (keeper/execution/bundles_presign.py) on the devnet
builder: an armed level's transactions, signed on the nonce lanes a launch would give them,
are sent as signed behind the oracle transaction and land right behind it; one whose lane
moved meanwhile is signed again on the spot, never sent with a nonce its lane no longer
hands out; and their journal records, written before the bundle without the fsync, are
there for a restart to follow; and a later sale of the same collateral goes behind the
oracle transaction too, after them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from keeper.chain.http import HttpRpc
from keeper.execution.bundles import Backrun
from keeper.execution.bundles_presign import LanePresigned
from keeper.execution.journal import Journal
from tests.integration.test_bundles import (
    CLIENTS,
    GWEI,
    Net,
    builder_net,
    built,
    executor,
    funded,
    hinted,
    intent,
    started,
    victim,
)


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    yield from builder_net()


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    yield
    while CLIENTS:
        await CLIENTS.pop().close()


async def test_an_armed_levels_transactions_go_as_signed_right_behind_the_update(
    net: Net, journal: Journal,
) -> None:
    accounts = funded(net, 3)
    oracle = hinted(net)
    async with started(net, journal, accounts) as (_chain, ex, head):
        level = [intent(victim(), head, f"armed{n}") for n in range(3)]
        # What Dispatcher.arm asks of the executor's volley.
        nonce, presigned = await ex.volley.presign(level, GWEI)
        assert nonce == ex.nonces.next_nonce
        signers = [p.signer for p in presigned.values() if isinstance(p, LanePresigned)]
        # One lane each, lane 0 (the account's own) last.
        assert signers == [accounts[1].address.lower(), accounts[2].address.lower(),
                           accounts[0].address.lower()]
        follows = await ex.launch(level, GWEI, presigned, backrun=Backrun(oracle))
        records = {k: journal.get(k) for k in presigned}
        assert all(r is not None and r.status == "sent" for r in records.values())
        tasks = [asyncio.ensure_future(f) for f in follows]
        await built(net, tasks)
        outcomes = [t.result() for t in tasks]
    assert [o.status for o in outcomes] == ["confirmed"] * 3, outcomes
    # Sent as signed ahead: the very transactions the arming signed, none signed again.
    assert [o.tx_hash for o in outcomes] == [p.tx_hash for p in presigned.values()]
    assert (ex.bundles.signed_ahead, ex.bundles.signed_now) == (3, 0)
    block = net.client("eth_getBlockByNumber", hex(outcomes[0].block), False)["transactions"]
    at = block.index(oracle)
    assert block[at + 1:at + 4] == [o.tx_hash for o in outcomes]


async def test_a_lane_that_moved_since_the_arming_signs_on_the_spot(
    net: Net, journal: Journal,
) -> None:
    accounts = funded(net, 3)
    async with started(net, journal, accounts) as (chain, ex, head):
        level = [intent(victim(), head, f"stale{n}") for n in range(2)]
        _, presigned = await ex.volley.presign(level, GWEI)
        first_lane = ex.bundles.lanes.lanes[1]
        assert presigned[level[0].opportunity.key].nonce == first_lane.upcoming
        # Another liquidation takes lane 1 and lands: its nonce moves past the signed one.
        [other] = await ex.launch([intent(victim(), head, "between")], GWEI)
        between = asyncio.ensure_future(other)
        await built(net, [between])
        assert between.result().status == "confirmed"
        oracle = hinted(net)
        follows = await ex.launch(level, GWEI, presigned, backrun=Backrun(oracle))
        tasks = [asyncio.ensure_future(f) for f in follows]
        await built(net, tasks)
        moved, kept = (t.result() for t in tasks)
        lane1_nonce = int(await chain.call("eth_getTransactionCount",
                                           [first_lane.address, "latest"]), 16)
    assert moved.status == kept.status == "confirmed", (moved, kept)
    assert moved.tx_hash != presigned[level[0].opportunity.key].tx_hash  # signed anew
    assert kept.tx_hash == presigned[level[1].opportunity.key].tx_hash  # its lane had not moved
    assert lane1_nonce == presigned[level[0].opportunity.key].nonce + 2
    assert (ex.bundles.signed_ahead, ex.bundles.signed_now) == (1, 2)


async def test_signed_ahead_records_are_there_for_a_restart(
    net: Net, tmp_path: Path,
) -> None:
    """Written before the bundle without the fsync, synced with the sent marks after: a
    process that dies once the bundle is out leaves them for the next run to follow."""
    accounts = funded(net, 2)
    path = tmp_path / "restart.sqlite"
    async with HttpRpc(net.endpoints[0].url) as chain:
        with Journal(path) as first_journal:
            ex = executor(net, chain, first_journal, accounts)
            await ex.start()
            head = int(await chain.call("eth_blockNumber", []), 16)
            level = [intent(victim(), head, "ahead")]
            _, presigned = await ex.volley.presign(level, GWEI)
            [follow] = await ex.launch(level, GWEI, presigned, backrun=Backrun(hinted(net)))
            follow.close()  # the process dies here: the bundle is out, nothing followed
        with Journal(path) as journal:
            ex = executor(net, chain, journal, accounts)
            await ex.start()
            [job] = ex.recovery()
            recovered = asyncio.ensure_future(job[2])
            await built(net, [recovered])
    assert recovered.result().status == "confirmed"
    assert recovered.result().tx_hash == presigned["test:bundle:ahead"].tx_hash


def ours_behind(net: Net, target: str) -> list[list[str]]:
    """Each bundle that named `target` at the builder, in arrival order: the hashes behind it."""
    bundles = [b for b in net.client("builder_arrivals")["bundles"] if target in b["refs"]]
    return [[t for t in b["txs"] if t != target] for b in bundles
            if b["endpoint"] == 0]


async def test_what_was_signed_ahead_leaves_first_then_the_whole_dispatch(
    net: Net, journal: Journal,
) -> None:
    """A level signed ahead in part: those leave in a bundle of their own at once, then one
    bundle holds the whole dispatch (it pays more: the builder takes it over the first)."""
    accounts = funded(net, 5)
    oracle = hinted(net)
    async with started(net, journal, accounts) as (_chain, ex, head):
        level = [intent(victim(), head, f"wave{n}") for n in range(4)]
        _, presigned = await ex.volley.presign(level[:2], GWEI)  # arming signed two
        follows = await ex.launch(level, GWEI, presigned, backrun=Backrun(oracle))
        tasks = [asyncio.ensure_future(f) for f in follows]
        await built(net, tasks)
        outcomes = [t.result() for t in tasks]
    assert [o.status for o in outcomes] == ["confirmed"] * 4, outcomes
    hashes = [o.tx_hash for o in outcomes]
    assert hashes[:2] == [presigned[i.opportunity.key].tx_hash for i in level[:2]]
    # Two bundles: those signed ahead, then the whole dispatch (not one per signature).
    assert ours_behind(net, oracle) == [hashes[:2], hashes]
    block = net.client("eth_getBlockByNumber", hex(outcomes[0].block), False)["transactions"]
    at = block.index(oracle)
    assert block[at + 1:at + 5] == hashes


async def test_a_later_dispatch_behind_the_same_update_resends_the_earlier_ones(
    net: Net, journal: Journal,
) -> None:
    """Two dispatches behind one oracle transaction (a prepared level, then what the answer
    opened beyond it): the second bundle holds the first's transactions too, so the one the
    builder takes (it includes one bundle per backrun target) has them all."""
    accounts = funded(net, 3)
    oracle = hinted(net)
    async with started(net, journal, accounts) as (_chain, ex, head):
        first = await ex.launch([intent(victim(), head, "level")], GWEI,
                                backrun=Backrun(oracle))
        more = await ex.launch([intent(victim(), head, "beyond1"),
                                intent(victim(), head, "beyond2")], GWEI,
                               backrun=Backrun(oracle))
        tasks = [asyncio.ensure_future(f) for f in (*first, *more)]
        await built(net, tasks)
        outcomes = [t.result() for t in tasks]
    assert [o.status for o in outcomes] == ["confirmed"] * 3, outcomes
    hashes = [o.tx_hash for o in outcomes]
    # The second dispatch's first wave (its best one) already holds the first's.
    assert ours_behind(net, oracle) == [hashes[:1], hashes[:2], hashes]
    block = net.client("eth_getBlockByNumber", hex(outcomes[0].block), False)["transactions"]
    at = block.index(oracle)
    assert block[at + 1:at + 4] == hashes
    assert all(hashes.count(h) == 1 for h in hashes)


# A flash liquidation sold into what a pending backrun of ours sells (keeper/execution/
# bundles_launch.py `_beside`) goes behind the oracle transaction too, after the backrun's
# liquidations, in the bundle holding them all, so the builder never puts it ahead of them.
# Seen in the short auction: a $2.7M liquidation ranked a block after a backrun went in a
# bundle of its own that paid more than the backrun's; the builder put it first, its sale
# moved the pool, and the four liquidations behind the oracle update, priced before it,
# reverted on their exits. Here its bundle pays the most of all (a higher tip); without
# `_beside` it lands ahead of the oracle transaction.
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

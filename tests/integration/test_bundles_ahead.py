"""Backruns sent ahead of the journal's database (keeper/execution/bundles_ahead.py) on the
devnet builder: an armed level's first bundle behind an oracle transaction is at the
builder before its claims and records reach the database, and everything is there once the
launch returns; a process that ends in between leaves the entries on file, and the next
run records them at start and follows the transaction to its block (never signing another
for its nonce)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from keeper.chain.http import HttpRpc
from keeper.execution import bundles_ahead
from keeper.execution.bundles import Backrun
from keeper.execution.bundles_ahead import AheadSubmitter, BundleEntry
from keeper.execution.bundles_journal import BundleBook
from keeper.execution.journal import Journal
from keeper.execution.lanes import Lane
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
from tests.integration.test_bundles_presigned import ours_behind


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    yield from builder_net()


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    yield
    while CLIENTS:
        await CLIENTS.pop().close()


async def test_the_first_bundle_is_at_the_builder_before_the_database_write(
    net: Net, journal: Journal, monkeypatch: pytest.MonkeyPatch,
) -> None:
    accounts = funded(net, 4)
    oracle = hinted(net)
    at_settle: list[list[list[str]]] = []  # what the builder held behind the oracle then
    settle = bundles_ahead.settle

    def watched(book: BundleBook, entries: Sequence[BundleEntry], **kw: bool) -> list[str]:
        at_settle.append(ours_behind(net, oracle))
        return settle(book, entries, **kw)

    monkeypatch.setattr(bundles_ahead, "settle", watched)
    async with started(net, journal, accounts) as (_chain, ex, head):
        assert isinstance(ex.bundles, AheadSubmitter)
        level = [intent(victim(), head, f"first{n}") for n in range(2)]
        _, presigned = await ex.volley.presign(level, GWEI)
        assert all(p.claimable for p in presigned.values())
        follows = await ex.launch(level, GWEI, presigned, backrun=Backrun(oracle))
        # Every record is in the database once the launch returns, marked sent.
        assert all((r := journal.get(i.opportunity.key)) is not None and r.status == "sent"
                   for i in level)
        on_file = [json.loads(line) for line in
                   ex.bundles.ahead_log.path.read_text().splitlines() if line]
        ex.checkpoint()  # all settled: the file is emptied
        emptied = ex.bundles.ahead_log.path.read_text()
        tasks = [asyncio.ensure_future(f) for f in follows]
        await built(net, tasks)
        outcomes = [t.result() for t in tasks]
    assert ex.bundles.sent_ahead == 2
    first = [presigned[i.opportunity.key].tx_hash for i in level]
    # Both went on file with their lanes and blocks, and their bundle was at the builder
    # when their claims and records were written. (With a second wave, they are written
    # before that wave's claims, once the first bundle's request is out: see
    # test_bundles_presigned.py for a level signed ahead in part.)
    assert [e["tx_hash"] for e in on_file] == first
    assert {e["sender"] for e in on_file} == {a.address.lower() for a in accounts[1:3]}
    assert at_settle and at_settle[0][0] == first
    assert emptied == ""
    assert [o.status for o in outcomes] == ["confirmed"] * 2, outcomes
    assert [o.tx_hash for o in outcomes] == first


async def test_a_bundle_sent_ahead_that_never_reached_the_database_is_adopted_at_start(
    net: Net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The process ends after the bundle left and before step 4: the next run records the
    entry with its lane and blocks, keeps its nonce taken and follows it to its block."""
    accounts = funded(net, 2)
    path = tmp_path / "adopt.sqlite"

    def ends_first(*_: object, **__: object) -> list[str]:
        raise OSError("the process ends before the database write")

    async with HttpRpc(net.endpoints[0].url) as chain:
        with Journal(path) as first_journal:
            ex = executor(net, chain, first_journal, accounts)
            await ex.start()
            head = int(await chain.call("eth_blockNumber", []), 16)
            level = [intent(victim(), head, "adopted")]
            _, presigned = await ex.volley.presign(level, GWEI)
            monkeypatch.setattr(bundles_ahead, "settle", ends_first)
            [follow] = await ex.launch(level, GWEI, presigned, backrun=Backrun(hinted(net)))
            follow.close()
            assert first_journal.get(level[0].opportunity.key) is None  # only on file
        monkeypatch.undo()
        signed = presigned[level[0].opportunity.key]
        with Journal(path) as journal:
            ex = executor(net, chain, journal, accounts)
            await ex.start()
            assert isinstance(ex.bundles, AheadSubmitter)
            [live] = ex.bundles.book.live()
            lane = ex.bundles.lanes.by_address(live.sender)
            assert lane is not None and lane.index == 1 and live.nonce == signed.nonce
            assert lane.nonces.next_nonce == signed.nonce + 1  # never handed out again
            [job] = ex.recovery()
            recovered = asyncio.ensure_future(job[2])
            await built(net, [recovered])
            ex.checkpoint()
            emptied = ex.bundles.ahead_log.path.read_text()
    assert recovered.result().status == "confirmed"
    assert recovered.result().tx_hash == signed.tx_hash
    assert emptied == ""


async def test_a_first_wave_intent_left_without_a_lane_is_claimable_again(
    net: Net, journal: Journal,
) -> None:
    """An armed level of two, signed ahead while the lanes were free; by the fire, other
    bundles hold every lane but one. The first goes ahead of the database on that lane, the
    second finds none: claimed in memory only, it ends send-failed (it ended in error on
    "journal: no intent with key", in 3 of 8 auction runs), and a later send of its key is
    claimed and recorded in the database before its bundle leaves."""
    accounts = funded(net, 3)
    async with started(net, journal, accounts) as (_chain, ex, head):
        assert isinstance(ex.bundles, AheadSubmitter)
        level = [intent(victim(), head, f"crowded{n}") for n in range(2)]
        _, presigned = await ex.volley.presign(level, GWEI)
        assert len(presigned) == 2 and all(p.claimable for p in presigned.values())
        lanes = ex.bundles.lanes
        busy: list[Lane] = []
        while lanes.free > 1:  # other bundles took the lanes meanwhile
            lane = lanes.take(f"0xbusy{len(busy)}", own_tokens=False)
            assert lane is not None
            busy.append(lane)
        follows = await ex.launch(level, GWEI, presigned, backrun=Backrun(hinted(net)))
        tasks = [asyncio.ensure_future(f) for f in follows]
        await built(net, tasks)
        first, second = (t.result() for t in tasks)
        left = journal.get(level[1].opportunity.key)
        for lane in busy:
            lane.let_go()
        # Sent again later (the lanes free), not signed ahead: the database way.
        [again] = await ex.launch(level[1:], GWEI, backrun=Backrun(hinted(net)))
        recorded = journal.get(level[1].opportunity.key)
        retry = asyncio.ensure_future(again)
        await built(net, [retry])
    assert first.status == "confirmed", first
    assert (second.status, second.reason) == ("send-failed",
                                              "every nonce lane holds a bundle"), second
    assert left is None  # its claim never reached the database
    assert ex.bundles.sent_ahead == 1
    assert recorded is not None and len(recorded.transactions) == 1
    assert retry.result().status == "confirmed", retry.result()
    assert retry.result().tx_hash == recorded.transactions[0].tx_hash

"""Bundle submission (keeper/execution/bundles.py) against the devnet builder: one signed
transaction at two builders for three blocks lands once; an outbid bundle is `lost` while
the liquidation after it lands on another nonce lane; a bundle not included while the
position is still there is sent again; and after a restart the nonce of a bundle that can
still land is never signed for anything else.

The "liquidations" call ONCE, a contract that logs the account as an indexed topic (as a
lending protocol's liquidation event does) and reverts if that account was already taken:
a rival's transaction taking it first makes ours revert, so the builder drops our bundle.
The builder's timer is off: each test decides when a block is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from keeper.anvil import Anvil
from keeper.chain.http import HttpRpc
from keeper.devnet.builder import running_builder
from keeper.errors import ConfigError
from keeper.execution.builders import BuilderClient, BuilderEndpoint
from keeper.execution.bundles import Backrun, BundleSetup
from keeper.execution.bundles_executor import BundleExecutor
from keeper.execution.fees import FeePolicy
from keeper.execution.journal import Journal
from keeper.types import Call, Opportunity, Outcome, TxIntent
from tests.factories import candidate
from tests.integration.builder_client import SEARCHER_KEY, Client

GWEI = 10**9
TIMEOUT = 30.0
ONCE = "0x00000000000000000000000000000000000fee05"
# CALLDATALOAD(0) is the account; revert if its slot is set; set it; LOG2(0, 0, 42, account).
ONCE_CODE = "0x600035805415600d57600080fd5b60018155602a60006000a200"


@dataclass
class Net:
    anvil: Anvil
    client: Client  # plain JSON-RPC at endpoint 0 (blocks, rival transactions)
    endpoints: list[BuilderEndpoint]


def builder_net() -> Iterator[Net]:
    """The devnet builder (two endpoints, blocks on demand) with the ONCE contract set; the
    module fixtures of the bundle tests are this."""
    with running_builder(interval=0) as (anvil, thread):
        anvil.rpc("anvil_setCode", ONCE, ONCE_CODE)
        yield Net(anvil, Client(thread.urls[0]),
                  [BuilderEndpoint("devnet-0", thread.urls[0]),
                   BuilderEndpoint("devnet-1", thread.urls[1])])


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    yield from builder_net()


def funded(net: Net, count: int) -> list[LocalAccount]:
    accounts = [Account.from_key("0x" + secrets.token_hex(32)) for _ in range(count)]
    for account in accounts:
        net.anvil.rpc("anvil_setBalance", account.address, hex(10 * 10**18))
    return accounts


def hinted(net: Net) -> str:
    """A private transaction announced on the hint stream, sent by a fresh account (the
    oracle network's transmitter's stand-in); its hash."""
    [oracle] = funded(net, 1)
    net.client.accounts.append(oracle)
    raw, tx_hash = net.client.tx(len(net.client.accounts) - 1,
                                 net.client.accounts[0].address, value=1)
    net.client("eth_sendPrivateTransaction", {"tx": raw})
    return tx_hash


def intent(account: str, block: int, tag: str) -> TxIntent:
    opp = Opportunity(
        strategy="aave_v3", key=f"test:bundle:{tag}", account=account, collateral=ONCE,
        debt=ONCE, debt_to_cover=1, collateral_received=1, gross_value=10**16, slippage=0,
        gas_limit=100_000, gas_cost=10**15, net_profit=10**16, quote_token=ONCE,
        health_factor=9 * 10**17, block=block, candidate=candidate())
    return TxIntent(opp, Call(ONCE, "0x" + account.removeprefix("0x").rjust(64, "0")),
                    60_000, None)


def victim() -> str:
    return "0x" + secrets.token_hex(20)


CLIENTS: list[BuilderClient] = []


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    """Every builder client a test made is closed after it."""
    yield
    while CLIENTS:
        await CLIENTS.pop().close()


def executor(net: Net, chain: HttpRpc, journal: Journal,
             accounts: list[LocalAccount]) -> BundleExecutor:
    client = BuilderClient(net.endpoints, Account.from_key(SEARCHER_KEY))
    CLIENTS.append(client)
    setup = BundleSetup(client, lanes=accounts[1:], blocks=3, poll=0.02)
    return BundleExecutor(chain, accounts[0], journal, FeePolicy(100 * GWEI, GWEI),
                          appraise=lambda c, d, got, paid, gas: -gas,
                          still_there=lambda strategy, account: True, bundles=setup)


@contextlib.asynccontextmanager
async def started(net: Net, journal: Journal, accounts: list[LocalAccount],
                  ) -> AsyncIterator[tuple[HttpRpc, BundleExecutor, int]]:
    """A started `executor` on the builder's chain: the chain, the executor and the head."""
    async with HttpRpc(net.endpoints[0].url) as chain:
        ex = executor(net, chain, journal, accounts)
        await ex.start()
        yield chain, ex, int(await chain.call("eth_blockNumber", []), 16)


async def built(net: Net, follows: list[asyncio.Task[Outcome]], *, most: int = 12) -> None:
    """Build blocks until every follow is done (at most `most`)."""
    for _ in range(most):
        if all(f.done() for f in follows):
            return
        await asyncio.to_thread(net.client.build)
        await asyncio.sleep(0.1)  # the follows read the new head
    await asyncio.wait_for(asyncio.gather(*follows), TIMEOUT)


def tx_of(net: Net, tx_hash: str) -> dict[str, object]:
    found = net.client("eth_getTransactionByHash", tx_hash)
    assert isinstance(found, dict)
    return found


async def extended_past(ex: BundleExecutor, tx_hash: str, block: int,
                        follow: asyncio.Future[Outcome], timeout: float = 30.0) -> int | None:
    """The last target block of `tx_hash`'s bundle once it is past `block` (resubmitted as a
    new range), or what it is after `timeout` s; polled, as a loaded machine takes its time
    (a fixed 4 s failed once in CI). The follow must not have ended meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        extended = ex.bundles.book.last_block(tx_hash)
        if (extended is not None and extended > block) or time.monotonic() > deadline:
            return extended
        assert not follow.done(), follow.result()
        await asyncio.sleep(0.02)


async def test_one_transaction_at_two_builders_for_three_blocks_lands_once(
    net: Net, journal: Journal,
) -> None:
    accounts = funded(net, 1)
    async with started(net, journal, accounts) as (_chain, ex, head):
        [follow] = await ex.launch([intent(victim(), head, "once")], base_fee=GWEI)
        task = asyncio.ensure_future(follow)
        live = ex.bundles.book.live()
        assert [(t.first_block, t.last_block) for t in live] == [(head + 1, head + 3)]
        await built(net, [task])
        outcome = task.result()
    assert outcome.status == "confirmed", outcome
    assert outcome.block == head + 1  # its first target block
    report = net.client("builder_blocks")[-1]
    fates = [b for b in report["bundles"] if b["status"] == "included"]
    assert len(fates) == 1 and fates[0]["endpoints"] == [0, 1]  # both builders, one bundle
    assert report["transactions"].count(outcome.tx_hash) == 1
    record = journal.get("test:bundle:once")
    assert record is not None and record.status == "confirmed"
    assert [t.status for t in record.transactions] == ["confirmed"]
    assert ex.bundles.book.live() == [] and ex.bundles.lanes.free == 1


async def test_outbid_is_lost_and_the_next_liquidation_takes_another_lane(
    net: Net, journal: Journal,
) -> None:
    accounts = funded(net, 2)
    [rival] = funded(net, 1)
    contested, other, later = victim(), victim(), victim()
    async with started(net, journal, accounts) as (chain, ex, head):
        # A rival bids 50 gwei a gas for the same account, for the same blocks.
        net.client.accounts.append(rival)
        raw, rival_hash = net.client.tx(len(net.client.accounts) - 1, ONCE, tip_gwei=50,
                                        data="0x" + contested[2:].rjust(64, "0"))
        for block in range(head + 1, head + 4):
            net.client("eth_sendBundle", {"txs": [raw], "blockNumber": hex(block)})
        follows = await ex.launch([intent(contested, head, "contested"),
                                   intent(other, head, "other")], base_fee=GWEI)
        lanes_used = {t.key: t.sender for t in ex.bundles.book.live()}
        tasks = [asyncio.ensure_future(f) for f in follows]
        await built(net, tasks)
        lost, won = (t.result() for t in tasks)
        # Lane 1's nonce is free again: the next liquidation signs it anew and lands (a
        # flash liquidation takes the other lanes before lane 0, the account's own).
        nonce = int(await chain.call("eth_getTransactionCount",
                                     [accounts[1].address, "latest"]), 16)
        now = int(await chain.call("eth_blockNumber", []), 16)
        [follow] = await ex.launch([intent(later, now, "later")], base_fee=GWEI)
        task = asyncio.ensure_future(follow)
        await built(net, [task])
        again = task.result()
    assert lanes_used == {"test:bundle:contested": accounts[1].address.lower(),
                          "test:bundle:other": accounts[0].address.lower()}
    assert lost.status == "lost" and lost.winner == rival_hash, lost
    assert lost.reason.startswith("outbid")
    assert won.status == "confirmed", won  # not held up behind the outbid nonce
    assert again.status == "confirmed", again
    mined = tx_of(net, again.tx_hash)
    assert str(mined["from"]).lower() == accounts[1].address.lower()
    assert int(str(mined["nonce"]), 16) == nonce  # the outbid transaction's nonce, reused
    record = journal.get("test:bundle:contested")
    assert record is not None and record.status == "dropped"


async def test_a_bundle_not_included_is_sent_again_while_the_position_is_there(
    net: Net, journal: Journal,
) -> None:
    """Not included for want of gas money (its call still succeeds): the same bytes again."""
    accounts = funded(net, 1)
    account = victim()
    async with started(net, journal, accounts) as (_chain, ex, head):
        # The lane cannot pay its gas: the builder drops our bundle meanwhile (an eth_call
        # of it, without fees, still succeeds: worth sending again).
        net.anvil.rpc("anvil_setBalance", accounts[0].address, "0x0")
        [follow] = await ex.launch([intent(account, head, "again")], base_fee=GWEI)
        task = asyncio.ensure_future(follow)
        [first] = ex.bundles.book.live()
        for _ in range(3):
            await asyncio.to_thread(net.client.build)
        # The follow sees the last target block pass, and resends.
        extended = await extended_past(ex, first.tx_hash, first.last_block, task)
        assert extended is not None and extended > first.last_block
        net.anvil.rpc("anvil_setBalance", accounts[0].address, hex(10 * 10**18))
        await built(net, [task])
        outcome = task.result()
    assert outcome.status == "confirmed", outcome
    assert outcome.tx_hash == first.tx_hash  # the same signed bytes, never re-signed
    assert outcome.block > first.last_block


async def test_a_bundle_not_included_that_reverts_now_is_ranked_again_not_resent(
    net: Net, journal: Journal,
) -> None:
    """Dropped by the builders because it reverts (a flash exit priced before the pools
    moved, here the ONCE slot set without a log): as signed it would be dropped again, so it
    ends `send-failed` (claimable again) instead of going out for 3 blocks more."""
    accounts = funded(net, 1)
    account = victim()
    slot = "0x" + account[2:].rjust(64, "0")
    async with started(net, journal, accounts) as (_chain, ex, head):
        net.anvil.rpc("anvil_setStorageAt", ONCE, slot, "0x" + "00" * 31 + "01")
        [follow] = await ex.launch([intent(account, head, "stale")], base_fee=GWEI)
        task = asyncio.ensure_future(follow)
        [first] = ex.bundles.book.live()
        await built(net, [task])
        outcome = task.result()
        lane = ex.bundles.lanes.lanes[0]
        assert lane.holder is None  # free for the next one
        assert ex.bundles.book.last_block(first.tx_hash) == first.last_block  # not resent
    assert outcome.status == "send-failed", outcome
    assert "reverts now" in (outcome.reason or ""), outcome


async def test_after_a_restart_a_nonce_stays_taken_while_its_bundle_can_land(
    net: Net, tmp_path: Path,
) -> None:
    accounts = funded(net, 2)
    path = tmp_path / "restart.sqlite"
    async with HttpRpc(net.endpoints[0].url) as chain:
        with Journal(path) as first_journal:
            ex = executor(net, chain, first_journal, accounts)
            await ex.start()
            head = int(await chain.call("eth_blockNumber", []), 16)
            [follow] = await ex.launch([intent(victim(), head, "before")], base_fee=GWEI)
            follow.close()  # the process dies here: the bundles are out, nothing followed
            [sent] = ex.bundles.book.live()
        with Journal(path) as journal:
            ex = executor(net, chain, journal, accounts)
            await ex.start()
            lane1 = ex.bundles.lanes.lanes[1]  # a flash liquidation takes lane 0 last
            assert lane1.holder == sent.tx_hash  # held by the bundle that can still land
            jobs = ex.recovery()
            assert len(jobs) == 1  # the bundle submitter's: never the public recovery's
            assert ex._recovery.jobs(reorged=True) == []  # nor its reorg handling's
            recovered = asyncio.ensure_future(jobs[0][2])
            [follow] = await ex.launch([intent(victim(), head, "after")], base_fee=GWEI)
            later = asyncio.ensure_future(follow)
            signed = {t.key: (t.sender, t.nonce) for t in ex.bundles.book.live()}
            await built(net, [recovered, later])
    assert signed["test:bundle:before"] == (accounts[1].address.lower(), sent.nonce)
    assert signed["test:bundle:after"][0] == accounts[0].address.lower()
    assert recovered.result().status == "confirmed"
    assert recovered.result().tx_hash == sent.tx_hash
    assert later.result().status == "confirmed"
    with Journal(path) as journal:
        record = journal.get("test:bundle:before")
        assert record is not None and [t.status for t in record.transactions] == ["confirmed"]


async def test_a_dispatch_backruns_a_hinted_transaction_in_one_bundle(
    net: Net, journal: Journal,
) -> None:
    """Every liquidation of one dispatch behind the hinted (private) oracle transaction, in
    one mev_sendBundle: a builder includes one bundle holding a given transaction (the best
    one leaves first in a bundle of its own, which the whole dispatch's replaces)."""
    accounts = funded(net, 2)
    hinted_hash = hinted(net)
    async with started(net, journal, accounts) as (_chain, ex, head):
        follows = await ex.launch([intent(victim(), head, "first"),
                                   intent(victim(), head, "second")],
                                  base_fee=GWEI, backrun=Backrun(hinted_hash))
        tasks = [asyncio.ensure_future(f) for f in follows]
        await built(net, tasks)
        first, second = (t.result() for t in tasks)
    assert first.status == second.status == "confirmed", (first, second)
    assert first.block == second.block == head + 1  # the oracle transaction's block
    block = net.client("eth_getBlockByNumber", hex(first.block), False)["transactions"]
    at = block.index(hinted_hash)
    assert block[at + 1:at + 3] == [first.tx_hash, second.tx_hash]  # right behind it
    fates = [b for b in net.client("builder_blocks")[-1]["bundles"]
             if b["kind"] == "mev_sendBundle"]
    # The first wave (the best one alone) gave way to the bundle holding both.
    assert sorted(b["status"] for b in fates) == ["dropped", "included"]


async def test_a_backrun_whose_target_was_mined_without_it_is_judged_at_once(
    net: Net, journal: Journal,
) -> None:
    """The hinted oracle transaction is mined without our backrun (our lane could not pay
    its gas): the bundle can no longer land, so it is sent again alone right after that
    block, not after its last target block two blocks later."""
    accounts = funded(net, 1)
    hinted_hash = hinted(net)
    async with started(net, journal, accounts) as (_chain, ex, head):
        net.anvil.rpc("anvil_setBalance", accounts[0].address, "0x0")
        [follow] = await ex.launch([intent(victim(), head, "late")], base_fee=GWEI,
                                   backrun=Backrun(hinted_hash))
        task = asyncio.ensure_future(follow)
        [sent] = ex.bundles.book.live()
        assert sent.last_block == head + 3
        await asyncio.to_thread(net.client.build)  # the oracle transaction, without ours
        assert net.client("eth_getTransactionReceipt", hinted_hash)["blockNumber"] == hex(
            head + 1)
        # Judged after this one block: sent again alone.
        extended = await extended_past(ex, sent.tx_hash, sent.last_block, task)
        assert extended == head + 1 + 3  # from the next block on, as a new range
        net.anvil.rpc("anvil_setBalance", accounts[0].address, hex(10 * 10**18))
        await built(net, [task])
        outcome = task.result()
    assert outcome.status == "confirmed", outcome
    assert outcome.tx_hash == sent.tx_hash and outcome.block == head + 2


async def test_a_lane_that_is_not_an_operator_of_the_flash_executor_stops_the_start(
    net: Net, journal: Journal,
) -> None:
    accounts = funded(net, 2)
    refusing, allowing = "0x" + "0f" * 20, "0x" + "1f" * 20
    net.anvil.rpc("anvil_setCode", refusing, "0x60206000f3")  # operators(...) -> false
    net.anvil.rpc("anvil_setCode", allowing, "0x600160005260206000f3")  # -> true
    async with HttpRpc(net.endpoints[0].url) as chain:
        client = BuilderClient(net.endpoints, Account.from_key(SEARCHER_KEY))
        CLIENTS.append(client)
        for target, fine in ((refusing, False), (allowing, True)):
            ex = BundleExecutor(chain, accounts[0], journal, FeePolicy(100 * GWEI, GWEI),
                                appraise=lambda c, d, got, paid, gas: -gas,
                                flash_executor=target,
                                bundles=BundleSetup(client, lanes=accounts[1:]))
            if fine:
                await ex.start()
                continue
            with pytest.raises(ConfigError, match="not an operator") as info:
                await ex.start()
            assert accounts[1].address.lower() in str(info.value)


async def test_a_dispatch_backruns_a_pending_public_transaction_in_one_bundle(
    net: Net, journal: Journal,
) -> None:
    """Behind a pending public oracle transaction: eth_sendBundle [its raw bytes, ours...],
    for the next block and the two after it; they land in the next block, right behind it,
    and the public copy is not mined twice."""
    accounts = funded(net, 2)
    [oracle] = funded(net, 1)
    net.client.accounts.append(oracle)
    pending, pending_hash = net.client.tx(len(net.client.accounts) - 1,
                                          net.client.accounts[0].address, value=1)
    net.client("eth_sendRawTransaction", pending)  # in the public pool
    async with started(net, journal, accounts) as (_chain, ex, head):
        follows = await ex.launch([intent(victim(), head, "raw1"), intent(victim(), head, "raw2")],
                                  base_fee=GWEI, backrun=Backrun(pending_hash, pending))
        tasks = [asyncio.ensure_future(f) for f in follows]
        await built(net, tasks)
        first, second = (t.result() for t in tasks)
    assert first.status == second.status == "confirmed", (first, second)
    assert first.block == second.block == head + 1
    block = net.client("eth_getBlockByNumber", hex(first.block), False)["transactions"]
    at = block.index(pending_hash)
    assert block[at:at + 3] == [pending_hash, first.tx_hash, second.tx_hash]
    assert block.count(pending_hash) == 1


async def test_after_a_restart_an_expired_bundles_nonce_is_signed_anew(
    net: Net, tmp_path: Path,
) -> None:
    """A bundle of an earlier run whose last target block passed without it, the position
    gone meanwhile: after the restart it is `lost` (to the market), its nonce given back,
    and the next liquidation on that lane signs that very nonce."""
    accounts = funded(net, 1)
    path = tmp_path / "expired.sqlite"
    account = victim()
    slot = "0x" + account[2:].rjust(64, "0")
    async with HttpRpc(net.endpoints[0].url) as chain:
        with Journal(path) as first_journal:
            ex = executor(net, chain, first_journal, accounts)
            await ex.start()
            head = int(await chain.call("eth_blockNumber", []), 16)
            net.anvil.rpc("anvil_setStorageAt", ONCE, slot, "0x" + "00" * 31 + "01")  # taken
            [follow] = await ex.launch([intent(account, head, "gone")], base_fee=GWEI)
            follow.close()  # the process dies; its bundles are out for 3 blocks
            [sent] = ex.bundles.book.live()
        for _ in range(4):  # every target block passes without it
            await asyncio.to_thread(net.client.build)
        with Journal(path) as journal:
            client = BuilderClient(net.endpoints, Account.from_key(SEARCHER_KEY))
            CLIENTS.append(client)
            ex = BundleExecutor(chain, accounts[0], journal, FeePolicy(100 * GWEI, GWEI),
                                appraise=lambda c, d, got, paid, gas: -gas,
                                still_there=lambda strategy, who: False,  # gone meanwhile
                                bundles=BundleSetup(client, poll=0.02))
            await ex.start()
            [(_, _, job)] = ex.recovery()
            outcome = await asyncio.wait_for(job, TIMEOUT)
            assert outcome.status == "lost" and "no longer liquidatable" in outcome.reason
            record = journal.get("test:bundle:gone")
            assert record is not None and record.status == "dropped"
            head = int(await chain.call("eth_blockNumber", []), 16)
            [follow] = await ex.launch([intent(victim(), head, "next")], base_fee=GWEI)
            task = asyncio.ensure_future(follow)
            await built(net, [task])
    assert task.result().status == "confirmed"
    mined = tx_of(net, task.result().tx_hash)
    assert int(str(mined["nonce"]), 16) == sent.nonce  # the expired bundle's nonce, reused


async def test_a_group_whose_journal_write_fails_sends_nothing_and_frees_everything(
    net: Net, journal: Journal, monkeypatch: pytest.MonkeyPatch,
) -> None:
    accounts = funded(net, 2)
    async with started(net, journal, accounts) as (_chain, ex, head):
        nonces = [lane.nonces.next_nonce for lane in ex.bundles.lanes]

        def disk_full(*args: object, **kwargs: object) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(ex.bundles.book, "record_signed_all", disk_full)
        intents = [intent(victim(), head, "g1"), intent(victim(), head, "g2")]
        arrived = len(net.client("builder_arrivals")["bundles"])
        with pytest.raises(OSError, match="disk full"):
            await ex.launch(intents, base_fee=GWEI, backrun=Backrun("0x" + "ee" * 32))
        assert len(net.client("builder_arrivals")["bundles"]) == arrived  # nothing sent
        assert ex.bundles.lanes.free == 2
        record = journal.get("test:bundle:g1")
        assert record is not None and record.status == "abandoned"  # claimable again
        # The rest of a backrun is claimed once its first wave has left: never claimed.
        assert journal.get("test:bundle:g2") is None
        # The nonces were never used: handed out again, the lowest first.
        assert [await lane.nonces.reserve() for lane in ex.bundles.lanes] == nonces


async def test_one_intent_that_cannot_be_signed_leaves_the_others_sent_and_followed(
    net: Net, journal: Journal, monkeypatch: pytest.MonkeyPatch,
) -> None:
    accounts = funded(net, 2)
    async with started(net, journal, accounts) as (_chain, ex, head):

        async def broken(*args: object) -> tuple[str, str]:
            raise ValueError("the signer is gone")

        # The second takes lane 0 (flash liquidations take the other lanes first).
        monkeypatch.setattr(ex.bundles.lanes.lanes[0].sender, "sign", broken)
        follows = await ex.launch([intent(victim(), head, "fine"),
                                   intent(victim(), head, "broken")], base_fee=GWEI)
        tasks = [asyncio.ensure_future(f) for f in follows]
        await built(net, tasks)
        fine, failed = (t.result() for t in tasks)
    assert fine.status == "confirmed", fine
    assert failed.status == "error" and "the signer is gone" in failed.reason
    record = journal.get("test:bundle:broken")
    assert record is not None and record.status == "abandoned"  # claimable again
    assert ex.bundles.lanes.free == 2

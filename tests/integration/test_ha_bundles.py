"""`[ha]` in bundle mode: bundle submission (keeper/execution/bundles.py) on the shared
PostgreSQL journal (keeper/execution/journal_pg.py) against the devnet builder.

Real parts only: an anvil behind the devnet builder (two endpoints, blocks built when the
test says), the session's PostgreSQL server (tests/conftest.py `postgres`), and
`BundleExecutor`s on `PgJournal`s of one schema, as `keeper run` builds them with `[ha]`.
The takeover is the lease row's epoch raised (as a standby's lease thread does) and the
promotion `Replica._promote`'s steps: the journal writes under the new epoch, the executor
starts again, and its recovery jobs run (what `Dispatcher.promoted` runs).

- A leader's bundle lands once and is journaled in PostgreSQL before it leaves: its
  transaction under the leader's epoch, its `bundle_txs` row with the lane and blocks.
- `keeper run` with `[ha]` in bundle mode (the daemon's own wiring: `open_replica`,
  the executor on the replica's journal) sends a crash's liquidations as bundles, journaled
  in PostgreSQL under its epoch.
- A leader whose lease is taken while its bundle is out: its writes are fenced (a new
  liquidation is refused, nothing is sent), and the new leader, from the shared journal,
  follows the old leader's bundled transaction, sends the same bytes again when its last
  target block passed without it, and settles it once.

The liquidation stand-in is tests/integration/test_bundles.py's ONCE contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from keeper.chain.http import HttpRpc
from keeper.devnet.builder import BuilderThread, restart_for_builder
from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.devnet.tokens import post_price
from keeper.execution.builders import BuilderClient
from keeper.execution.bundles import BundleSetup
from keeper.execution.bundles_executor import BundleExecutor
from keeper.execution.fees import FeePolicy
from keeper.execution.journal_pg import Fenced, PgJournal
from tests.conftest import Devnet, wait_for
from tests.integration.builder_client import SEARCHER_KEY
from tests.integration.ha_cluster import LEADING, RecordingProxy, Replica, replica_config
from tests.integration.helpers import SPECS
from tests.integration.test_bundles import (
    GWEI,
    TIMEOUT,
    Net,
    builder_net,
    built,
    funded,
    intent,
    victim,
)
from tests.unit.test_journal_pg import ACCOUNT, leading, schema_of, set_epoch


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    yield from builder_net()


@contextlib.asynccontextmanager
async def replica_executor(net: Net, journal: PgJournal, account: LocalAccount,
                           ) -> AsyncIterator[tuple[BundleExecutor, int]]:
    """A started `BundleExecutor` of `account` on `journal` (a replica's), and the head."""
    client = BuilderClient(net.endpoints, Account.from_key(SEARCHER_KEY))
    try:
        async with HttpRpc(net.endpoints[0].url) as chain:
            ex = BundleExecutor(
                chain, account, journal, FeePolicy(100 * GWEI, GWEI),
                appraise=lambda c, d, got, paid, gas: -gas,
                still_there=lambda strategy, account: True,
                bundles=BundleSetup(client, blocks=3, poll=0.02))
            await ex.start()
            yield ex, int(await chain.call("eth_blockNumber", []), 16)
    finally:
        await client.close()


def pg_rows(dsn: str, schema: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        return list(conn.execute(query).fetchall())


async def polled(check: Callable[[], bool], what: str) -> None:
    for _ in range(int(TIMEOUT / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_leaders_bundle_is_journaled_in_postgresql_and_lands_once(
    net: Net, postgres: str,
) -> None:
    schema = schema_of("ha-bundle-lands")
    journal = leading(postgres, schema)
    [account] = funded(net, 1)
    try:
        async with replica_executor(net, journal, account) as (ex, head):
            [follow] = await ex.launch([intent(victim(), head, "ha-lands")], base_fee=GWEI)
            task = asyncio.ensure_future(follow)
            # On the server before any builder saw it: the row, its lane, its blocks.
            [(tx_hash, sender, first, last, status, epoch)] = pg_rows(
                postgres, schema, "SELECT t.tx_hash, b.sender, b.first_block, b.last_block,"
                " t.status, t.epoch FROM transactions t JOIN bundle_txs b USING (tx_hash)")
            assert (sender, first, last, epoch) == (account.address.lower(), head + 1,
                                                    head + 3, 1)
            assert status in ("signed", "sent")
            await built(net, [task])
            outcome = task.result()
        assert outcome.status == "confirmed" and outcome.tx_hash == tx_hash, outcome
        assert outcome.block == head + 1
        report = net.client("builder_blocks")[-1]
        assert report["transactions"].count(tx_hash) == 1
        assert pg_rows(postgres, schema, "SELECT t.status, i.status FROM transactions t"
                       " JOIN intents i ON i.key = t.intent_key") == [("confirmed",
                                                                       "confirmed")]
    finally:
        journal.close()


async def test_the_new_leader_settles_the_old_leaders_bundle_from_the_shared_journal(
    net: Net, postgres: str,
) -> None:
    schema = schema_of("ha-bundle-takeover")
    held = [True]  # the old leader's lease, in memory
    old = leading(postgres, schema, held=lambda: held[0])
    new = PgJournal(postgres, schema, ACCOUNT, held=lambda: True)  # a standby: no epoch
    [account] = funded(net, 1)
    victim_account = victim()
    try:
        async with replica_executor(net, new, account) as (standby, _), \
                replica_executor(net, old, account) as (leader, head):
            # The lane cannot pay its gas: the builders drop the bundle until it can (an
            # eth_call of it, without fees, still succeeds: worth resending, not re-ranking).
            net.anvil.rpc("anvil_setBalance", account.address, "0x0")
            [follow] = await leader.launch([intent(victim_account, head, "ha-takeover")],
                                           base_fee=GWEI)
            task = asyncio.ensure_future(follow)
            [bundled] = leader.bundles.book.live()

            def marked_sent() -> bool:
                record = old.get("test:bundle:ha-takeover")
                return record is not None and record.status == "sent"

            await polled(marked_sent, "the leader's sent mark")
            # The takeover: another replica's lease thread raises the epoch; the old
            # leader's lease lapses in memory and its loop is cancelled with what it had
            # in flight (keeper/ha/replica.py).
            set_epoch(postgres, schema, 2)
            held[0] = False
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            # The old leader can journal nothing more, so it sends nothing new.
            [refused] = await leader.launch([intent(victim(), head, "ha-after")], base_fee=GWEI)
            assert (await refused).status == "error"
            with pytest.raises(Fenced):
                leader.bundles.book.extend(bundled.tx_hash, head + 9)
            # Promotion: the standby writes under the new epoch, starts again (its lane
            # is held by the old leader's live transaction) and runs its recovery.
            new.epoch = 2
            await standby.start()
            assert standby.bundles.lanes.free == 0
            jobs = standby.recovery()
            assert [(strategy, who) for strategy, who, _ in jobs] == [("aave_v3",
                                                                       victim_account)]
            settling = [asyncio.ensure_future(job) for _, _, job in jobs]
            for _ in range(3):  # its last target block passes without it
                await asyncio.to_thread(net.client.build)
            await polled(lambda: (standby.bundles.book.last_block(bundled.tx_hash) or 0)
                         > bundled.last_block, "the new leader's resubmission")
            net.anvil.rpc("anvil_setBalance", account.address, hex(10 * 10**18))
            await built(net, settling)
            [outcome] = [t.result() for t in settling]
        assert outcome.status == "confirmed", outcome
        assert outcome.tx_hash == bundled.tx_hash  # the old leader's bytes, never re-signed
        assert outcome.block is not None and outcome.block > bundled.last_block
        rows = pg_rows(postgres, schema, "SELECT t.intent_key, t.status, t.epoch, b.last_block"
                       " FROM transactions t JOIN bundle_txs b USING (tx_hash)")
        assert [(k, s, e) for k, s, e, _ in rows] == [("test:bundle:ha-takeover",
                                                       "confirmed", 1)]
        assert rows[0][3] > bundled.last_block  # raised under the new leader's epoch
        assert old.get("test:bundle:ha-after") is None
        assert standby.bundles.lanes.free == 1
    finally:
        old.close()
        new.close()


async def test_a_standby_leads_with_the_lanes_the_old_leader_freed_meanwhile(
    net: Net, postgres: str,
) -> None:
    """A standby starts (at boot) while the leader's bundled transaction may still land and
    holds its lane in its books; the transaction is mined before the takeover: the new
    leader's start frees that lane again (nothing of it is left to recover)."""
    schema = schema_of("ha-bundle-lanes")
    old = leading(postgres, schema)
    new = PgJournal(postgres, schema, ACCOUNT, held=lambda: True)
    [account] = funded(net, 1)
    try:
        async with replica_executor(net, old, account) as (leader, head):
            [follow] = await leader.launch([intent(victim(), head, "ha-lanes")], base_fee=GWEI)
            task = asyncio.ensure_future(follow)
            async with replica_executor(net, new, account) as (standby, _):
                assert standby.bundles.lanes.free == 0  # the leader's bundle may land
                await built(net, [task])
                assert task.result().status == "confirmed"
                set_epoch(postgres, schema, 2)
                new.epoch = 2
                await standby.start()
                assert standby.bundles.lanes.free == 1
                assert standby.recovery() == []
    finally:
        old.close()
        new.close()


def test_a_keeper_replica_in_bundle_mode_sends_bundles_journaled_in_postgresql(
    postgres: str, tmp_path: Path,
) -> None:
    """`keeper run` with `[ha]` and `execution.submitter = "bundle"` on the default devnet
    behind the builder (`keeper devnet --builder`: blocks every second): it leads, and a
    price drop's liquidations go to the builder as bundles (none through the public
    `eth_sendRawTransaction` its recording proxy sees), are mined, and are journaled in
    PostgreSQL under its epoch with their lane and target blocks."""
    schema = "ha_bundle_daemon"
    anvil, info, _cached = start_devnet(DevnetSpec())
    try:
        anvil = restart_for_builder(anvil)
        builder = BuilderThread(anvil.rpc_url, interval=1.0).start()
    except BaseException:
        anvil.stop()
        raise
    info = info.model_copy(update={"rpc_url": builder.urls[0], "ws_url": anvil.ws_url})
    w3 = Web3(Web3.HTTPProvider(info.rpc_url, request_kwargs={"timeout": 60}))
    devnet = Devnet(anvil, info, w3)
    proxy = RecordingProxy(info.rpc_url)
    config = replica_config(devnet, tmp_path / "a", proxy=proxy, dsn=postgres,
                            schema=schema, name="a")
    text = config.read_text().replace('[execution]\nmode = "live"\n',
                                      '[execution]\nmode = "live"\nsubmitter = "bundle"\n')
    config.write_text(text + f'\n[[execution.builders]]\nname = "devnet-0"\n'
                      f'url = "{builder.urls[0]}"\n\n[[execution.builders]]\n'
                      f'name = "devnet-1"\nurl = "{builder.urls[1]}"\n')
    replica = Replica("a", config, proxy)
    me = info.accounts.liquidator.lower()
    try:
        replica.start()
        wait_for(lambda: replica.alive() and replica.saw(LEADING), timeout=60,
                 what="the replica to lead")
        post_price(w3, info.feeds["WETH"], SPECS["WETH"].usd_price * Decimal("0.8"),
                   info.accounts.deployer)

        def mined() -> list[tuple[Any, ...]]:
            return pg_rows(postgres, schema, "SELECT t.tx_hash, t.raw_tx, t.epoch, b.sender,"
                           " b.first_block, b.last_block FROM transactions t JOIN bundle_txs b"
                           " USING (tx_hash) WHERE t.status = 'confirmed'")

        def some_mined() -> bool:
            assert replica.alive(), replica.tail()
            return bool(mined())

        wait_for(some_mined, timeout=45, what="a bundled liquidation mined")
        replica.signal(signal.SIGTERM)
        assert replica.process is not None
        assert replica.process.wait(timeout=30) == 0, replica.tail()
        rows = mined()
        assert rows
        public = {raw for _, raw in proxy.sends}
        for tx_hash, raw, epoch, sender, first, last in rows:
            assert (epoch, sender) == (1, me) and first <= last
            assert raw not in public  # a bundle's, never broadcast publicly
            receipt = w3.eth.get_transaction_receipt(tx_hash)
            assert receipt["status"] == 1 and first <= receipt["blockNumber"] <= last
    finally:
        replica.kill()
        proxy.close()
        builder.stop()
        anvil.stop()

"""Two replicas, one sender: the leader is killed (SIGKILL) at random points of a crash, and
once paused (SIGSTOP) and resumed (SIGCONT) after its standby took over.

Two `keeper run` processes of the devnet's liquidator share a journal in a real
PostgreSQL server (`[ha]`, the session's `postgres`), each sending through its own
recording proxy to anvil (tests/integration/ha_cluster.py). The WETH price falls in
steps; after each step the leader is killed at a seeded random moment within 1.5 s, the
standby takes over, and the killed one is started again as the new standby. Then the
leader is paused until its standby leads, and resumed. Asserted on the chain, the shared
journal and the proxies:

- a standby broadcasts nothing (its proxy saw no transaction while it was one);
- no opportunity got two different signed transactions from two leaders: each intent's
  transactions (those not dropped) carry one nonce and one epoch;
- none is lost from the journal: every transaction the account got mined is journaled
  (liquidations as confirmed or reverted), or is an approval or a nonce-freeing no-op;
- the nonces stay contiguous: the journal's and those no-ops' nonces are exactly
  start..the account's nonce, and nothing is left signed or sent;
- the paused-then-resumed leader broadcast nothing after it resumed, and exited with 75
  (lease lost: restart as a standby).

`KEEPER_HA_KILLS` sets the number of kills (3 here; 20 is the documented long run),
`KEEPER_HA_SEED` replays one.
"""

from __future__ import annotations

import os
import random
import signal
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from keeper.devnet.tokens import post_price
from tests.conftest import Devnet, Miner, wait_for
from tests.integration.ha_cluster import (
    LEADING,
    RUNNING,
    RecordingProxy,
    Replica,
    journal_rows,
    replica_config,
)
from tests.integration.helpers import SPECS, liquidator, mined_from
from tests.integration.test_crash_injection import LIQUIDATION_CALL

KILLS = int(os.environ.get("KEEPER_HA_KILLS", "3"))
SEED = int(os.environ.get("KEEPER_HA_SEED", "20261203"))
APPROVE = "0x095ea7b3"


def _until(replica: Replica, event: str, mine: Miner, what: str, timeout: float = 90) -> None:
    def seen() -> bool:
        assert replica.alive(), replica.tail()
        mine()
        return replica.saw(event)

    wait_for(seen, timeout=timeout, what=what)


def test_replicas_fail_over_without_sending_twice(
    devnet: Devnet, postgres: str, tmp_path: Path,
) -> None:
    schema = f"failover_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    proxies = [RecordingProxy(devnet.info.rpc_url) for _ in range(2)]
    replicas = [Replica(name, replica_config(devnet, tmp_path / name, proxy=proxy,
                                             dsn=postgres, schema=schema, name=name), proxy)
                for name, proxy in zip("ab", proxies, strict=True)]
    me = liquidator(devnet)
    start_block = devnet.w3.eth.block_number
    start_nonce = devnet.w3.eth.get_transaction_count(me)
    mine = Miner(devnet, every=0.25)
    rng = random.Random(SEED)
    takeovers: list[float] = []
    weth = SPECS["WETH"].usd_price
    try:
        leader, standby = replicas
        leader.start()
        _until(leader, LEADING, mine, "the first replica to lead")
        standby.start()
        _until(standby, RUNNING, mine, "the standby to run")
        quiet = len(standby.proxy.sends)  # what its proxy saw before: a standby sends nothing
        for kill in range(KILLS):
            # A further step of the crash, then the leader dies somewhere in its work.
            price = weth * (Decimal("0.9") - Decimal("0.1") * kill / max(KILLS, 1))
            post_price(devnet.w3, devnet.info.feeds["WETH"], price, devnet.info.accounts.deployer)
            deadline = time.monotonic() + rng.uniform(0.0, 1.5)
            while time.monotonic() < deadline:
                assert leader.alive(), leader.tail()
                mine()
                time.sleep(0.01)
            assert len(standby.proxy.sends) == quiet, "a standby broadcast"
            leader.kill()
            killed = time.monotonic()
            _until(standby, LEADING, mine, f"the standby to take over (kill {kill + 1})")
            takeovers.append(time.monotonic() - killed)
            leader.start()  # back, as the standby
            _until(leader, RUNNING, mine, "the restarted replica to run")
            quiet = len(leader.proxy.sends)
            leader, standby = standby, leader

        # Paused, not dead: the standby takes over; resumed, the old leader sends nothing.
        post_price(devnet.w3, devnet.info.feeds["WETH"], weth * Decimal("0.78"),
                   devnet.info.accounts.deployer)
        deadline = time.monotonic() + rng.uniform(0.0, 1.0)
        while time.monotonic() < deadline:
            mine()
            time.sleep(0.01)
        assert len(standby.proxy.sends) == quiet, "a standby broadcast"
        leader.signal(signal.SIGSTOP)
        _until(standby, LEADING, mine, "the standby to take over from the paused leader")
        paused_sends = len(leader.proxy.sends)
        post_price(devnet.w3, devnet.info.feeds["WETH"], weth * Decimal("0.7"),
                   devnet.info.accounts.deployer)  # work for the new leader only
        for _ in range(8):  # the new leader works a few blocks while the old one sleeps
            mine()
            time.sleep(0.25)
        resumed = time.monotonic()
        leader.signal(signal.SIGCONT)
        assert leader.process is not None
        assert leader.process.wait(timeout=60) == 75, leader.tail()
        after = [raw for at, raw in leader.proxy.sends if at >= resumed]
        assert after == [], "the resumed old leader broadcast after losing its lease"
        assert len(leader.proxy.sends) == paused_sends

        survivor = standby

        def settled() -> bool:
            assert survivor.alive(), survivor.tail()
            mine()
            rows = journal_rows(postgres, schema)
            return bool(rows) and all(r["status"] not in ("signed", "sent") for r in rows)

        wait_for(settled, timeout=120, what="the leader to settle every journaled send")
        survivor.signal(signal.SIGTERM)
        assert survivor.process is not None
        assert survivor.process.wait(timeout=60) == 0, survivor.tail()
    finally:
        for replica in replicas:
            replica.kill()
        for proxy in proxies:
            proxy.close()

    rows = journal_rows(postgres, schema)
    by_key: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault(row["key"], []).append(row)
    for key, txs in by_key.items():
        live = [t for t in txs if t["status"] != "dropped"]
        assert len({t["nonce"] for t in live}) <= 1, f"{key}: two nonces {live}"
        assert len({t["epoch"] for t in live}) <= 1, f"{key}: signed by two leaders {live}"
    confirmed = {r["hash"]: r["key"] for r in rows if r["status"] == "confirmed"}
    keys = list(confirmed.values())
    assert len(keys) == len(set(keys)), "an opportunity was confirmed twice"

    mined = mined_from(devnet, me, start_block, devnet.w3.eth.block_number)
    journaled = {r["hash"]: r for r in rows}
    topic = "0x" + LIQUIDATION_CALL.removeprefix("0x")
    liquidations = [tx for tx in mined if topic in tx["topics"]]
    assert liquidations, "no liquidation landed at all"
    assert {tx["hash"] for tx in liquidations} <= set(confirmed), "a liquidation is not journaled"
    others = [tx for tx in mined if tx["hash"] not in journaled]
    for tx in others:  # not journaled: only approvals and nonce-freeing no-ops
        assert tx["input"].startswith(APPROVE) or (tx["to"] == me.lower() and tx["input"] in (
            "0x", "")), tx
    nonce = devnet.w3.eth.get_transaction_count(me)
    assert sorted(tx["nonce"] for tx in mined) == list(range(start_nonce, nonce))
    used = {r["nonce"] for r in rows if r["status"] != "dropped"} | {t["nonce"] for t in others}
    assert used == set(range(start_nonce, nonce)), "the journal's nonces have a gap"
    for tx in mined:
        mined_row = journaled.get(tx["hash"])
        assert mined_row is None or mined_row["status"] in ("confirmed", "reverted"), mined_row
    assert all(r["epoch"] is not None for r in rows), "a transaction journaled without epoch"
    epochs = sorted({r["epoch"] for r in rows})
    print(f"\nha failover: {KILLS} SIGKILLs and a SIGSTOP (seed {SEED}); takeovers "
          f"{', '.join(f'{t:.2f}' for t in takeovers)} s (as seen by the test, 0.25 s "
          f"blocks); {len(liquidations)} liquidations mined, {len(mined)} transactions, "
          f"journaled under epochs {epochs}")

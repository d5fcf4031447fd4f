"""Takeover time of `[ha]` replicas: the leader is killed (SIGKILL), how long until the
standby leads, and until it broadcasts the liquidations a price drop opened meanwhile.

Run: `python -m benchmarks.bench_ha_takeover [--trials 5] [--lease 1.0] [--block-time 1]`.

The default devnet (cached) on anvil with 1 s blocks, a PostgreSQL server from the
pgserver wheel, and two `keeper run` replicas of the devnet's liquidator with `[ha]`
(tests/integration/ha_cluster.py: each sends through its own recording proxy). Each
trial: wait until the standby is warm (running, a few blocks followed), kill the leader
at a random moment of a block and, at once, post a WETH drop that opens liquidations
(mined in the next block). Reported per trial, from the kill: the standby took the lease
(`leader lease acquired` in its log), it leads (nonce synced, the old leader's sends
handed to recovery), and its first broadcast (at its proxy). The killed replica is then
started again as the standby. Times are as the benchmark sees the log lines (polled every
10 ms). Benchmarks report numbers; they assert nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from web3 import Web3

from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.devnet.tokens import price_feed, to_feed_answer
from keeper.ha.local_pg import LocalPostgres
from tests.conftest import Devnet
from tests.integration.ha_cluster import LEADING, RUNNING, RecordingProxy, Replica, replica_config

ACQUIRED = '"leader lease acquired"'


def until(condition: Callable[[], bool], timeout: float = 120) -> float:
    """Poll every 10 ms; the monotonic time the condition held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)
    return time.monotonic()


def drop(devnet: Devnet, factor: Decimal) -> None:
    """Send a WETH feed update (mined in the next block; not waited for)."""
    feed = devnet.w3.eth.contract(address=Web3.to_checksum_address(devnet.info.feeds["WETH"]),
                                  abi=price_feed().abi)
    usd = Decimal(DevnetSpec().tokens[0].usd_price) * factor
    feed.functions.updateAnswer(to_feed_answer(usd)).transact(
        {"from": Web3.to_checksum_address(devnet.info.accounts.deployer)})


def kill_once(devnet: Devnet, leader: Replica, standby: Replica, rng: random.Random, *,
              block_time: float, factor: Decimal) -> tuple[float, float, float | None]:
    """One trial: (lease taken, leading, first send) in seconds after the kill."""
    until(lambda: standby.saw(RUNNING))
    time.sleep(3 * block_time + rng.uniform(0, block_time))  # warm, at a random point
    sends = len(standby.proxy.sends)
    leader.kill()
    killed = time.monotonic()
    drop(devnet, factor)
    acquired = until(lambda: standby.saw(ACQUIRED))
    leads = until(lambda: standby.saw(LEADING))
    try:  # none when the drop opened nothing the account's capital can repay
        sent: float | None = until(lambda: len(standby.proxy.sends) > sends, timeout=15)
    except TimeoutError:
        sent = None
    return acquired - killed, leads - killed, None if sent is None else sent - killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=4,
                        help="kills (each drop opens liquidations while the account's "
                             "tokens last: about 4 on the default devnet)")
    parser.add_argument("--lease", type=float, default=1.0, help="ha.lease_seconds")
    parser.add_argument("--block-time", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=20261203)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    spec = DevnetSpec()
    assert spec.tokens[0].symbol == "WETH"
    anvil, info, _ = start_devnet(spec, block_time=args.block_time)
    devnet = Devnet(anvil, info, Web3(Web3.HTTPProvider(info.rpc_url)))
    folder = Path(tempfile.mkdtemp(prefix="bench-ha-"))
    rows: list[tuple[float, float, float | None]] = []
    with LocalPostgres() as pg:
        proxies = [RecordingProxy(info.rpc_url) for _ in range(2)]
        replicas = [Replica(n, replica_config(devnet, folder / n, proxy=p, dsn=pg.dsn,
                                              schema="bench", name=n,
                                              lease_seconds=args.lease), p)
                    for n, p in zip("ab", proxies, strict=True)]
        try:
            leader, standby = replicas
            leader.start()
            until(lambda: leader.saw(LEADING))
            standby.start()
            for trial in range(args.trials):
                row = kill_once(devnet, leader, standby, rng, block_time=args.block_time,
                                factor=Decimal("0.92") - Decimal("0.06") * trial)
                rows.append(row)
                first = "none" if row[2] is None else f"{row[2]:.2f} s"
                print(f"trial {trial + 1}: lease taken {row[0]:.2f} s, leading {row[1]:.2f} s,"
                      f" first send {first} after the kill", flush=True)
                leader.start()
                leader, standby = standby, leader
        finally:
            for replica in replicas:
                replica.kill()
            for proxy in proxies:
                proxy.close()
            anvil.stop()
    load = os.getloadavg()[0]
    for name, column in (("lease taken", 0), ("leading", 1), ("first send", 2)):
        values = [v for r in rows if (v := r[column]) is not None]
        if not values:
            continue
        print(f"{name}: median {statistics.median(values):.2f} s, worst {max(values):.2f} s "
              f"({len(values)} kills, lease {args.lease} s, blocks {args.block_time} s, "
              f"load {load:.1f})")


if __name__ == "__main__":
    main()

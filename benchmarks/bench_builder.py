"""The devnet block builder (keeper/devnet/builder): time to build one block by the number
of bundles it simulates, and time for a bundle to be accepted, on an empty anvil and on
the default devnet (cached).

Run: `python -m benchmarks.bench_builder [--bundles 0 1 10 25] [--blocks 5]`.

Each block gets N single-transaction bundles (a coinbase payment each, from five dev
accounts; the ones behind a nonce gap fail alone, as they would on a real builder); the
block is built with `builder_buildBlock` and its `buildSeconds` (simulation plus mining)
taken. Accept time is the wall time of an `eth_sendBundle` round trip (signing the header
included) on an idle builder; hint time, from sending a private transaction to reading
its event on the SSE stream. Benchmarks report numbers; they assert nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

from keeper.anvil import Anvil
from keeper.devnet.builder import BuilderThread, restart_for_builder, running_builder
from keeper.devnet.deploy import DevnetSpec, start_devnet
from tests.integration.builder_client import PAYER, PAYER_CODE, Client, EventStream, call

ACCOUNTS = 5


def build_times(c: Client, bundles: int, blocks: int) -> tuple[float, float]:
    """Median and worst build seconds over `blocks` blocks of `bundles` bundles each."""
    seconds = []
    for _ in range(blocks):
        block = hex(c.next_block())
        nonces = [c.nonce(who) for who in range(ACCOUNTS)]
        for i in range(bundles):
            who = i % ACCOUNTS
            raw, _ = c.tx(who, PAYER, value=10**15 + i, nonce=nonces[who] + i // ACCOUNTS)
            c("eth_sendBundle", {"txs": [raw], "blockNumber": block})
        seconds.append(float(c.build()["buildSeconds"]))
    return statistics.median(seconds), max(seconds)


def accept_times(c: Client, count: int = 200) -> tuple[float, float]:
    """p50 and p99 seconds of an eth_sendBundle round trip."""
    raw, _ = c.tx(0, PAYER, value=1)
    far = hex(c.next_block() + 10_000)  # never built: the pool only grows
    times = []
    for _ in range(count):
        started = time.perf_counter()
        c("eth_sendBundle", {"txs": [raw], "blockNumber": far})
        times.append(time.perf_counter() - started)
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def hint_times(c: Client, count: int = 50) -> tuple[float, float]:
    """p50 and p99 seconds from sending a hinted private transaction to its event on the
    SSE stream (the hint's simulation included)."""
    events = EventStream(c.url + "/events")
    times = []
    try:
        for i in range(count):
            raw, _ = c.tx(0, PAYER, value=1 + i)  # the same nonce: only hints, never mined
            started = time.perf_counter()
            call(c.url, "eth_sendPrivateTransaction", {"tx": raw})
            events.next()
            times.append(time.perf_counter() - started)
    finally:
        events.close()
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


@contextmanager
def devnet_builder() -> Iterator[tuple[Anvil, BuilderThread]]:
    anvil, _info, _cached = start_devnet(DevnetSpec())
    anvil = restart_for_builder(anvil)
    try:
        thread = BuilderThread(anvil.rpc_url, interval=0).start()
        try:
            yield anvil, thread
        finally:
            thread.stop()
    finally:
        anvil.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=int, nargs="+", default=[0, 1, 10, 25])
    parser.add_argument("--blocks", type=int, default=5)
    args = parser.parse_args()
    for name, start in (("empty anvil", running_builder), ("default devnet", devnet_builder)):
        with start() as (anvil, thread):
            anvil.rpc("anvil_setCode", PAYER, PAYER_CODE)
            c = Client(thread.urls[0])
            p50, p99 = accept_times(c)
            print(f"{name}: eth_sendBundle accepted in p50 {p50 * 1e3:.2f} ms, "
                  f"p99 {p99 * 1e3:.2f} ms")
            p50, p99 = hint_times(c)
            print(f"{name}: private transaction -> its hint read, p50 {p50 * 1e3:.2f} ms, "
                  f"p99 {p99 * 1e3:.2f} ms")
            for n in args.bundles:
                median, worst = build_times(c, n, args.blocks)
                print(f"{name}: {n:3d} bundles -> block built in median {median * 1e3:.1f} ms,"
                      f" worst {worst * 1e3:.1f} ms")


if __name__ == "__main__":
    main()

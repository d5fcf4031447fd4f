"""Where the time from a price block to the first send goes: a timestamped profile.

Run: `python -m tests.bench.profile_send_path [--trials 20] [--simulate before alongside]`.

The trials are those of `tests.bench.bench_feed_to_send` (same devnet, same -3.6 % WETH
post, same snapshot-and-revert, keepers wired anew each trial), run for each
`execution.simulate` mode given, interleaved trial by trial so drift hits both alike. Around
each part of the path a span is timed (`time.perf_counter`, by wrapping the methods at
class level; production code is not changed): the follower's fetch of the step, the
strategies' refresh, sizing (balance read, flash lenders' refresh), ranking, dispatch, the
journal's writes, signing, and every JSON-RPC request by method. Times are relative to
the step's start (the follower starting to fetch the price block). Printed per mode: for
each span, how many per trial, and the median over trials of when the first one starts,
when the last one ends and the summed time inside it, with the first and the last
`eth_sendRawTransaction` answered (the volley's batch counts as its sends).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_account import Account

from keeper.chain.follower import ChainFollower
from keeper.chain.http import HttpRpc
from keeper.demo import build_keeper
from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.devnet.info import DevnetInfo
from keeper.engine import Engine
from keeper.execution import executor as executor_module
from keeper.execution.capital import Capital
from keeper.execution.dispatch import Dispatcher
from keeper.execution.executor import Simulate
from keeper.execution.flash_route import FlashRoute
from keeper.execution.journal import Journal
from keeper.execution.sender import Sender
from keeper.execution.volley import Volley
from keeper.log import configure_logging
from keeper.prepared import PreparedLiquidations
from tests.bench import bench_feed_to_send as feed

Span = tuple[str, float, float]
SPANS: list[Span] = []
SEND = "eth_sendRawTransaction"


def _timed_async(name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            SPANS.append((name, start, time.perf_counter()))
    return wrapper


def _timed(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            SPANS.append((name, start, time.perf_counter()))
    return wrapper


def instrument() -> None:
    """Wrap the parts of the path at class level (every keeper built after this)."""
    for owner, name, label in [
        (ChainFollower, "step_to", "follower: logs+headers of the step"),
        (Engine, "_prepare", "engine: re-sync + strategies' refresh"),
        (Dispatcher, "size", "dispatcher.size (balances, lenders)"),
        (Capital, "available", "capital: balance read"),
        (FlashRoute, "refresh", "flash lenders' refresh"),
        (Engine, "_rank", "engine: rank (head start + rest)"),
        (Sender, "sign", "sign"),
        (Sender, "_journaled", "sender: nonces + signatures + journal of a wave"),
        (Sender, "_broadcast", "sender: broadcast of a wave"),
        (Sender, "send", "sender: send (one, not a volley)"),
        (Sender, "presign", "sender: presign (arming)"),
        (Sender, "send_all", "sender: send_all"),
        (Capital, "reserve", "capital: reserve"),
        (Volley, "_fire", "volley: claim .. broadcast"),
        (Dispatcher, "_launch", "dispatcher: build intents + launch"),
    ]:
        setattr(owner, name, _timed_async(label, getattr(owner, name)))
    for sync_owner, sync_name, sync_label in [
        (Dispatcher, "dispatch", "dispatcher.dispatch"),
        (ChainFollower, "_heard_head", "ws: newHeads heard"),
        (ChainFollower, "_heard_log", "ws: feed log heard (prepared fire inside)"),
        (PreparedLiquidations, "fire", "prepared: fire (level -> dispatch)"),
    ]:
        setattr(sync_owner, sync_name, _timed(sync_label, getattr(sync_owner, sync_name)))
    for name in ("claim", "claim_batch", "claim_all", "record_signed", "record_signed_all",
                 "mark_sent", "mark_sent_all", "abandon_all", "mark_abandoned"):
        if hasattr(Journal, name):
            setattr(Journal, name, _timed(f"journal.{name}", getattr(Journal, name)))
    original_call, original_batch = feed.TimedRpc.call, feed.TimedRpc.batch

    async def call(self: feed.TimedRpc, method: str, params: Sequence[Any]) -> Any:
        start = time.perf_counter()
        try:
            return await original_call(self, method, params)
        finally:
            SPANS.append((f"rpc {method}", start, time.perf_counter()))

    async def batch(self: feed.TimedRpc, calls: Sequence[tuple[str, Sequence[Any]]]) -> Any:
        start = time.perf_counter()
        methods = sorted({m for m, _ in calls})
        try:
            result = await original_batch(self, calls)
        finally:
            SPANS.append((f"rpc batch[{','.join(methods)}]", start, time.perf_counter()))
        if methods == [SEND]:  # the volley's broadcast: each of its sends has left
            now = time.perf_counter()
            self.sends.extend([now] * len(calls))
            self.sent_event.set()
        return result

    feed.TimedRpc.call = call  # type: ignore[method-assign]
    feed.TimedRpc.batch = batch  # type: ignore[method-assign]


def summarize(trials: list[list[Span]], origin_prefix: str = "follower") -> list[str]:
    """Per span name: count per trial, median first start, last end and time inside, from
    the first span whose name starts with `origin_prefix` ("ws": the price block's first
    notification, as `bench_feed_to_send` times it)."""
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for spans in trials:
        if origin_prefix == "ws":  # the price block's head or feed log, whichever came first
            first_send = min((s for n, s, _ in spans if n == f"rpc {SEND}"), default=None)
            last = [max((s for n, s, _ in spans if n.startswith(kind) and s <= first_send),
                        default=None) if first_send is not None else None
                    for kind in ("ws: newHeads", "ws: feed log")]
            heard = [t for t in last if t is not None]
            # Both are the price block's when they came within 20 ms of each other.
            origin = (min(heard) if len(heard) == 2 and abs(heard[0] - heard[1]) < 0.02
                      else max(heard) if heard else None)
        else:
            origin = min((s for n, s, _ in spans if n.startswith(origin_prefix)), default=None)
        if origin is None:
            continue
        by_name: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for name, start, end in spans:
            if start >= origin:
                by_name[name].append((start - origin, end - origin))
        for name, items in by_name.items():
            rows[name]["count"].append(len(items))
            rows[name]["first"].append(min(s for s, _ in items))
            rows[name]["last"].append(max(e for _, e in items))
            rows[name]["inside"].append(sum(e - s for s, e in items))
    lines = [f"  {'span':<46} {'n/trial':>8} {'starts':>9} {'ends':>9} {'inside':>9}"]
    order = sorted(rows, key=lambda n: statistics.median(rows[n]["first"]))
    for name in order:
        row = rows[name]
        lines.append(
            f"  {name:<46} {statistics.median(row['count']):8.0f} "
            f"{statistics.median(row['first']) * 1000:8.2f}ms "
            f"{statistics.median(row['last']) * 1000:8.2f}ms "
            f"{statistics.median(row['inside']) * 1000:8.2f}ms")
    return lines


async def run(info: DevnetInfo, args: argparse.Namespace) -> None:
    bench = feed.Bench(info, Decimal(args.drop))
    bench.poster = await HttpRpc.open(info.rpc_url)
    Account.enable_unaudited_hdwallet_features()
    modes: list[Simulate] = args.simulate
    collected: dict[Simulate, list[list[Span]]] = {m: [] for m in modes}
    latency: dict[Simulate, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="keeper-profile-") as name:
        folder = Path(name)
        await bench.approve_debt_tokens()
        bench.snapshot = await bench.poster.call("evm_snapshot", [])
        template = await build_keeper(info, Journal(folder / "cold.sqlite"))
        await template.sync()
        rpc = await feed.timed_client(info.rpc_url)
        state = feed.save_keeper(template)
        try:
            for k in range(args.warmup + args.trials):
                for mode in modes:
                    setattr(feed, "Executor",  # noqa: B010 (the bench's own name for it)
                            functools.partial(executor_module.Executor, simulate=mode))
                    SPANS.clear()
                    result = await feed.keeper_trial(
                        bench, rpc=rpc, state=state, folder=folder, trial=f"{mode}{k}",
                        drop=Decimal(args.drop), prepared=args.prepared)
                    work = result.work
                    await asyncio.sleep(0.3)  # the rest of the volley and its simulations
                    if k >= args.warmup:
                        collected[mode].append(list(SPANS))
                        latency[mode].append(work)
                if k % 5 == 0:
                    print(f"  trial {k}", file=sys.stderr, flush=True)
        finally:
            await bench.reset()
            await bench.poster.aclose()
            await rpc.aclose()
            await feed.close_keeper(template)
    if args.dump:  # every trial's spans, in order, from its origin
        for mode in modes:
            for spans in collected[mode]:
                print(f"-- trial ({mode})")
                print("\n".join(summarize([spans], args.origin)[1:]))
    for mode in modes:
        ms = sorted(x * 1000 for x in latency[mode])
        print(f"simulate = {mode!r}: step starts -> first send answered, n={len(ms)}: "
              f"p50 {statistics.median(ms):.2f} ms, min {ms[0]:.2f} ms, max {ms[-1]:.2f} ms")
        print("\n".join(summarize(collected[mode], args.origin)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--borrowers", type=int, default=1430)
    parser.add_argument("--drop", default="0.036")
    parser.add_argument("--prepared", action="store_true",
                        help="with the lead's prepared liquidations on (default: off, the "
                             "reactive path: rank at the price block, then send)")
    parser.add_argument("--simulate", nargs="+", default=["before", "alongside"],
                        choices=["before", "alongside"])
    parser.add_argument("--origin", default="follower", choices=["follower", "ws"],
                        help="times from the step's start (default) or from the price "
                             "block's first WebSocket notification (head or feed log)")
    parser.add_argument("--dump", action="store_true", help="print every trial's spans too")
    args = parser.parse_args()
    configure_logging("json", "warning", stream=open(os.devnull, "w"))  # noqa: SIM115
    instrument()
    anvil, info, cached = start_devnet(DevnetSpec(borrowers=args.borrowers))
    try:
        print(f"devnet ({'cached' if cached else 'deployed'}); machine: {feed.machine()}")
        asyncio.run(run(info, args))
    finally:
        anvil.stop()


if __name__ == "__main__":
    main()

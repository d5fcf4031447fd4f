"""A trace of everything between a feed's log and the answer to the first send of the level
it fires: every JSON-RPC request the keeper issues, every WebSocket frame it reads, and every
stretch the event loop spends in one callback.

Run: `python -m tests.bench.trace_first_send [--trials 12] [--dump 3]`.

The trials are `bench_feed_to_send`'s prepared ones (same devnet, snapshot and revert, a
keeper wired anew each trial, posted with the keeper idle, WETH -1 .. -8 %). Instrumented at
class level (production code unchanged): `HttpRpc._exchange` (method(s), size of the body,
issued, answered, and how many other requests were at the node meanwhile), the keeper's
socket (`Connection.data_received`: when bytes arrive; `WsSubscriptions._route`: when the
dispatch task reads the frame; `WsSubscriptions.request`: when a frame is written) and
`asyncio.Handle._run` (callbacks of 0.1 ms or more, named by their task's coroutine).
Times are from the log frame's bytes arriving. Printed: per trial, when the first send was
issued and answered, what else the node had meanwhile, and the loop's busy time inside that
window; with `--dump N`, the first N trials' whole timelines.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_account import Account
from websockets.asyncio.connection import Connection

from keeper.chain.http import HttpRpc
from keeper.chain.ws import WsSubscriptions
from keeper.demo import build_keeper
from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.devnet.info import DevnetInfo
from keeper.execution.ahead import AheadLog
from keeper.execution.dispatch import Dispatcher
from keeper.execution.journal import Journal
from keeper.execution.sender import Sender
from keeper.execution.volley import Volley
from keeper.log import configure_logging
from keeper.prepared import PreparedLiquidations
from tests.bench import bench_feed_to_send as feed

Event = tuple[float, float, str]  # start, end, what
EVENTS: list[Event] = []
SEND = "eth_sendRawTransaction"


def _name(handle: asyncio.Handle) -> str:
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return f"task {owner.get_coro().__qualname__}"  # type: ignore[union-attr]
    return f"cb {getattr(callback, '__qualname__', repr(callback))[:60]}"


def _span_async(label: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            EVENTS.append((start, time.perf_counter(), label))
    return wrapper


def _span(label: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            EVENTS.append((start, time.perf_counter(), label))
    return wrapper


def instrument() -> None:
    """Wrap the loop's callbacks, the HTTP client and the keeper's socket at class level."""
    run = asyncio.Handle._run

    def timed_run(self: asyncio.Handle) -> None:
        start = time.perf_counter()
        run(self)
        end = time.perf_counter()
        if end - start >= 0.0001:
            EVENTS.append((start, end, f"loop {_name(self)}"))

    asyncio.Handle._run = timed_run  # type: ignore[method-assign]

    exchange = HttpRpc._exchange

    async def timed_exchange(self: HttpRpc, session: Any, payload: Any) -> Any:
        methods = ([payload["method"]] if isinstance(payload, dict)
                   else sorted({str(r["method"]) for r in payload}))
        size = len(json.dumps(payload))
        start = time.perf_counter()
        try:
            return await exchange(self, session, payload)
        finally:
            count = 1 if isinstance(payload, dict) else len(payload)
            EVENTS.append((start, time.perf_counter(),
                           f"http {'+'.join(methods)} x{count} {size} B"))

    HttpRpc._exchange = timed_exchange  # type: ignore[method-assign]

    received = Connection.data_received

    def timed_received(self: Connection, data: bytes) -> None:
        now = time.perf_counter()
        text = data[:400].decode(errors="replace")
        kind = ("log" if '"topics"' in text else "head" if '"parentHash"' in text
                else "answer" if '"result"' in text or '"error"' in text else "other")
        EVENTS.append((now, now, f"ws bytes in {kind} {len(data)} B"))
        received(self, data)

    Connection.data_received = timed_received  # type: ignore[method-assign]

    route = WsSubscriptions._route

    def timed_route(self: WsSubscriptions, message: Any, routes: dict[str, Any]) -> None:
        start = time.perf_counter()
        route(self, message, routes)
        what = (f"answer id {message.get('id')}" if isinstance(message, dict) and "id" in message
                else "notification")
        EVENTS.append((start, time.perf_counter(), f"ws routed {what}"))

    WsSubscriptions._route = timed_route  # type: ignore[method-assign]

    request = WsSubscriptions.request

    async def timed_request(self: WsSubscriptions, method: str, params: Any, *,
                            timeout: float = 5.0) -> Any:
        start = time.perf_counter()
        try:
            return await request(self, method, params, timeout=timeout)
        finally:
            EVENTS.append((start, time.perf_counter(), f"ws request {method}"))

    WsSubscriptions.request = timed_request  # type: ignore[method-assign]

    sent = Connection.send_data

    def timed_send_data(self: Connection) -> None:
        start = time.perf_counter()
        sent(self)
        EVENTS.append((start, time.perf_counter(), "ws bytes out"))

    Connection.send_data = timed_send_data  # type: ignore[method-assign]
    for owner, name in [(Volley, "_ahead"), (Volley, "_fire"), (Sender, "_broadcast"),
                        (Dispatcher, "_launch"), (Volley, "launch")]:
        setattr(owner, name, _span_async(f"span {owner.__name__}.{name}", getattr(owner, name)))
    for cls, name in [(AheadLog, "write"), (Dispatcher, "dispatch"),
                      (PreparedLiquidations, "heard"), (PreparedLiquidations, "_note_rise"),
                      (Journal, "mark_sent_all"), (Journal, "claim_all"),
                      (Journal, "record_signed_all")]:
        setattr(cls, name, _span(f"span {cls.__name__}.{name}", getattr(cls, name)))


def window(events: list[Event]) -> dict[str, Any] | None:
    """The first send's window in one trial's events: origin = the log frame's bytes."""
    origin = next((s for s, _, w in events if w.startswith("ws bytes in log")), None)
    first = next(((s, e) for s, e, w in events
                  if w.startswith(f"ws request {SEND}") or (w.startswith("http ") and SEND in w)),
                 None)
    if origin is None or first is None:
        return None
    issued, answered = first
    busy = sum(min(e, answered) - max(s, issued) for s, e, w in events
               if w.startswith("loop") and e > issued and s < answered)
    others = [w for s, e, w in events
              if w.startswith("http") and s < answered and e > issued and SEND not in w]
    before = sum(e - s for s, e, w in events if w.startswith("loop") and origin <= s < issued)
    answer_bytes = next((s for s, _, w in events
                         if w.startswith("ws bytes in answer") and issued <= s <= answered), None)
    return {"issued": issued - origin, "answered": answered - origin, "busy": busy,
            "busy_before": before, "others": others,
            "bytes": answer_bytes - origin if answer_bytes is not None else None}


def dump(events: list[Event], origin: float, until: float) -> list[str]:
    return [f"  {(s - origin) * 1000:8.3f} .. {(e - origin) * 1000:8.3f} ms  {w}"
            for s, e, w in sorted(events) if origin - 0.005 <= s <= until]


async def run(info: DevnetInfo, args: argparse.Namespace) -> None:
    bench = feed.Bench(info, Decimal("0.036"))
    bench.poster = await HttpRpc.open(info.rpc_url)
    rng = random.Random(args.seed)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="keeper-trace-") as name:
        folder = Path(name)
        await bench.approve_debt_tokens()
        bench.snapshot = await bench.poster.call("evm_snapshot", [])
        template = await build_keeper(info, Journal(folder / "cold.sqlite"))
        await template.sync()
        rpc = await feed.timed_client(info.rpc_url)
        limit_rpc = await HttpRpc.open(info.rpc_url)
        Account.enable_unaudited_hdwallet_features()
        limit_account = Account.from_mnemonic(feed.MNEMONIC,
                                              account_path=feed.LIMIT_ACCOUNT_PATH)
        state = feed.save_keeper(template)
        try:
            for k in range(args.warmup + args.trials):
                drop = Decimal(rng.randint(100, 800)) / 10_000
                EVENTS.clear()
                try:
                    result = await feed.keeper_trial(bench, rpc=rpc, state=state,
                                                     folder=folder, trial=f"t{k}", drop=drop,
                                                     prepared=True)
                    events = list(EVENTS)
                    EVENTS.clear()
                    bare = await feed.limit_trial(bench, limit_rpc, limit_account, drop)
                except AttributeError as exc:  # aiohttp, seldom, under load: a trial lost
                    print(f"trial {k} failed: {exc!r}", file=sys.stderr)
                    continue
                bare_events = list(EVENTS)
                if args.sends:  # every send of the trial, from the log frame
                    origin = next((s for s, _, w in events if w.startswith("ws bytes in log")),
                                  None)
                    sends = [(round((s - origin) * 1000, 2) if origin else s, w)
                             for s, _, w in events if SEND in w]
                    print(f"trial {k} -{drop * 100}%: fired {result.fired}, latency "
                          f"{result.latency}, issued {result.handed}; sends {sends}")
                if k < args.warmup or not result.fired:
                    continue
                found = window(events)
                if found is None:
                    continue
                found["drop"] = drop
                rows.append(found)
                if len(rows) <= args.dump:
                    origin = next(s for s, _, w in events if w.startswith("ws bytes in log"))
                    print(f"-- trial {k}, WETH -{drop * 100}%")
                    print("\n".join(dump(events, origin, origin + found["answered"] + 0.003)))
                    origin = next(s for s, _, w in bare_events if w.startswith("ws bytes in log"))
                    print(f"-- the bare loop after it: {bare * 1000:.2f} ms")
                    print("\n".join(dump(bare_events, origin, origin + bare + 0.003)))
        finally:
            await bench.reset()
            await bench.poster.aclose()
            await rpc.aclose()
            await limit_rpc.aclose()
            await feed.close_keeper(template)
    print(f"machine: {feed.machine()}; load {os.getloadavg()[0]:.2f}")
    print(f"{'move':>6} {'issued':>8} {'bytes in':>9} {'answered':>9} {'loop busy':>10} "
          f"{'busy before':>12}  other HTTP at the node meanwhile")
    for row in rows:
        at = f"{row['bytes'] * 1000:8.2f}" if row["bytes"] is not None else "       -"
        print(f"{float(row['drop']) * 100:5.1f}% {row['issued'] * 1000:7.2f} {at} "
              f"{row['answered'] * 1000:9.2f} {row['busy'] * 1000:10.2f} "
              f"{row['busy_before'] * 1000:12.2f}  {'; '.join(row['others']) or '-'}")
    if rows:
        for key in ("issued", "answered", "busy", "busy_before"):
            print(f"p50 {key}: {statistics.median(r[key] for r in rows) * 1000:.2f} ms")
        print(f"trials with other HTTP at the node while the first send waited: "
              f"{sum(1 for r in rows if r['others'])} of {len(rows)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--dump", type=int, default=0)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--sends", action="store_true", help="list each trial's sends")
    args = parser.parse_args()
    configure_logging("json", "warning", stream=open(os.devnull, "w"))  # noqa: SIM115
    instrument()
    anvil, info, _ = start_devnet(DevnetSpec(borrowers=1430))
    try:
        asyncio.run(run(info, args))
    finally:
        anvil.stop()
    sys.stdout.flush()


if __name__ == "__main__":
    main()

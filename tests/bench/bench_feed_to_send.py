"""Feed-to-send latency of the keeper on the devnet, against the physical limit of the endpoint.

Run: `python -m tests.bench.bench_feed_to_send [--trials 200] [--borrowers 1430]`.

What is timed, per trial, from the feed's `AnswerUpdated` log reaching the process (its
`eth_subscribe` notification was read off the WebSocket) to the first liquidation's
`eth_sendRawTransaction` having returned (the signed transaction was handed to the node).
For the keeper, t0 is when the chain follower first heard of the price block (its head or
the feed's log, whichever came first: a wrapper around the follower's `_heard`) and t1 is
timed by an `HttpRpc` subclass around its sends (and, for the lone first send of a
volley, which goes over the keeper's WebSocket, by a wrapper around `Sender.fast`, also
when its answer is back); production code is not otherwise changed. Each keeper trial
starts from the same chain state (`evm_revert` to one snapshot,
taken at the head the keeper syncs at; the next block's timestamp is pinned to now, untimed)
and the same engine state: a keeper wired anew (`keeper.wiring.assemble`, untimed) on a deep
copy of the synced strategies and DEX book, marked as synced at the snapshot's head; they
are plain data, so this is exactly a freshly synced keeper without paying the cold start
each trial, which is measured separately. The liquidator approves its debt tokens before
the snapshot, so the only sends are liquidations.

The physical limit is a bare loop: its own socket subscribed to the same feed's logs; on
the notification it sends one pre-signed transfer (anvil dev account 4) over that same
socket; t1 = the send's answer is read. Limit trials are interleaved with keeper trials
(one each, in turn) and need no revert. The default drop (-3.6 % WETH) is the smallest
that makes any account of the default population liquidatable (about 75 of the 1,001
Aave accounts at once: the seeded health factors are clustered).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import Web3
from websockets.asyncio.client import connect

from keeper.chain.http import HttpRpc
from keeper.chain.ws import WsSubscriptions
from keeper.demo import build_keeper
from keeper.devnet.borrowers import plan_population
from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.devnet.info import DevnetInfo
from keeper.devnet.tokens import DEFAULT_TOKENS, price_feed, to_feed_answer
from keeper.errors import NodeError
from keeper.execution.dispatch import LivePositions
from keeper.execution.executor import Executor
from keeper.execution.journal import Journal
from keeper.log import configure_logging
from keeper.types import BlockRef, ChainStep, LogFilter
from keeper.wiring import Keeper, assemble

MNEMONIC = "test test test test test test test test test test test junk"
LIMIT_ACCOUNT_PATH = "m/44'/60'/0'/0/4"  # anvil dev account 4: untouched by the devnet
APPROVE = "0x095ea7b3"
MAX_UINT = 2**256 - 1
WETH_START = next(t.usd_price for t in DEFAULT_TOKENS if t.symbol == "WETH")
TRIAL_TIMEOUT = 30.0


class TimedRpc(HttpRpc):
    """An `HttpRpc` that timestamps every returned `eth_sendRawTransaction` and counts calls."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.sends: list[float] = []
        self.handed: list[float] = []  # when each send was issued (its answer not yet back)
        self.raws: list[tuple[float, str]] = []  # (issued, transaction) of each lone send
        self.methods: Counter[str] = Counter()
        self.sent_event = asyncio.Event()

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        self.methods[method] += 1
        if method == "eth_sendRawTransaction":
            self.handed.append(time.perf_counter())
            self.raws.append((self.handed[-1], str(params[0])))
        result = await super().call(method, params)
        if method == "eth_sendRawTransaction":
            self.sends.append(time.perf_counter())
            self.sent_event.set()
        return result

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        self.methods["batch"] += 1
        if any(method == "eth_sendRawTransaction" for method, _ in calls):
            self.handed.append(time.perf_counter())
        return await super().batch(calls)


@dataclass
class Series:
    name: str
    samples: list[float] = field(default_factory=list)

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
        return ordered[index]

    def line(self) -> str:
        ms = [s * 1000 for s in self.samples]
        return (f"{self.name:<34} n={len(ms):<4} p50={self.pct(50) * 1000:8.2f} ms  "
                f"p99={self.pct(99) * 1000:8.2f} ms  mean={statistics.fmean(ms):8.2f} ms  "
                f"min={min(ms):7.2f} ms  max={max(ms):8.2f} ms")


class Bench:
    def __init__(self, info: DevnetInfo, drop: Decimal) -> None:
        self.info = info
        self.drop = drop
        self.w3 = Web3(Web3.HTTPProvider(info.rpc_url))
        self.feed = info.feeds["WETH"]
        self.deployer = info.accounts.deployer
        contract = self.w3.eth.contract(address=to_checksum_address(self.feed),
                                        abi=price_feed().abi)
        self.contract = contract
        self.crash_data = self.crash_for(drop)
        self.calm_data = [contract.functions.updateAnswer(
            to_feed_answer(WETH_START * (1 + Decimal(k) / 10_000)))._encode_transaction_data()
            for k in (1, -1)]
        self.snapshot = ""
        self.poster: HttpRpc | None = None

    def crash_for(self, drop: Decimal) -> str:
        """The feed update that posts WETH `drop` below its start (one price block)."""
        return str(self.contract.functions.updateAnswer(
            to_feed_answer(WETH_START * (1 - drop)))._encode_transaction_data())

    # -- chain helpers (the poster is its own client, so it never shares the keeper's session)

    async def post(self, data: str) -> tuple[float, int]:
        """Post a feed update from the deployer; returns (t0 = receipt returned, its block)."""
        assert self.poster is not None
        # After evm_revert anvil can stamp the next block before reserve updates the synced
        # book already holds (the engine then fails on an interest-accrual underflow): pin the
        # next timestamp to now, never behind the head. Untimed.
        for attempt in range(3):  # a block mined between the read and the pin: read again
            latest = await self.poster.call("eth_getBlockByNumber", ["latest", False])
            stamp = max(int(latest["timestamp"], 16) + 1, int(time.time()) + 1)
            try:
                await self.poster.call("evm_setNextBlockTimestamp", [hex(stamp)])
                break
            except NodeError:
                if attempt == 2:
                    raise
        tx_hash = await self.poster.call("eth_sendTransaction", [{
            "from": self.deployer, "to": self.feed, "data": data, "gas": hex(200_000)}])
        receipt = await self.receipt(tx_hash)
        t0 = time.perf_counter()
        assert receipt is not None and int(receipt["status"], 16) == 1, receipt
        assert receipt["logs"], "the feed emitted no AnswerUpdated"
        return t0, int(receipt["blockNumber"], 16)

    async def receipt(self, tx_hash: str) -> dict[str, Any]:
        """Poll back to back until the receipt is there (anvil may answer the send first)."""
        assert self.poster is not None
        deadline = time.monotonic() + TRIAL_TIMEOUT
        while (receipt := await self.poster.call("eth_getTransactionReceipt", [tx_hash])) is None:
            assert time.monotonic() < deadline, f"no receipt for {tx_hash}"
        return dict(receipt)

    async def reset(self) -> None:
        """Back to the base snapshot, and take it again (a snapshot is used up by a revert)."""
        assert self.poster is not None
        # The pool survives evm_revert: the previous trial's sends would be mined after it.
        await self.poster.call("anvil_dropAllTransactions", [])
        assert await self.poster.call("evm_revert", [self.snapshot]) is True
        self.snapshot = await self.poster.call("evm_snapshot", [])

    async def approve_debt_tokens(self) -> None:
        """The liquidator approves every token for Aave's pool and for Morpho once, before
        the snapshot, as a running keeper has them (else a trial's first send would be an
        approval, timed as if it were a liquidation)."""
        assert self.poster is not None
        for pool in (self.info.aave_v3.pool, self.info.morpho_blue.morpho):
            spender = pool.lower().removeprefix("0x").rjust(64, "0")
            for token in self.info.tokens.values():
                data = APPROVE + spender + hex(MAX_UINT)[2:]
                tx_hash = await self.poster.call("eth_sendTransaction", [{
                    "from": self.info.accounts.liquidator, "to": token.address, "data": data}])
                receipt = await self.receipt(tx_hash)
                assert int(receipt["status"], 16) == 1


@dataclass
class KeeperState:
    """A synced keeper's state at the snapshot, and that keeper (the trials' keepers are
    wired like it: same account, fees, appraisal, quote token, profit floor)."""

    saved: Any  # (strategies, dex), deep-copied
    head: BlockRef
    next_base_fee: int
    template: Keeper


async def timed_client(url: str) -> TimedRpc:
    """The timed client (same URL, same settings) the measured runs' keepers are built on."""
    rpc = TimedRpc(url)
    await rpc.connect()
    return rpc


def save_keeper(keeper: Keeper) -> KeeperState:
    engine = keeper.engine
    assert engine.last is not None
    saved = copy.deepcopy((engine.strategies, engine.dex))
    return KeeperState(saved, engine.last, engine.next_base_fee, keeper)


async def trial_keeper(state: KeeperState, rpc: HttpRpc, folder: Path, trial: str, *,
                       ws: WsSubscriptions | None, poll_interval: float,
                       prepared: bool = True) -> Keeper:
    """The keeper exactly as synced at the snapshot, on `rpc`, with a fresh journal and nonce
    (no capital held by the last trial's sends) and this trial's intake. It is wired anew
    each trial: every stage's fields are set once, at construction."""
    template = state.template
    old, engine = template.executor, template.engine
    assert old is not None and template.dispatcher is not None
    intents = template.dispatcher.intents
    strategies, dex = copy.deepcopy(state.saved)
    live = LivePositions()
    executor = Executor(rpc, old.account, Journal(folder / f"{trial}.sqlite"), old.fees,
                        old.settlement.appraise, flash_executor=old.flash_executor,
                        quote_token=old.quote_token, still_there=live)
    await executor.start()
    keeper = assemble(
        rpc, strategies, dex, quote_token=engine.quote_token, min_profit=engine.min_profit,
        priority_fee=engine.priority_fee, executor=executor, live=live, flash=intents.flash,
        batch_max=intents.batch_max, ws=ws, poll_interval=poll_interval,
        feed_rules=template.prepared.rules if template.prepared is not None else None,
        prepared_levels=template.prepared.levels if prepared and template.prepared else 0)
    # Synced at the snapshot's head, as `Keeper.sync` leaves it, without reading the chain.
    keeper.engine.last = state.head
    keeper.engine.next_base_fee = state.next_base_fee
    keeper.engine.stats.head = state.head.number
    keeper.follower.mark(state.head)
    return keeper


def release(keeper: Keeper) -> None:
    """A trial's keeper is done: close its journal (its client is the shared timed one)."""
    if keeper.executor is not None:
        keeper.executor.journal.close()


async def close_keeper(keeper: Keeper) -> None:
    """A keeper with its own client (a cold start's): close the client and the journal."""
    await keeper.aclose()
    release(keeper)


@dataclass
class Trial:
    """One keeper trial: log -> first send (None: the move opened nothing), whether a
    prepared level was sent, log -> price block's step starts, step starts -> first send."""

    latency: float | None
    fired: bool
    seen: float
    work: float
    busy: bool = False  # posted while the keeper was preparing (a worker thread valuing)
    handed: float | None = None  # log -> the first send issued (its answer not awaited)
    raw: str | None = None  # the first transaction sent (the bare loop sends it again)
    # From the feed's log frame itself (what the bare loop is timed from), not from the
    # block's first notification (its newHeads, which anvil pushes just before the log).
    from_log: float | None = None


def time_socket_sends(keeper: Keeper, rpc: TimedRpc) -> None:
    """The keeper's lone first sends go over its WebSocket (`Sender.fast`): timed as the
    HTTP ones are, when their answer is back."""
    sender = keeper.executor.sender if keeper.executor is not None else None
    fast = sender.fast if sender is not None else None
    if sender is None or fast is None:
        return

    async def timed(method: str, params: Sequence[Any]) -> Any:
        if method == "eth_sendRawTransaction":
            rpc.handed.append(time.perf_counter())
            rpc.raws.append((rpc.handed[-1], str(params[0])))
        result = await fast(method, params)
        if method == "eth_sendRawTransaction":
            rpc.sends.append(time.perf_counter())
            rpc.sent_event.set()
        return result

    sender.fast = timed


async def keeper_trial(bench: Bench, *, rpc: TimedRpc, state: KeeperState, folder: Path,
                       trial: str, drop: Decimal, prepared: bool, busy: bool = False) -> Trial:
    """A WETH drop of `drop` posted in one block; the keeper (with or without its prepared
    liquidations) is timed from the feed's log to its first send. Posted once the keeper's
    preparation for the head is done (as on a chain whose blocks come further apart than a
    preparation takes), or, `busy`, while one runs: the catch-up step's, in a worker
    thread that contends for the GIL with the send path."""
    await bench.reset()
    ws = WsSubscriptions(bench.info.ws_url)
    # The socket drives it (one head read after subscribing).
    keeper = await trial_keeper(state, rpc, folder, trial, ws=ws, poll_interval=3600.0,
                                prepared=prepared)
    time_socket_sends(keeper, rpc)
    # Nothing else mines: the first block the keeper steps to is the price block. A step
    # starts when the follower fetches its logs (then the engine applies and ranks it).
    marks: dict[str, float] = {}
    original = keeper.follower.step_to

    async def step_to(log_filter: LogFilter, number: int | None = None,
                      raw: Mapping[str, Any] | None = None) -> ChainStep | None:
        marks.setdefault("detected", time.perf_counter())
        return await original(log_filter, number, raw)

    heard_at: dict[int, float] = {}
    log_at: dict[int, float] = {}
    heard = keeper.follower._heard
    on_urgent = keeper.follower.on_urgent

    def first_heard(number: int, raw: Mapping[str, Any] | None) -> None:
        heard_at.setdefault(number, time.perf_counter())  # head or log, whichever came first
        heard(number, raw)

    def urgent_first(raw: Mapping[str, Any]) -> object:
        # The log reaches the prepared liquidations before `_heard`: time it from here.
        now = time.perf_counter()
        heard_at.setdefault(int(str(raw["blockNumber"]), 16), now)
        log_at.setdefault(int(str(raw["blockNumber"]), 16), now)
        return on_urgent(raw) if on_urgent is not None else None

    keeper.follower.__dict__["step_to"] = step_to
    keeper.follower.__dict__["_heard"] = first_heard
    keeper.follower.on_urgent = urgent_first
    stop = asyncio.Event()
    task = asyncio.create_task(keeper.run(stop))
    try:
        deadline = time.monotonic() + TRIAL_TIMEOUT
        while not ws.connected:  # subscribed: from here on the post reaches it by push
            assert time.monotonic() < deadline, "the keeper's socket did not subscribe"
            await asyncio.sleep(0.001)
        # After evm_revert anvil's head can stand above the restored keeper's: let the
        # keeper catch up first, so the only step timed is the price block's.
        assert bench.poster is not None
        current = int(await bench.poster.call("eth_blockNumber", []), 16)
        while keeper.engine.last is None or keeper.engine.last.number < current:
            assert time.monotonic() < deadline, "the keeper did not catch up with the head"
            await asyncio.sleep(0.001)
        stats = keeper.prepared.stats if prepared and keeper.prepared is not None else None
        while stats is not None and (stats.prepared < 1 or (stats.running and not busy)):
            assert time.monotonic() < deadline, "the keeper prepared nothing"
            await asyncio.sleep(0.001)
        if busy and stats is not None:  # a preparation of the catch-up step, if one comes
            until = time.monotonic() + 0.5
            while not stats.running and time.monotonic() < until:
                await asyncio.sleep(0.001)
            await asyncio.sleep(random.uniform(0.0, 0.01))
        else:
            await asyncio.sleep(random.uniform(0.01, 0.05))
            while stats is not None and stats.running:  # a late step's: wait it out too
                assert time.monotonic() < deadline, "the keeper never stopped preparing"
                await asyncio.sleep(0.001)
        posted_busy = stats is not None and stats.running
        marks.clear()
        rpc.handed.clear()
        rpc.raws.clear()
        rpc.sends.clear()
        rpc.sent_event.clear()
        _, price_block = await bench.post(bench.crash_for(drop))
        # Until the first send, or until the price block is processed with nothing sent.
        # A send answered before the price block was heard (a late one of the catch-up
        # step's, seen under load) is not this trial's: wait on for one after it.
        while not (rpc.sent_event.is_set() and price_block in heard_at
                   and max(rpc.sends) >= heard_at[price_block]):
            if keeper.engine.stats.processed >= price_block and keeper.inflight == 0:
                break
            assert time.monotonic() < deadline + TRIAL_TIMEOUT, "neither sent nor processed"
            await asyncio.sleep(0.001)
        # The price block's first notification (anvil pushes newHeads before its logs).
        t0 = heard_at.get(price_block, math.inf)
        logged = log_at.get(price_block)
        sends = [t for t in rpc.sends if t >= t0]
        handed = [t for t in rpc.handed if t >= t0]
        first_raw = next((raw for t, raw in rpc.raws if t >= t0), None)
        fired = keeper.prepared is not None and keeper.prepared.stats.fired > 0
    finally:
        # The chain is reverted next: the rest of the fan-out is of no interest, cancel it.
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        release(keeper)
    if not sends:
        return Trial(None, fired, 0.0, 0.0, posted_busy)
    t1 = min(sends)
    detected = marks.get("detected", t1)
    return Trial(t1 - t0, fired, detected - t0, t1 - detected, posted_busy,
                 min(handed) - t0 if handed else None, first_raw,
                 t1 - logged if logged is not None else None)


async def limit_trial(bench: Bench, rpc: HttpRpc, account: LocalAccount,
                      drop: Decimal, raw: str | None = None) -> float:
    """A bare loop: the feed's log by `eth_subscribe` on its own socket, then a pre-signed
    transaction sent over that same socket; t1 = the send's answer is back. The transaction
    is a transfer, or `raw`: the keeper's own first liquidation of the same move, sent again
    on the same chain state (reverted to the snapshot first), so that the node's work to
    answer (automine runs the liquidation before it answers) is the same on both sides."""
    if raw is None:
        nonce = int(await rpc.call("eth_getTransactionCount", [account.address, "pending"]),
                    16)
        signed_tx = account.sign_transaction({
            "type": 2, "chainId": rpc.chain_id, "nonce": nonce, "to": account.address,
            "value": 1, "gas": 21_000, "maxFeePerGas": 3_000 * 10**9,
            "maxPriorityFeePerGas": 2 * 10**9,
        })
        raw = "0x" + bytes(signed_tx.raw_transaction).hex()
    else:
        await bench.reset()
    send = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "eth_sendRawTransaction",
                       "params": [raw]})
    subscribe = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                            "params": ["logs", {"address": [bench.feed]}]})
    async with connect(bench.info.ws_url) as socket:
        await socket.send(subscribe)
        json.loads(await socket.recv())  # the subscription id

        async def loop() -> float:
            while "eth_subscription" not in await socket.recv():
                pass
            t0 = time.perf_counter()
            await socket.send(send)
            while '"id":2' not in str(await socket.recv()).replace(" ", ""):
                pass
            return time.perf_counter() - t0

        task = asyncio.create_task(loop())
        await asyncio.sleep(random.uniform(0.01, 0.05))
        await bench.post(bench.crash_for(drop))
        return await asyncio.wait_for(task, TRIAL_TIMEOUT)


async def steady_state(bench: Bench, *, rpc: TimedRpc, state: KeeperState,
                       folder: Path, poll: float | None, blocks: int, gap: float) -> str:
    """Requests per processed block: small (non-liquidating) WETH moves, one block each.

    `poll` None: heads and feed logs come over the WebSocket (no head polls)."""
    await bench.reset()
    ws = WsSubscriptions(bench.info.ws_url) if poll is None else None
    keeper = await trial_keeper(state, rpc, folder, "steady", ws=ws,
                                poll_interval=poll if poll is not None else 3600.0)
    stats = keeper.engine.stats
    stop = asyncio.Event()
    task = asyncio.create_task(keeper.run(stop))
    try:
        await asyncio.sleep(0.2)
        http0, methods0, processed0 = rpc.requests_sent, Counter(rpc.methods), stats.blocks
        started = time.perf_counter()
        for k in range(blocks):
            _, block = await bench.post(bench.calm_data[k % 2])
            deadline = time.monotonic() + TRIAL_TIMEOUT
            while stats.processed < block:
                assert time.monotonic() < deadline, "the keeper did not follow"
                await asyncio.sleep(0.001)
            await asyncio.sleep(gap)
        elapsed = time.perf_counter() - started
        http = rpc.requests_sent - http0
        methods = rpc.methods - methods0
        processed = stats.blocks - processed0
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, TRIAL_TIMEOUT)
        finally:
            release(keeper)
    polls = methods["eth_getBlockByNumber"]
    work = http - polls
    detail = ", ".join(f"{m} {n / processed:.2f}" for m, n in sorted(methods.items()))
    intake = "websocket" if poll is None else f"poll={poll * 1000:g} ms"
    return (f"{intake}, a block every ~{elapsed / blocks * 1000:.0f} ms, "
            f"{processed} blocks: {http / processed:.2f} HTTP requests per processed block "
            f"({polls / processed:.2f} head polls + {work / processed:.2f} for processing; "
            f"by method per block: {detail})")


def _bucket(drop: Decimal) -> str:
    """A move's bucket for the report: -1..-3 %, -3..-5 %, -5..-8 %."""
    pct = drop * 100
    return "-1..-3 %" if pct < 3 else "-3..-5 %" if pct < 5 else "-5..-8 %"


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"nproc={os.cpu_count()} cpu={model!r} python={platform.python_version()}"


async def run(info: DevnetInfo, args: argparse.Namespace, borrowers: int) -> None:
    bench = Bench(info, Decimal(args.drop or "0.036"))
    bench.poster = await HttpRpc.open(info.rpc_url)
    limit_rpc = await HttpRpc.open(info.rpc_url)
    Account.enable_unaudited_hdwallet_features()
    limit_account = Account.from_mnemonic(MNEMONIC, account_path=LIMIT_ACCOUNT_PATH)
    template: Keeper | None = None
    rpc: TimedRpc | None = None
    with tempfile.TemporaryDirectory(prefix="keeper-bench-") as name:
        folder = Path(name)
        try:
            await bench.approve_debt_tokens()
            bench.snapshot = await bench.poster.call("evm_snapshot", [])
            # Cold start: a fresh keeper (PairBook.load + Engine.sync), timed several times.
            colds: list[float] = []
            syncs: list[float] = []
            for k in range(args.cold):
                started = time.perf_counter()
                candidate = await build_keeper(info, Journal(folder / f"cold{k}.sqlite"))
                colds.append(time.perf_counter() - started)
                started = time.perf_counter()
                await candidate.sync()
                syncs.append(time.perf_counter() - started)
                if template is None:
                    template = candidate
                else:
                    await close_keeper(candidate)
            assert template is not None
            rpc = await timed_client(info.rpc_url)
            state = save_keeper(template)
            tracked = sum(1 for p in plan_population(borrowers, DevnetSpec().seed)
                          if p.protocol == "aave_v3")


            rng = random.Random(args.seed)
            prepared = Series("keeper, prepared level sent")
            busy = Series("  prepared, posted mid-preparation")
            unprepared = Series("keeper, no prepared level reached")
            plain = Series("keeper, preparation off")
            limit = Series("limit    (websocket)")
            handed = Series("keeper, prepared: to the send issued")
            from_log = Series("keeper, prepared: from the log frame")
            limit_same = Series("limit, the keeper's first liquidation")
            by_move: dict[str, Series] = {}
            nothing = 0
            for k in range(args.warmup + args.trials):
                drop = (Decimal(args.drop) if args.drop else
                        Decimal(rng.randint(args.min_move_bps, args.max_move_bps)) / 10_000)
                # Interleave the three, so drift hits all alike.
                ready = await keeper_trial(bench, rpc=rpc, state=state, folder=folder,
                                           trial=f"p{k}", drop=drop, prepared=True)
                contended = await keeper_trial(bench, rpc=rpc, state=state, folder=folder,
                                               trial=f"b{k}", drop=drop, prepared=True,
                                               busy=True)
                off = await keeper_trial(bench, rpc=rpc, state=state, folder=folder,
                                         trial=f"o{k}", drop=drop, prepared=False)
                bare = await limit_trial(bench, limit_rpc, limit_account, drop)
                same = (await limit_trial(bench, limit_rpc, limit_account, drop, ready.raw)
                        if ready.fired and ready.raw is not None else None)
                if k % 25 == 0:
                    print(f"  trial {k}", file=sys.stderr, flush=True)
                if k < args.warmup:
                    continue
                limit.samples.append(bare)
                if same is not None:
                    limit_same.samples.append(same)
                if ready.latency is None:
                    nothing += 1  # the move opened nothing: no send to time
                    continue
                (prepared if ready.fired else unprepared).samples.append(ready.latency)
                if ready.fired and ready.handed is not None:
                    handed.samples.append(ready.handed)
                if ready.fired and ready.from_log is not None:
                    from_log.samples.append(ready.from_log)
                if ready.fired:
                    bucket = f"  prepared, move {_bucket(drop)}"
                    by_move.setdefault(bucket, Series(bucket)).samples.append(ready.latency)
                if off.latency is not None:
                    plain.samples.append(off.latency)
                if contended.latency is not None and contended.fired:
                    (busy if contended.busy else prepared).samples.append(contended.latency)
            steady = [await steady_state(bench, rpc=rpc, state=state, folder=folder,
                                         poll=poll, blocks=args.steady_blocks, gap=0.2)
                      for poll in (None, 0.05)]
        finally:
            if bench.snapshot:
                await bench.reset()
            for client in (bench.poster, limit_rpc):
                await client.aclose()
            if rpc is not None:
                await rpc.aclose()
            if template is not None:
                await close_keeper(template)

    print(f"machine: {machine()}")
    levels = state.template.prepared.levels if state.template.prepared else 0
    moves = (f"-{Decimal(args.drop) * 100}%" if args.drop else
             f"uniform -{args.min_move_bps / 100}% .. -{args.max_move_bps / 100}% "
             f"(seed {args.seed})")
    print(f"devnet: DevnetSpec(borrowers={borrowers}) -> {tracked} Aave V3 accounts tracked; "
          f"WETH moves {moves} from ${WETH_START}, one block each, automine; feed rule "
          f"{info.feed_rules['WETH'].deviation_bps} bps, {levels} levels each way")
    print(f"cold start (build_keeper: PairBook.load + Engine.sync), n={len(colds)}: "
          f"median {statistics.median(colds) * 1000:.0f} ms, min {min(colds) * 1000:.0f} ms; "
          f"Keeper.sync alone: median {statistics.median(syncs) * 1000:.0f} ms")
    print(f"trials: {args.trials} (+{args.warmup} warm-up discarded), the keeper with and "
          f"without preparation and the limit interleaved; {nothing} moves opened nothing; "
          f"each move also posted while a preparation ran (its own line when it still ran "
          f"at the post; the other lines: posted with the keeper idle)")
    for series in (prepared, *sorted(by_move.values(), key=lambda x: x.name), busy,
                   unprepared, plain, limit, limit_same, handed, from_log):
        if series.samples:
            print(series.line())
    if prepared.samples and limit.samples:
        print(f"{'  ratio prepared/limit':<38} p50 x{prepared.pct(50) / limit.pct(50):.2f}  "
              f"p99 x{prepared.pct(99) / limit.pct(99):.2f}")
    if prepared.samples and limit_same.samples:
        print(f"{'  ratio prepared/limit (same liquidation)':<38} "
              f"p50 x{prepared.pct(50) / limit_same.pct(50):.2f}  "
              f"p99 x{prepared.pct(99) / limit_same.pct(99):.2f}")
    if from_log.samples and limit.samples:
        print(f"{'  ratio from the log frame/limit':<38} "
              f"p50 x{from_log.pct(50) / limit.pct(50):.2f}  "
              f"p99 x{from_log.pct(99) / limit.pct(99):.2f}")
    if plain.samples and limit.samples:
        print(f"{'  ratio preparation off/limit':<38} p50 x{plain.pct(50) / limit.pct(50):.2f}")
    for line in steady:
        print(f"steady state: {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--borrowers", type=int, default=1430,
                        help="seeded borrowers (1430: 1,001 of them on Aave V3, all tracked)")
    parser.add_argument("--drop", default="",
                        help="one WETH drop for every trial (0.036 = -3.6 %%); default: a "
                             "random move per trial within --min/--max-move-bps")
    parser.add_argument("--min-move-bps", type=int, default=100)
    parser.add_argument("--max-move-bps", type=int, default=800)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--cold", type=int, default=3, help="cold starts to time")
    parser.add_argument("--steady-blocks", type=int, default=50)
    args = parser.parse_args()
    configure_logging("json", "warning", stream=open(os.devnull, "w"))  # noqa: SIM115
    started = time.monotonic()
    anvil, info, cached = start_devnet(DevnetSpec(borrowers=args.borrowers))
    try:
        print(f"devnet up in {time.monotonic() - started:.1f} s "
              f"({'cached' if cached else 'deployed'}) at {info.rpc_url}", flush=True)
        asyncio.run(run(info, args, args.borrowers))
    finally:
        anvil.stop()


if __name__ == "__main__":
    main()

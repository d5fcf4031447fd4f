"""Oracle transaction in the pool (or its hint) -> the keeper's bundle at the builder, one
update at a time, side by side with the bare loop, by the builder's clock.

    python -m benchmarks.auction.hint_latency [--trials 16] [--move 0.015]
        [--settle 3.0] [--json-out FILE] [--workdir DIR]

The devnet of `keeper devnet --builder --oracles` (WETH's feed SVR-style: its update is
announced on the hint stream; WBTC's transmit waits in the builder's public pool), a block
a second. One keeper daemon as in `benchmarks.auction` (bundles to both builder endpoints,
the hint stream and the pool polled every 5 ms, its prepared levels on the feeds), and the
bare loop (bare.py: a pre-signed `mev_sendBundle` for each hint or pending transmit).
First one untimed move (WETH to `--warm-usd`, WBTC 10 % down) liquidates what the devnet
starts with near the edge; then each trial posts one oracle transaction, WETH (hint) and
WBTC (pool) in turn, each `--move` below that feed's last answer (more than its 1 %
deviation, less than two), waits for both bots' bundles naming it, and lets the chain and
the keeper settle (`--settle` seconds with no bundle of the keeper's arriving) before the
next. The time of each bot is from the builder's own record (`builder_arrivals`): the hint
published or the transmit entering the pool, to the first bundle of that bot naming it
(benchmarks/auction/latency.py). A trial the keeper did not answer (the move opened
nothing, or no level was ready) is counted apart.

Unlike `benchmarks.auction` (a crash at 1.5 s a step, where the next update arrives while
the keeper still sends and follows the last one's bundles), this is the path alone: what
an update costs the keeper when it is ready for it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_account import Account

from benchmarks.auction.harness import AuctionOptions
from benchmarks.auction.setup import BARE_INDEX, Bot, dev_key, keeper_config, searcher_key
from benchmarks.auction.setup import stage as stage_devnet
from benchmarks.race.keepers import Process, free_port, scrape
from benchmarks.race.rpc import Rpc
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY
from keeper.devnet.oracles.market import attach, post_round
from keeper.devnet.oracles.profile import OracleDevnet
from keeper.paths import cache_dir

HINTED, PUBLIC = "WETH", "WBTC"  # the devnet's SVR feed, and a feed transmitting publicly


@dataclass(frozen=True)
class LatencyOptions:
    trials: int = 16
    move: Decimal = Decimal("0.015")  # below each feed's last answer, per trial
    warm_usd: Decimal = Decimal(1800)  # WETH's untimed first move
    settle: float = 3.0  # seconds without a keeper bundle before the next trial
    answer_timeout: float = 3.0  # seconds a trial waits for both bots' bundles
    block_interval: float = 1.0


@dataclass
class Trial:
    symbol: str
    origin: str  # "hint" or "pool"
    tx_hash: str
    usd: float
    keeper_ms: float | None = None
    bare_ms: float | None = None
    keeper_txs: int = 0  # liquidations in the keeper's first bundle naming it
    load: float = 0.0


@dataclass
class LatencyRun:
    trials: list[Trial] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)
    seconds: float = 0.0
    workdir: str = ""


def quantile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def timed(arrivals: dict[str, Any], trial: Trial, signers: dict[str, str]) -> None:
    """Fill `trial`'s times from the builder's arrivals (`signers`: bot -> header signer)."""
    start = arrivals.get("hints" if trial.origin == "hint" else "pool", {}).get(trial.tx_hash)
    if start is None:
        return
    for who, signer in signers.items():
        named = [b for b in arrivals.get("bundles", []) if b.get("signer") == signer
                 and (trial.tx_hash in b.get("refs", []) or trial.tx_hash in b.get("txs", []))]
        if not named:
            continue
        first = min(named, key=lambda b: float(b["at"]))
        ms = round((float(first["at"]) - float(start)) * 1000, 2)
        if who == "keeper":
            trial.keeper_ms = ms
            trial.keeper_txs = len([t for t in first.get("txs", []) if t != trial.tx_hash])
        else:
            trial.bare_ms = ms


async def _arrivals(chain: Rpc) -> dict[str, Any]:
    found: dict[str, Any] = await chain.call("builder_arrivals")
    return found


async def _settle(chain: Rpc, keeper: str, options: LatencyOptions,
                  processes: list[Process]) -> None:
    """Until the keeper sent no bundle for `settle` seconds and the builder's pool is empty."""
    last, since = -1, time.monotonic()
    deadline = since + 60.0
    while time.monotonic() < deadline:
        for process in processes:
            process.check()
        arrivals = await _arrivals(chain)
        count = sum(1 for b in arrivals.get("bundles", []) if b.get("signer") == keeper)
        busy = any((await chain.call("txpool_content")).get("pending", {}).values())
        if count != last or busy:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= options.settle:
            return
        await asyncio.sleep(0.2)


async def _wait_answered(chain: Rpc, trial: Trial, signers: dict[str, str],
                         timeout: float) -> None:
    """Until both bots' bundles naming the trial's transaction are at the builder. Read
    every half second, not more often: the builder serves `builder_arrivals` (every
    arrival of the run, as JSON) from the thread that takes the bots' bundles, and read
    every 50 ms it delayed them by milliseconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        timed(await _arrivals(chain), trial, signers)
        if trial.keeper_ms is not None and trial.bare_ms is not None:
            return


async def _post(devnet: OracleDevnet, symbol: str, usd: Decimal) -> str:
    return (await asyncio.to_thread(post_round, devnet, symbol, usd)).lower()


async def run(options: LatencyOptions, workdir: Path) -> LatencyRun:
    workdir.mkdir(parents=True, exist_ok=True)
    began, load = time.monotonic(), os.getloadavg()[0]
    bot = Bot("keeper", DEVNET_LIQUIDATOR_KEY, Decimal("0.9"))
    staged = await asyncio.to_thread(stage_devnet, [bot], None,
                                     interval=options.block_interval)
    chain = await Rpc.open(staged.info.rpc_url)
    processes: list[Process] = []
    out = LatencyRun(workdir=str(workdir))
    try:
        port = free_port()
        config = keeper_config(staged.info, bot, workdir, builders=staged.builder.urls,
                               monitoring_port=port)
        processes.append(Process("keeper", [
            sys.executable, "-c", "from keeper.cli import main; main()", "--config",
            str(config), "--log-format", "json", "run"], workdir, env={
                "KEEPER_ACCOUNT__PRIVATE_KEY": bot.key,
                "KEEPER_ACCOUNT__SEARCHER_KEY": searcher_key(bot.name),
                "KEEPER_ACCOUNT__LANE_KEYS": json.dumps(bot.lane_keys)}))
        processes.append(_bare(staged.info, staged.builder.events_url, workdir))
        await _ready(chain, processes, port, AuctionOptions().ready_timeout)
        signers = {"keeper": bot.searcher,
                   "bare": str(Account.from_key(dev_key(BARE_INDEX)).address).lower()}
        devnet = await asyncio.to_thread(attach, staged.info, staged.info.rpc_url)
        prices = {s: Decimal(f.last_answer or 0) / 10**8 for s, f in devnet.feeds.items()}
        prices[HINTED] = options.warm_usd  # untimed: what starts near the edge goes first
        prices[PUBLIC] = prices[PUBLIC] * Decimal("0.9")
        for symbol in (HINTED, PUBLIC):
            await _post(devnet, symbol, prices[symbol])
        await _settle(chain, bot.searcher, options, processes)
        for index in range(options.trials):
            symbol = HINTED if index % 2 == 0 else PUBLIC
            prices[symbol] = (prices[symbol] * (1 - options.move)).quantize(Decimal("0.01"))
            trial = Trial(symbol, "hint" if symbol == HINTED else "pool", "",
                          float(prices[symbol]), load=os.getloadavg()[0])
            trial.tx_hash = await _post(devnet, symbol, prices[symbol])
            await _wait_answered(chain, trial, signers, options.answer_timeout)
            out.trials.append(trial)
            print(f"  trial {index + 1:>2} {symbol} {trial.origin:<4} ${trial.usd:,.2f}: "
                  f"keeper {trial.keeper_ms} ms ({trial.keeper_txs} liquidations), "
                  f"bare {trial.bare_ms} ms, load {trial.load:.1f}", flush=True)
            await asyncio.to_thread(devnet.tick, time.time() + 3600)  # SVR public copies
            await _settle(chain, bot.searcher, options, processes)
        (workdir / "arrivals.json").write_text(json.dumps(await _arrivals(chain)))
    finally:
        for process in processes:
            process.stop(timeout=10)
        await chain.aclose()
        await asyncio.to_thread(staged.stop)
    out.load = (load, os.getloadavg()[0])
    out.seconds = time.monotonic() - began
    return out


def _bare(info: Any, events_url: str, workdir: Path) -> Process:
    network = info.oracle_network
    path = workdir / "bare-config.json"
    path.write_text(json.dumps({
        "rpc_url": info.rpc_url, "events_url": events_url,
        "feeds": [f.read_by_market.lower() for f in network.feeds.values()],
        "key": dev_key(BARE_INDEX)}))
    return Process("bare", [sys.executable, "-m", "benchmarks.auction.bare", str(path)],
                   workdir)


async def _ready(chain: Rpc, processes: list[Process], port: int, timeout: float) -> None:
    """The keeper processed the current head; then a few blocks for its prepared levels."""
    target = int(await chain.call("eth_blockNumber"), 16)
    deadline = time.monotonic() + timeout
    while scrape(port).get("keeper_head_block", 0) < target:
        for process in processes:
            process.check()
        if time.monotonic() > deadline:
            raise RuntimeError("the keeper did not get ready in time")
        await asyncio.sleep(0.2)
    await asyncio.sleep(3.0)


def summary(result: LatencyRun) -> dict[str, Any]:
    """p50 / p99 per bot and origin, over the trials both bots answered."""
    out: dict[str, Any] = {"load": [round(x, 1) for x in result.load],
                           "seconds": round(result.seconds, 1), "workdir": result.workdir,
                           "trials": [vars(t) for t in result.trials]}
    for origin in ("hint", "pool", "all"):
        chosen = [t for t in result.trials if origin in ("all", t.origin)]
        answered = [t for t in chosen if t.keeper_ms is not None]
        keeper = [t.keeper_ms for t in answered if t.keeper_ms is not None]
        bare = [t.bare_ms for t in chosen if t.bare_ms is not None]
        out[origin] = {"trials": len(chosen), "keeper_answered": len(answered),
                       "keeper_p50_ms": quantile(keeper, 0.5),
                       "keeper_p99_ms": quantile(keeper, 0.99),
                       "bare_p50_ms": quantile(bare, 0.5), "bare_p99_ms": quantile(bare, 0.99)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.auction.hint_latency")
    parser.add_argument("--trials", type=int, default=LatencyOptions.trials)
    parser.add_argument("--move", type=Decimal, default=LatencyOptions.move)
    parser.add_argument("--settle", type=float, default=LatencyOptions.settle)
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if args.trials < 1 or not Decimal(0) < args.move < Decimal("0.5") or args.settle <= 0:
        parser.error("--trials must be >= 1, --move in (0, 0.5), --settle > 0")
    options = LatencyOptions(trials=args.trials, move=args.move, settle=args.settle)
    root = args.workdir or cache_dir() / "bench" / (
        f"hint-latency-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    report = summary(asyncio.run(run(options, root)))
    for origin in ("hint", "pool", "all"):
        s = report[origin]
        print(f"{origin:<4} trials {s['trials']:>2}, keeper answered {s['keeper_answered']:>2}: "
              f"keeper p50 {s['keeper_p50_ms']} / p99 {s['keeper_p99_ms']} ms; "
              f"bare p50 {s['bare_p50_ms']} / p99 {s['bare_p99_ms']} ms")
    print(f"load {report['load'][0]} -> {report['load'][1]}, {report['seconds']} s, "
          f"workdir {report['workdir']}")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

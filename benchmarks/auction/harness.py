"""One auction run: stage the devnet, start the bots, drive the crash through the oracle
network, wait until quiet, judge from the chain.

Modes:
- `competitor`: the keeper (bid share `keeper_bid`) against the race's peer-design
  competitor (benchmarks/race/competitor.py: polls heads, reads the Aave oracle, sends
  publicly with a fixed tip);
- `bidder`: the keeper against a second keeper instance, identical but for a lower bid
  share (`rival_bid`), both answering the same hints and pending transmits with backruns.

Beside them runs the bare loop (bare.py), answering the same oracle transactions with a
pre-signed bundle, so the keeper's "oracle transaction -> bundle at the builder" time is
read side by side with the least any bot can do, both by the builder's clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from eth_account import Account

from benchmarks.auction.chain import (
    LANE_MARK,
    Bids,
    Landing,
    bids,
    bot_transactions,
    executed_profit_usd,
    landings,
    merge_lanes,
)
from benchmarks.auction.latency import Latencies, latencies
from benchmarks.auction.setup import (
    BARE_INDEX,
    RIVAL_INDEX,
    Bot,
    Stage,
    dev_key,
    keeper_config,
    searcher_key,
    stage,
)
from benchmarks.race.competitor import CompetitorConfig
from benchmarks.race.harness import COMPETITOR_INDEX, Process, _free_port, _scrape
from benchmarks.race.rpc import Rpc
from benchmarks.race.verdict import Contracts, Verdict, verdict
from keeper.devnet.arbitrage import Arbitrageur
from keeper.devnet.builder import DEFAULT_COINBASE
from keeper.devnet.crash import crash_steps
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY
from keeper.devnet.oracles.market import attach
from keeper.devnet.price_path import load_price_path
from keeper.devnet.tokens import DEFAULT_TOKENS

Mode = Literal["competitor", "bidder"]
GWEI = 10**9


@dataclass(frozen=True)
class AuctionOptions:
    first_step: int = 60  # the bundled 2021-05-19 path: WETH 1714 -> 1378 over steps 60-80
    steps: int = 22
    step_seconds: float = 1.5
    keeper_bid: Decimal = Decimal("0.9")
    rival_bid: Decimal = Decimal("0.5")
    competitor_tip_gwei: Decimal = Decimal(1)
    competitor_poll: float = 0.1
    quiet_seconds: float = 3.0
    idle_timeout: float = 60.0
    ready_timeout: float = 120.0
    bundles: bool = True  # False: the keepers send publicly (the path before issue 15)
    block_interval: float = 1.0  # seconds between the builder's blocks
    # The devnet's pools traded to each step's prices before its oracle transactions and
    # every block after (`_Market`, keeper/devnet/arbitrage.py): the exits a flash
    # liquidation sells into follow the market, as arbitrage keeps them on a live chain.
    # False: left at the deployed prices through the crash (every flash exit a windfall,
    # and profits, so bids, valued on them).
    arbitrage: bool = True


@dataclass(frozen=True)
class Posted:
    """An oracle transaction the crash sent: `hint` (SVR, private), `pool` (public)."""

    step: int
    symbol: str
    tx_hash: str
    origin: str


@dataclass
class AuctionResult:
    mode: Mode
    options: AuctionOptions
    verdict: Verdict
    bids: Bids
    gained: dict[str, float]  # keeper -> USD its flash executor paid it, after the bid
    latencies: Latencies
    landings: list[Landing]
    posted: list[Posted]
    metrics: dict[str, dict[str, float]]
    workdir: Path
    seconds: float
    load: tuple[float, float]
    notes: list[str] = field(default_factory=list)


def run_auction(mode: Mode, options: AuctionOptions, workdir: Path) -> AuctionResult:
    workdir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_run(mode, options, workdir))


async def _run(mode: Mode, options: AuctionOptions, workdir: Path) -> AuctionResult:
    started, load = time.monotonic(), os.getloadavg()[0]
    bots = [Bot("keeper", DEVNET_LIQUIDATOR_KEY, options.keeper_bid)]
    if mode == "bidder":
        bots.append(Bot("rival", dev_key(RIVAL_INDEX), options.rival_bid))
    comp_key = dev_key(COMPETITOR_INDEX) if mode == "competitor" else None
    competitor = None if comp_key is None else Bot("competitor", comp_key, Decimal(0)).address
    staged = await asyncio.to_thread(stage, bots, competitor,
                                     interval=options.block_interval)
    processes: list[Process] = []
    chain = await Rpc.open(staged.info.rpc_url)
    try:
        ports = {bot.name: _free_port() for bot in bots}
        for bot in bots:
            config = keeper_config(staged.info, bot, workdir, builders=staged.builder.urls,
                                   monitoring_port=ports[bot.name], bundles=options.bundles)
            processes.append(Process(bot.name, [
                sys.executable, "-c", "from keeper.cli import main; main()", "--config",
                str(config), "--log-format", "json", "--debug", "run"], workdir,
                env={"KEEPER_ACCOUNT__PRIVATE_KEY": bot.key, **(
                    {"KEEPER_ACCOUNT__SEARCHER_KEY": searcher_key(bot.name),
                     "KEEPER_ACCOUNT__LANE_KEYS": json.dumps(bot.lane_keys)}
                    if options.bundles else {})}))
        if comp_key is not None:
            processes.append(_competitor(staged, options, workdir, comp_key))
        processes.append(_bare(staged, workdir))
        await _ready(chain, processes, ports, options, competitor is not None)
        first = int(await chain.call("eth_blockNumber"), 16) + 1
        market = _Market(staged, options.block_interval) if options.arbitrage else None
        keeping = asyncio.ensure_future(market.keep()) if market is not None else None
        try:
            posted = await _drive(staged, options, market)
            await _quiet(chain, processes, options)
        finally:
            if keeping is not None:
                keeping.cancel()
                await asyncio.gather(keeping, return_exceptions=True)
        metrics = {name: _scrape(port) for name, port in ports.items()}
        for process in processes:
            process.stop()
        last = int(await chain.call("eth_blockNumber"), 16)
        names = {bot.name: bot.address for bot in bots}
        for bot in bots:  # each lane is judged on its own, then counted as its bot
            names.update({f"{bot.name}{LANE_MARK}{i}": str(Account.from_key(k).address).lower()
                          for i, k in enumerate(bot.lane_keys, 1)})
        if competitor is not None:
            names["competitor"] = competitor
        scene = _Scene(staged, mode, options, names, bots, workdir, started, load)
        return await _judge(chain, scene, first, last, posted=posted, metrics=metrics)
    finally:
        for process in processes:
            process.stop(timeout=10)
        await chain.aclose()
        await asyncio.to_thread(staged.stop)


@dataclass
class _Scene:
    """One run's fixed parts, for judging it."""

    staged: Stage
    mode: Mode
    options: AuctionOptions
    names: dict[str, str]  # bot name -> sending address
    bots: list[Bot]
    workdir: Path
    started: float
    load: float


async def _judge(chain: Rpc, scene: _Scene, first: int, last: int, *, posted: list[Posted],
                 metrics: dict[str, dict[str, float]]) -> AuctionResult:
    staged, names, bots, workdir = scene.staged, scene.names, scene.bots, scene.workdir
    info = staged.info
    network = info.oracle_network
    assert network is not None
    feeds = {info.tokens[s].address: f.read_by_market for s, f in network.feeds.items()}
    contracts = Contracts(info.aave_v3.pool, None, info.aave_v3.oracle,
                          info.tokens["WETH"].address, feeds)
    judged = merge_lanes(await verdict(chain, contracts, names, first, last))
    sent = await bot_transactions(chain, {a: n.split(LANE_MARK)[0] for n, a in names.items()},
                                  first, last)
    paid = await bids(chain, sent, DEFAULT_COINBASE)
    gained = await executed_profit_usd(
        chain, {b.name: sent.get(b.name, []) for b in bots}, info.aave_v3.oracle)
    landed = await landings(chain, [(p.tx_hash, p.origin) for p in posted
                                    if p.origin in ("hint", "pool")], sent)
    arrivals = await chain.call("builder_arrivals")
    signers = {bot.name: bot.searcher for bot in bots}
    signers["bare"] = str(Account.from_key(dev_key(BARE_INDEX)).address).lower()
    timed = latencies(arrivals, [(p.tx_hash, p.origin) for p in posted
                                 if p.origin in ("hint", "pool")], signers)
    (workdir / "arrivals.json").write_text(json.dumps(arrivals))
    # Who took each account first and every bot's revert, to explain the losses afterwards
    # with the bots' logs and journals (the chain is gone once the run ends).
    (workdir / "verdict.json").write_text(json.dumps({
        "liquidations": [dataclasses.asdict(x) for x in judged.liquidations],
        "reverts": [dataclasses.asdict(x) for x in judged.reverts]}))
    # The builder's reports of its last 64 blocks: why each bundle was dropped or included.
    (workdir / "blocks.json").write_text(json.dumps(await chain.call("builder_blocks")))
    return AuctionResult(scene.mode, scene.options, judged, paid, gained, timed, landed, posted,
                         metrics, workdir, time.monotonic() - scene.started,
                         (scene.load, os.getloadavg()[0]))


def _competitor(staged: Stage, options: AuctionOptions, workdir: Path, key: str) -> Process:
    info = staged.info
    config = CompetitorConfig(
        rpc_url=info.rpc_url, key=key, pool=info.aave_v3.pool, oracle=info.aave_v3.oracle,
        morpho=info.morpho_blue.morpho, ws_url=info.ws_url, ws=False,
        poll_interval=options.competitor_poll,
        tip=int(options.competitor_tip_gwei * GWEI), report=str(workdir / "competitor.json"))
    path = workdir / "competitor-config.json"
    config.write(path)
    return Process("competitor", [sys.executable, "-m", "benchmarks.race.competitor",
                                  str(path)], workdir)


def _bare(staged: Stage, workdir: Path) -> Process:
    network = staged.info.oracle_network
    assert network is not None
    path = workdir / "bare-config.json"
    path.write_text(json.dumps({
        "rpc_url": staged.info.rpc_url, "events_url": staged.builder.events_url,
        "feeds": [f.read_by_market.lower() for f in network.feeds.values()],
        "key": dev_key(BARE_INDEX)}))
    return Process("bare", [sys.executable, "-m", "benchmarks.auction.bare", str(path)],
                   workdir)


async def _ready(chain: Rpc, processes: list[Process], ports: dict[str, int],
                 options: AuctionOptions, competitor: bool) -> None:
    """Every keeper's /metrics shows a processed head at or past the current one; the
    competitor printed its ready line; then a few seconds for the prepared levels."""
    target = int(await chain.call("eth_blockNumber"), 16)
    deadline = time.monotonic() + options.ready_timeout
    while True:
        for process in processes:
            process.check()
        ready = all(_scrape(p).get("keeper_head_block", 0) >= target for p in ports.values())
        if competitor:
            comp = next(p for p in processes if p.name == "competitor")
            ready = ready and '"ready"' in comp.stdout_path.read_text()
        if ready:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the bots did not get ready in time")
        await asyncio.sleep(0.2)
    await asyncio.sleep(3.0)  # blocks pass: the keepers prepare their levels


class _Market:
    """Arbitrage as on a live chain (`--arbitrage`): the devnet's pools traded to the
    market's prices (the crash step's) before each step's oracle transactions, and again
    every block until the run ends, so that a pool a large exit moved (a keeper's flash
    liquidation selling $1M of WETH) is back at the market a block later instead of staying
    where the exit left it through the rest of the run (keeper/devnet/arbitrage.py)."""

    def __init__(self, staged: Stage, interval: float) -> None:
        self.arbitrageur = Arbitrageur(staged.info, staged.info.rpc_url)
        self.prices = {s.symbol: s.usd_price for s in DEFAULT_TOKENS}
        self.interval = interval
        self._lock = asyncio.Lock()  # one follow at a time: the arbitrageur's nonces

    async def follow(self, prices: Mapping[str, Decimal] | None = None) -> None:
        """Public transactions, in the next block (with the oracle's, or before them)."""
        async with self._lock:
            if prices is not None:
                self.prices.update(prices)
            await asyncio.to_thread(self.arbitrageur.follow, self.prices)

    async def keep(self) -> None:
        """`follow` every block interval, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            await self.follow()


async def _drive(staged: Stage, options: AuctionOptions,
                 market: _Market | None = None) -> list[Posted]:
    """The crash path's WETH and WBTC prices through the oracle network, one step every
    `step_seconds` (each feed transmits when its deviation rule says so; WETH's SVR copy
    goes privately first, publicly after the cut-off); `market`: arbitrage first."""
    devnet = await asyncio.to_thread(attach, staged.info, staged.info.rpc_url)
    steps = crash_steps(load_price_path(), {s.symbol: s.usd_price for s in DEFAULT_TOKENS})
    posted: list[Posted] = []
    for step in steps[options.first_step: options.first_step + options.steps]:
        began = time.monotonic()
        if market is not None:
            await market.follow(step.prices)
        now = time.time()
        for symbol, usd in step.prices.items():
            tx_hash = await asyncio.to_thread(devnet.post, symbol, usd, now)
            if tx_hash is not None:
                origin = "hint" if symbol in devnet.svr else "pool"
                posted.append(Posted(step.index, symbol, tx_hash, origin))
        for tx_hash in await asyncio.to_thread(devnet.tick, now):
            posted.append(Posted(step.index, "WETH", tx_hash, "public copy"))
        await asyncio.sleep(max(0.0, options.step_seconds - (time.monotonic() - began)))
    while any(svr.pending for svr in devnet.svr.values()):
        await asyncio.sleep(0.2)
        for tx_hash in await asyncio.to_thread(devnet.tick, time.time()):
            posted.append(Posted(-1, "WETH", tx_hash, "public copy"))
    return posted


async def _quiet(chain: Rpc, processes: list[Process], options: AuctionOptions) -> None:
    """Until the builder's pool is empty and no bundle arrived for `quiet_seconds`."""
    deadline = time.monotonic() + options.idle_timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        for process in processes:
            process.check()
        pool = await chain.call("txpool_content")
        arrivals: dict[str, Any] = await chain.call("builder_arrivals")
        count = len(arrivals.get("bundles", []))
        busy = any(pool.get("pending", {}).values())
        if count != last or busy:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= options.quiet_seconds:
            return
        await asyncio.sleep(0.25)

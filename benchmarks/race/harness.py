"""One race on a running devnet: fund both bots, start them, drive a crash, wait, judge.

`run_race(info, options, workdir)`:

1. funds the competitor (anvil dev account 5) with exactly the keeper's token balances
   (the keeper is the devnet liquidator, account 1, which the deploy gave $5M of every
   token, minted the same way: the tokens' public `mint` sent by the deployer), and
   approves the Aave Pool and Morpho Blue for both bots (a live bot approved long before a
   crash); with `flash`, deploys a FlashLiquidator the keeper owns
   (`keeper.deploy_executor.deploy_flash_liquidator`);
2. sets the block mode: `automine` (every transaction mined at once in its own block, first
   come first served, as L2 sequencers order) or `interval` (`evm_setAutomine false` +
   `evm_setIntervalMining 1`: one block a second, the pool ordered by fee, anvil's default
   `--order fees`);
3. starts the keeper as the real daemon, `keeper run` in its own process with a generated
   config (WebSocket intake, live mode, the product's breakers except a gas budget sized for
   crash-day base fees, monitoring on a free port; keepers.py), with `ha` two replicas of it
   on a PostgreSQL journal (ha.py), and the competitor in its own process
   (benchmarks/race/competitor.py), and waits until both have synced;
4. drives the crash: `keeper.devnet.crash.crash_steps` + `post_step` along a price path
   (the bundled 2021-05-19 ETH/USD day by default), one step every `step_seconds` (a step
   posts WETH then WBTC; with `historical_gas`, also that day's gas price as the base fee,
   off by default: see `RaceOptions`); under interval mining `post_step`
   sends the step's two posts together so they share a block;
5. waits until both bots are idle: the pool empty and neither bot's nonce moved for
   `quiet_seconds`; scrapes the keeper's /metrics (its own view: outcomes, breakers); stops
   both (SIGTERM: the daemon finishes what is in flight);
6. judges from the chain (verdict.py) and times the sends (timing.py).

The harness process itself only drives the price and listens to heads; each bot has a
process (and, on 2 cores, a fair share of the CPU) of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from eth_account import Account
from web3 import Web3
from websockets.asyncio.client import connect

from benchmarks.race import abi
from benchmarks.race.competitor import CompetitorConfig
from benchmarks.race.keepers import KeeperSide, free_port, scrape, start_keepers
from benchmarks.race.keepers import Process as Process  # noqa: PLC0414 (re-exported)
from benchmarks.race.rpc import Rpc
from benchmarks.race.timing import BotSend, LostRaces, Timing, lost_races, timing
from benchmarks.race.verdict import ANSWER_UPDATED, Contracts, Verdict, verdict
from keeper.deploy_executor import deploy_flash_liquidator
from keeper.devnet.borrowers import token_amount
from keeper.devnet.crash import CrashStep, crash_steps
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY
from keeper.devnet.deployer import Deployer, rpc
from keeper.devnet.info import DevnetInfo
from keeper.devnet.price_path import load_price_path
from keeper.devnet.tokens import DEFAULT_TOKENS, mintable_erc20, to_feed_answer

MNEMONIC = "test test test test test test test test test test test junk"
COMPETITOR_INDEX = 5  # an anvil dev account the devnet deploy never touches
GWEI = 10**9
POST_GAS = 200_000  # the gas limit of a feed's updateAnswer
Mode = Literal["automine", "interval"]
_free_port, _scrape = free_port, scrape  # benchmarks/auction imports them from here


@dataclass(frozen=True)
class RaceOptions:
    """One race's knobs (the command line's, see benchmarks/race/__main__.py)."""

    mode: Mode = "automine"
    path: Path | None = None  # a price path CSV; the bundled 2021-05-19 day when None
    first_step: int = 0
    steps: int = 90
    step_seconds: float = 1.0
    competitor: bool = True  # False: the keeper alone
    competitor_poll: float = 0.1
    competitor_ws: bool = False
    competitor_tip_gwei: Decimal = Decimal(1)
    keeper_tip_gwei: Decimal = Decimal(1)
    flash: bool = False
    # Post the path's historical gas prices as base fees. Off by default: ten minutes of
    # the day pass in one step, so the base fee jumps up to 3x from one block to the next,
    # which no chain does (12.5 % a block at most) and which strands every transaction
    # priced at 2x the last base fee, as the peer design prices them.
    historical_gas: bool = False
    capital_usd: Decimal | None = None  # both bots' balance of each token (default: the
    # keeper's, i.e. the devnet liquidator's $5M)
    # Post a feed only when its price moved by the devnet's published deviation (devnet.json
    # `feed_rules`) since its last post, as a Chainlink feed does; False posts every step.
    deviation_gated: bool = True
    # [ha] on: the keeper side is two replicas of its account on a PostgreSQL journal
    # (benchmarks/race/ha.py), on `ha_dsn`'s server, else on one the race starts.
    ha: bool = False
    ha_dsn: str | None = None
    quiet_seconds: float = 2.0
    idle_timeout: float = 60.0
    ready_timeout: float = 120.0


@dataclass
class RaceResult:
    """What one race gave."""

    options: RaceOptions
    verdict: Verdict
    timing: Timing
    lost: dict[str, dict[str, LostRaces]]  # bot -> cause -> by when it acted (timing.py)
    keeper_metrics: dict[str, float]
    competitor: dict[str, Any]
    workdir: Path
    seconds: float
    stuck: int  # bot transactions still in the pool at the end
    load: tuple[float, float] = (0.0, 0.0)  # the machine's 1-minute load average, start and end
    notes: list[str] = field(default_factory=list)
    sends: dict[str, list[BotSend]] = field(default_factory=dict)  # bot -> its timed sends


def competitor_key() -> str:
    Account.enable_unaudited_hdwallet_features()
    account = Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{COMPETITOR_INDEX}")
    return "0x" + bytes(account.key).hex()


def run_race(info: DevnetInfo, options: RaceOptions, workdir: Path) -> RaceResult:
    """One race on the running devnet `info` (its state is changed: start a fresh one)."""
    # A race runs on a fresh chain: a journal left by an earlier race in the same folder
    # (the same --workdir again) would hand the keeper nonces that chain never saw.
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    return asyncio.run(_race(info, options, workdir))


# ---------------------------------------------------------------------------- set-up


def fund(w3: Web3, info: DevnetInfo, keeper: str, competitor: str,
         capital_usd: Decimal | None = None) -> dict[str, int]:
    """The competitor gets the keeper's balance of every token (both topped up to
    `capital_usd` of each first, when given); both approve the protocols."""
    deployer = Deployer(w3, Web3.to_checksum_address(info.accounts.deployer))
    artifact = mintable_erc20()
    spenders = [info.aave_v3.pool, info.morpho_blue.morpho]
    specs = {s.symbol: s for s in DEFAULT_TOKENS}
    balances = {}
    for symbol, token_info in info.tokens.items():
        token = w3.eth.contract(address=Web3.to_checksum_address(token_info.address),
                                abi=artifact.abi)
        held = {bot: int(token.functions.balanceOf(Web3.to_checksum_address(bot)).call())
                for bot in (keeper, competitor)}
        want = held[keeper]
        if capital_usd is not None and symbol in specs:
            want = max(want, token_amount(capital_usd, specs[symbol]))
        for bot, have in held.items():
            if want > have:
                deployer.send(token.functions.mint(Web3.to_checksum_address(bot), want - have))
        balances[symbol] = want
        for bot in (keeper, competitor):
            for spender in spenders:
                deployer.send(token.functions.approve(Web3.to_checksum_address(spender),
                                                      abi.MAX_UINT),
                              sender=Web3.to_checksum_address(bot))
    return balances


# ---------------------------------------------------------------------------- the race


async def _race(info: DevnetInfo, options: RaceOptions, workdir: Path) -> RaceResult:
    started, load = time.monotonic(), os.getloadavg()[0]
    w3 = Web3(Web3.HTTPProvider(info.rpc_url, request_kwargs={"timeout": 60}))
    keeper = Account.from_key(DEVNET_LIQUIDATOR_KEY).address.lower()
    comp_key = competitor_key()
    competitor = Account.from_key(comp_key).address.lower()
    await asyncio.to_thread(fund, w3, info, keeper, competitor, options.capital_usd)
    flash_executor = None
    if options.flash:
        deployed = await asyncio.to_thread(
            deploy_flash_liquidator, w3, keeper, Account.from_key(DEVNET_LIQUIDATOR_KEY),
            aave_pool=info.aave_v3.pool, morpho=info.morpho_blue.morpho,
            max_fee_per_gas=5000 * GWEI, priority_fee=GWEI)
        flash_executor = deployed.address
    if options.mode == "interval":
        rpc(w3, "evm_setAutomine", False)
        rpc(w3, "evm_setIntervalMining", 1)
    chain = await Rpc.open(info.rpc_url)
    seen: dict[int, float] = {}
    stop_heads = asyncio.Event()
    heads = asyncio.create_task(_watch_heads(info.ws_url, seen, stop_heads))
    bots: list[Process] = []
    keepers: KeeperSide | None = None
    try:
        keepers = await asyncio.to_thread(
            start_keepers, info, workdir, tip_gwei=options.keeper_tip_gwei,
            flash_executor=flash_executor, ha=options.ha, ha_dsn=options.ha_dsn)
        bots += keepers.processes
        rival = _start_competitor(info, options, workdir, comp_key) if options.competitor else None
        bots += [rival] if rival else []
        await _ready(chain, bots, keepers, rival, options)
        first = int(await chain.call("eth_blockNumber"), 16) + 1
        await _drive(w3, info, options)
        stuck = await _idle(chain, [keeper, competitor], bots, options)
        metrics = keepers.metrics()
        keepers.stop()  # before the competitor: with `ha`, the standby first
        for bot in bots:
            bot.stop()
        last = int(await chain.call("eth_blockNumber"), 16)
        names = {"keeper": keeper, "competitor": competitor} if options.competitor \
            else {"keeper": keeper}
        contracts = Contracts(info.aave_v3.pool, info.morpho_blue.morpho, info.aave_v3.oracle,
                              info.tokens["WETH"].address,
                              {info.tokens[s].address: f for s, f in info.feeds.items()})
        judged = await verdict(chain, contracts, names, first, last)
        steps = await _step_blocks(chain, info.feeds["WETH"], first, last)
        report = _competitor_report(workdir)
        sends = {"keeper": keepers.sends()}
        if options.competitor:
            sends["competitor"] = [BotSend(s["tx_hash"], s["sent_at"], s["block_seen"])
                                   for s in report.get("sends", [])]
        lost = {name: lost_races([(r.tx_hash, r.block - (r.blocks_after or 0), r.cause)
                                  for r in judged.reverts
                                  if r.who == name and r.winner and r.cause != "market"],
                                 bot_sends, seen, arrival_order=options.mode == "automine")
                for name, bot_sends in sends.items()}
        return RaceResult(options, judged, timing(steps, seen, sends), lost, metrics, report,
                          workdir, time.monotonic() - started, stuck,
                          (load, os.getloadavg()[0]), keepers.notes(), sends)
    finally:
        for bot in bots:
            bot.stop(timeout=10)
        if keepers is not None:
            keepers.close()
        stop_heads.set()
        heads.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await heads
        if options.mode == "interval":
            with contextlib.suppress(Exception):
                rpc(w3, "evm_setIntervalMining", 0)
                rpc(w3, "evm_setAutomine", True)
        await chain.aclose()


def _start_competitor(info: DevnetInfo, options: RaceOptions, workdir: Path,
                      key: str) -> Process:
    config = CompetitorConfig(
        rpc_url=info.rpc_url, key=key, pool=info.aave_v3.pool, oracle=info.aave_v3.oracle,
        morpho=info.morpho_blue.morpho, ws_url=info.ws_url, ws=options.competitor_ws,
        poll_interval=options.competitor_poll,
        tip=int(options.competitor_tip_gwei * GWEI), report=str(workdir / "competitor.json"))
    path = workdir / "competitor-config.json"
    config.write(path)
    return Process("competitor", [sys.executable, "-m", "benchmarks.race.competitor", str(path)],
                   workdir)


def _competitor_report(workdir: Path) -> dict[str, Any]:
    path = workdir / "competitor.json"
    if not path.is_file():
        return {}
    report: dict[str, Any] = json.loads(path.read_text())
    return report


async def _watch_heads(ws_url: str, seen: dict[int, float], stop: asyncio.Event) -> None:
    """When each block's newHeads notification reached the harness (the timing's t0)."""
    async with connect(ws_url, max_size=None) as sock:
        await sock.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                                    "params": ["newHeads"]}))
        while not stop.is_set():
            message = json.loads(await sock.recv())
            result = message.get("params", {}).get("result")
            if isinstance(result, dict) and "number" in result:
                seen.setdefault(int(result["number"], 16), time.time())


async def _ready(chain: Rpc, bots: list[Process], keepers: KeeperSide, rival: Process | None,
                 options: RaceOptions) -> None:
    """Both bots synced: the competitor printed its ready line, the keeper's /metrics shows a
    processed head at or past the one it started at (an empty block is mined to give it
    one under automine; with `ha`, each replica's, and one leads)."""
    target = int(await chain.call("eth_blockNumber"), 16)
    deadline = time.monotonic() + options.ready_timeout
    competitor_ready = rival is None
    keeper_ready = False
    last_mine = 0.0
    while not (keeper_ready and competitor_ready):
        for bot in bots:
            bot.check()
        if time.monotonic() > deadline:
            raise RuntimeError("the bots did not get ready in time")
        if rival is not None and not competitor_ready:
            competitor_ready = '"ready"' in rival.stdout_path.read_text()
        if not keeper_ready:
            monitoring, keeper_ready = await asyncio.to_thread(keepers.ready, target)
            if monitoring and not keeper_ready and options.mode == "automine" \
                    and time.monotonic() - last_mine > 0.5:
                await chain.call("evm_mine")
                last_mine = time.monotonic()
        await asyncio.sleep(0.1)


async def _drive(w3: Web3, info: DevnetInfo, options: RaceOptions) -> None:
    points = load_price_path(options.path) if options.path else load_price_path()
    steps = crash_steps(points, {s.symbol: s.usd_price for s in DEFAULT_TOKENS})
    post = post_step  # not apply_step, in either mode: see post_step
    if not options.historical_gas:
        steps = [dataclasses.replace(step, gas_gwei=None) for step in steps]
    steps = steps[options.first_step: options.first_step + options.steps]
    if options.deviation_gated:
        steps = gated(steps, {s: Decimal(r.deviation_bps) / 10_000
                              for s, r in info.feed_rules.items()})
    for step in steps:
        started = time.monotonic()
        if step.prices:
            await asyncio.to_thread(post, w3, info, step)
        await asyncio.sleep(max(0.0, options.step_seconds - (time.monotonic() - started)))


def gated(steps: list[CrashStep], deviation: dict[str, Decimal]) -> list[CrashStep]:
    """The steps with only the posts a deviation-triggered feed would make: a symbol's price
    is posted when it moved by at least its deviation since its last post (the first step
    posts everything: the feeds start at the devnet's prices, not the path's)."""
    last: dict[str, Decimal] = {}
    out = []
    for step in steps:
        posts = {s: usd for s, usd in step.prices.items()
                 if s not in last or s not in deviation
                 or abs(usd / last[s] - 1) >= deviation[s]}
        last.update(posts)
        out.append(dataclasses.replace(step, prices=posts))
    return out


def post_step(w3: Web3, info: DevnetInfo, step: CrashStep) -> int:
    """`apply_step` for a race: the step's posts sent together (under interval mining they
    share a block) with a gas limit of their size and fees with room for a rising base fee.
    (apply_step sends each post with the set-up gas limit, 29M of the block's 30M: in a
    block full of liquidations it is left behind block after block, past its 30 s receipt
    wait. Under automine too: a keeper's volley sent in one batch fills blocks.)"""
    if step.gas_gwei is not None:
        rpc(w3, "anvil_setNextBlockBaseFeePerGas", hex(int(step.gas_gwei * GWEI)))
    base_fee = int(step.gas_gwei * GWEI) if step.gas_gwei is not None \
        else int(w3.eth.get_block("latest").get("baseFeePerGas", 0))
    hashes = []
    for symbol, usd in step.prices.items():
        data = abi.calldata("updateAnswer(int256)", to_feed_answer(usd))
        hashes.append(rpc(w3, "eth_sendTransaction", {
            "from": info.accounts.deployer, "to": info.feeds[symbol], "data": data,
            "gas": hex(POST_GAS), "maxFeePerGas": hex(4 * base_fee + GWEI),
            "maxPriorityFeePerGas": hex(GWEI)}))
    block = 0
    for tx_hash in hashes:
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.02)
        if receipt["status"] != 1:
            raise RuntimeError(f"price post {tx_hash} reverted")
        block = max(block, int(receipt["blockNumber"]))
    return block


async def _idle(chain: Rpc, addresses: list[str], bots: list[Process],
                options: RaceOptions) -> int:
    """Wait until the pool is empty and no bot's nonce moved for `quiet_seconds` (or the
    timeout); returns how many transactions were left in the pool."""
    deadline = time.monotonic() + options.idle_timeout
    last: list[Any] = []
    since = time.monotonic()
    while True:
        for bot in bots:
            bot.check()
        answers = await chain.batch(
            [("txpool_status", [])]
            + [("eth_getTransactionCount", [a, "pending"]) for a in addresses])
        status, nonces = answers[0], answers[1:]
        pending = int(status["pending"], 16) + int(status["queued"], 16)
        if nonces != last:
            last, since = nonces, time.monotonic()
        if pending == 0 and time.monotonic() - since >= options.quiet_seconds:
            return 0
        if time.monotonic() > deadline:
            return pending
        await asyncio.sleep(0.25)


async def _step_blocks(chain: Rpc, feed: str, first: int, last: int) -> list[int]:
    """The blocks where the WETH feed posted a price: the crash steps, from the chain."""
    logs = await chain.call("eth_getLogs", [{"fromBlock": hex(first), "toBlock": hex(last),
                                             "address": feed, "topics": [ANSWER_UPDATED]}])
    return sorted({int(x["blockNumber"], 16) for x in logs})

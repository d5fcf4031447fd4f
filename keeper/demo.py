"""`keeper demo`: the devnet, a historical crash driven through the feeds, and the keeper at work.

Starts the devnet (cached after the first run) and the keeper engine in this
process, with the devnet liquidator's public dev key. Then it posts the
2021-05-19 ETH/USD path on the WETH and WBTC feeds one step per block, with
that day's gas prices as base fees; the engine follows the chain, computes
health factors locally, ranks liquidations net of slippage and gas, and sends
them. A live view shows the block, the prices, the positions at risk and the
liquidations; a final table lists each one with its realized profit. Anvil is
always stopped on the way out.

Strategies are loaded through the `keeper.strategies` entry points (the
engine never imports strategies/); the demo runs every installed strategy
that can be configured from devnet.json. `--maker` runs it on the Maker devnet
profile (keeper.demo_profiles): the Maker strategy joins in, each step stands for
the path's 10 minutes of chain time (the auctions' clocks), and the summary
counts its kicks, takes and bids. `--perp` runs it on the Perp v2 devnet profile
(keeper.demo_perp): after each step's feeds, the vETH and vBTC vAMMs trade to the new
prices and the mark follows 16 s later; the summary counts its liquidations and closes.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import click
from eth_account import Account
from rich.console import Console
from rich.live import Live
from rich.table import Table
from web3 import Web3

from keeper.bids import BidPolicy
from keeper.chain.http import HttpRpc
from keeper.chain.ws import WsSubscriptions
from keeper.demo_perp import perp_section, perp_summary
from keeper.demo_profiles import (
    DemoProfile,
    maker_action,
    maker_section,
    maker_summary,
    profile,
)
from keeper.devnet.crash import CrashStep, apply_step, crash_steps
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY, DevnetSpec, start_devnet
from keeper.devnet.deployer import rpc
from keeper.devnet.info import DevnetInfo
from keeper.devnet.price_path import load_price_path
from keeper.devnet.tokens import DEFAULT_TOKENS
from keeper.dex.uniswap_v2 import PairBook
from keeper.errors import InputFileError
from keeper.execution.dispatch import LivePositions
from keeper.execution.executor import Executor
from keeper.execution.fees import FeePolicy
from keeper.execution.flash_route import FlashRoute
from keeper.execution.journal import Journal
from keeper.execution.outcomes import DEFAULT_KEEP
from keeper.log import configure_logging
from keeper.monitor import Monitor
from keeper.plugins import load
from keeper.prepared import DEFAULT_LEVELS, FeedRule
from keeper.ranking import realized_value
from keeper.strategy import Strategy, StrategyContext, StrategyFactory
from keeper.wiring import Keeper, assemble

GWEI = 10**9
WAD = 10**18
# Crash-day gas peaked near 1,200 gwei; the demo keeper bids up to this cap.
DEMO_MAX_FEE = 3_000 * GWEI
DEMO_PRIORITY_FEE = 2 * GWEI
DEMO_MIN_PROFIT_USD = Decimal(5)
# How long a step waits for the keeper to catch up before moving the price again.
STEP_SETTLE_SECONDS = 10.0


@dataclass
class DemoView:
    """What the live view shows."""

    steps: int
    step: CrashStep | None = None
    block: int = 0
    weth_usd: Decimal = Decimal(2000)
    at_risk: int = 0
    sent: int = 0
    rows: list[tuple[str, ...]] = field(default_factory=list)

    def table(self, keeper: Keeper) -> Table:
        table = Table(title="keeper demo: the 2021-05-19 ETH crash", show_header=False)
        if self.step is not None:
            prices = "  ".join(f"{s} ${p:,.2f}" for s, p in self.step.prices.items())
            table.add_row("step", f"{self.step.index + 1}/{self.steps}  ({self.step.time} UTC)")
            gas = "-" if self.step.gas_gwei is None else f"{self.step.gas_gwei} gwei"
            table.add_row("block / base fee", f"{self.block} / {gas}")
            table.add_row("prices", prices)
        outcomes = keeper.outcomes
        table.add_row("positions at risk (HF < 1)", str(keeper.engine.stats.candidates))
        table.add_row("liquidations sent / confirmed",
                      f"{self.sent} / {outcomes.confirmed_count}")
        by_protocol = Counter(_protocol(o.key) for o in outcomes.confirmed
                              if o.key.count(":") > 1)
        table.add_row("confirmed by protocol",
                      "  ".join(f"{name} {n}" for name, n in sorted(by_protocol.items())) or "-")
        table.add_row("cumulative profit", _usd(outcomes.realized_profit, self.weth_usd))
        return table


def _protocol(key: str) -> str:
    """The strategy a journal key is for; a Maker key also names its action."""
    action = maker_action(key)
    return key.split(":")[1] if action is None else f"maker {action}"


def _usd(wei: int, weth_usd: Decimal) -> str:
    return f"{Decimal(wei) / WAD:.4f} WETH (${Decimal(wei) / WAD * weth_usd:,.2f})"


def devnet_strategies(
    info: DevnetInfo, liquidator: str, *, aave_markets: Sequence[str] = ("aave_v3",),
    morpho: bool = True,
) -> list[Strategy]:
    """Every installed strategy whose config can be read off devnet.json: one Aave strategy
    per market named in `aave_markets` (devnet.json's `aave_v3`, `aave_v3_6`; each instance
    named after its market), Morpho Blue unless `morpho` is false, and Maker when
    devnet.json has it (the Maker profile: keeper.demo_profiles.maker_section)."""
    context = StrategyContext(chain_id=info.chain_id, liquidator=liquidator)
    markets = info.aave_markets()
    sections: list[tuple[str, str, dict[str, object]]] = [
        (name, "aave_v3", {"addresses_provider": markets[name].addresses_provider})
        for name in aave_markets
    ]
    if morpho:
        sections.append(("morpho_blue", "morpho_blue", {"morpho": info.morpho_blue.morpho}))
    maker = maker_section(info)
    if maker is not None:
        sections.append(("maker", "maker", maker))
    perp = perp_section(info)
    if perp is not None:
        sections.append(("perp_v2", "perp_v2", perp))
    out: list[Strategy] = []
    for name, plugin_name, section in sections:
        plugin = load(plugin_name)
        if isinstance(plugin, StrategyFactory):
            strategy = plugin.create(plugin.config_model.model_validate(section), context)
            if strategy.name != name:
                strategy.name = name  # as keeper.run names a configured instance
            out.append(strategy)
    return out


async def build_keeper(
    info: DevnetInfo, journal: Journal, *, send: bool = True,
    key: str = DEVNET_LIQUIDATOR_KEY, flash_executor: str | None = None,
    ws: WsSubscriptions | bool = False, poll_interval: float = 0.05,
    keep_outcomes: int | None = DEFAULT_KEEP, bids: BidPolicy | None = None,
    monitor: Monitor | None = None, prepared_levels: int = DEFAULT_LEVELS,
    aave_markets: Sequence[str] = ("aave_v3",), morpho: bool = True,
    min_profit_usd: Decimal = DEMO_MIN_PROFIT_USD, batch_max: int = 5,
) -> Keeper:
    """A keeper wired to a devnet and synced at its head, sending as `key` (the liquidator's
    public dev key by default), through `flash_executor` when given (a FlashLiquidator `key`
    owns); `ws`: heads and feed logs over the devnet's WebSocket (True) or the one given,
    as the daemon's intake. `bids`: none by default (automine orders first come, first
    served: a tip buys nothing there). `prepared_levels`: liquidations prepared for each
    feed's next answers, that many deviation thresholds each way (devnet.json's
    `feed_rules`; 0: none). `aave_markets` / `morpho`: which markets it watches (the v3.0
    Aave market and Morpho Blue by default; see `devnet_strategies`). `min_profit_usd`
    (at the devnet's starting 2,000 USD per WETH) and `batch_max` as `[execution]`'s
    `min_profit_quote` and `batch_max` (a backtest sweep varies them)."""
    chain = await HttpRpc.open(info.rpc_url)
    weth = info.tokens["WETH"].address.lower()
    head = int(await chain.call("eth_blockNumber", []), 16)
    dex = await PairBook.load(chain, info.uniswap_v2.factory, head)
    account = Account.from_key(key)
    executor = None
    live = LivePositions()
    if send:
        executor = Executor(
            chain, account, journal, FeePolicy(DEMO_MAX_FEE, DEMO_PRIORITY_FEE),
            appraise=lambda c, d, got, paid, gas: realized_value(
                dex, weth, collateral=c, debt=d, collateral_received=got, debt_paid=paid,
                gas_paid=gas,
            ),
            flash_executor=flash_executor.lower() if flash_executor else None,
            quote_token=weth, still_there=live,
        )
        await executor.start()
    min_profit = int(min_profit_usd / Decimal(2000) * WAD)
    flash = None
    if executor is not None and flash_executor is not None:
        flash = await FlashRoute.discover(chain, flash_executor, dex, weth)
    keeper = assemble(
        chain, devnet_strategies(info, account.address, aave_markets=aave_markets, morpho=morpho),
        dex, quote_token=weth,
        min_profit=min_profit, priority_fee=DEMO_PRIORITY_FEE, executor=executor, live=live,
        flash=flash, batch_max=batch_max, keep_outcomes=keep_outcomes,
        poll_interval=poll_interval, bids=bids,
        monitor=monitor,
        ws=WsSubscriptions(info.ws_url) if ws is True else (ws or None),
        feed_rules={info.feeds[s]: FeedRule(r.deviation_bps, r.heartbeat)
                    for s, r in info.feed_rules.items() if s in info.feeds},
        prepared_levels=prepared_levels,
    )
    await keeper.sync()
    return keeper


async def _caught_up(keeper: Keeper, block: int, view: DemoView) -> None:
    deadline = time.monotonic() + STEP_SETTLE_SECONDS
    while time.monotonic() < deadline:
        view.sent = keeper.outcomes.recorded + keeper.inflight
        if keeper.engine.stats.processed >= block and not keeper.inflight:
            return
        await asyncio.sleep(0.02)


async def _drive(console: Console, info: DevnetInfo, steps: Sequence[CrashStep],
                 journal: Journal, *, step_seconds: int = 0,
                 after_step: Callable[[Web3, DevnetInfo, CrashStep], None] | None = None,
                 ) -> Keeper:
    # The daemon's intake: heads and feed logs pushed over the devnet's WebSocket.
    keeper = await build_keeper(info, journal, ws=True, aave_markets=("aave_v3",))
    w3 = Web3(Web3.HTTPProvider(info.rpc_url))
    view = DemoView(steps=len(steps))
    stop = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(keeper.run(stop))
            with Live(view.table(keeper), console=console, refresh_per_second=8) as live:
                for step in steps:
                    view.step, view.weth_usd = step, step.prices.get("WETH", view.weth_usd)
                    if step_seconds and step.index:  # the step's time passes on the chain
                        await asyncio.to_thread(rpc, w3, "evm_increaseTime", step_seconds)
                    view.block = await asyncio.to_thread(apply_step, w3, info, step)
                    if after_step is not None:
                        await asyncio.to_thread(after_step, w3, info, step)
                        view.block = await asyncio.to_thread(lambda: int(w3.eth.block_number))
                    await _caught_up(keeper, view.block, view)
                    live.update(view.table(keeper))
                await _caught_up(keeper, view.block + 1, view)
                live.update(view.table(keeper))
            stop.set()
    finally:
        await keeper.aclose()
    return keeper


def _final_table(keeper: Keeper, weth_usd: Decimal) -> Table:
    table = Table(title="liquidations by the keeper")
    for column in ("block", "protocol", "borrower", "status", "gas used", "realized profit"):
        table.add_column(column)
    for outcome in sorted(keeper.outcomes, key=lambda o: (o.block, o.key)):
        parts = outcome.key.split(":")
        protocol, account = ((_protocol(outcome.key), parts[2]) if len(parts) > 2
                             else ("-", outcome.key))
        table.add_row(str(outcome.block or "-"), protocol, account, outcome.status,
                      str(outcome.gas_used), _usd(outcome.realized_profit, weth_usd))
    return table


def run_demo(console: Console, *, spec: DevnetSpec | None = None, max_steps: int = 90,
             profile: DemoProfile | None = None) -> Keeper:
    """Run the demo end to end, on the default devnet or a `profile` of it (the Maker
    devnet); returns the keeper (its outcomes say what happened)."""
    spec = spec or DevnetSpec()
    started = time.monotonic()
    with console.status("starting the devnet (the first run deploys and takes longer)…"):
        anvil, info, cached = (profile.start if profile else start_devnet)(spec)
    try:
        console.print(
            f"devnet up in {time.monotonic() - started:.1f} s "
            f"({'cached state' if cached else 'cold deploy'}) at {info.rpc_url}"
            + (f"; with {profile.title}" if profile else "")
        )
        steps = crash_steps(load_price_path(), {s.symbol: s.usd_price for s in DEFAULT_TOKENS})
        with tempfile.TemporaryDirectory(prefix="keeper-demo-") as folder:
            journal = Journal(Path(folder) / "journal.sqlite")
            try:
                keeper = asyncio.run(_drive(
                    console, info, steps[:max_steps], journal,
                    step_seconds=profile.step_seconds if profile else 0,
                    after_step=profile.after_step if profile else None))
                summary = journal.summary()
            finally:
                journal.close()
        weth_usd = steps[: max_steps][-1].prices["WETH"]
        console.print(_final_table(keeper, weth_usd))
        console.print(
            f"{keeper.outcomes.confirmed_count} liquidations confirmed, "
            f"{keeper.outcomes.by_status['reverted']} reverted; "
            f"realized profit {_usd(keeper.outcomes.realized_profit, weth_usd)}; "
            f"journal: {summary.counts}"
        )
        maker = maker_summary(o.key for o in keeper.outcomes.confirmed)
        if maker:
            console.print(maker)
        perp = perp_summary([o.key for o in keeper.outcomes.confirmed])
        if perp:
            console.print(perp)
        return keeper
    finally:
        anvil.stop()


@click.command("demo")
@click.option("--steps", default=90, show_default=True, type=click.IntRange(1, 144),
              help="10-minute steps of the crash path to play (the low comes at step 79).")
@click.option("--log-file", default="keeper-demo.log", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The engine's decisions, as JSON lines (the console shows the live view).")
# Each devnet profile is one more flag onto the same `profile_name` (keeper.demo_profiles).
@click.option("--maker", "profile_name", flag_value="maker", default=None,
              help="Add Maker MCD (the Maker devnet profile): the keeper also barks, takes, "
                   "bites and bids on its vaults' auctions; each step is 10 minutes of chain "
                   "time.")
@click.option("--perp", "profile_name", flag_value="perp",
              help="Add Perp v2 (the Perp devnet profile): the keeper also liquidates its "
                   "cross-margin accounts and closes the positions it takes over; each step "
                   "trades the vAMMs to the new prices.")
def demo(steps: int, log_file: Path, profile_name: str | None) -> None:
    """Run the devnet, play the 2021-05-19 crash, and let the keeper liquidate."""
    try:
        sink = log_file.open("a")
    except OSError as exc:
        raise InputFileError(f"{log_file}: cannot write the demo log ({exc.strerror})") from None
    with sink:
        configure_logging("json", "info", stream=sink)
        console = Console()
        run_demo(console, max_steps=steps, profile=profile(profile_name))
        console.print(f"the engine's decisions are in {log_file}")


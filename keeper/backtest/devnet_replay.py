"""`keeper backtest --devnet --price-path FILE`: a historical price path replayed on the devnet.

The devnet (real Aave V3, Uniswap V2 and Morpho Blue with a seeded borrower population)
has its feeds driven one path step per block, with the step's historical gas price as
the base fee, while the keeper engine (`keeper.demo.build_keeper`, as in `keeper demo`)
is stepped by the replay. The replay is the clock: automine is off, every block is mined
here, 12 s apart, and the engine steps onto each block only once what it sent in
reaction to the one before is in the pool (or over). A step's prices go in one block;
the keeper's reaction fills the blocks after it until it sends nothing more ("next-block",
the default), or starts in that very block, right after the prices ("after-oracle": the
block is first mined as a trial, as the archive backtest does; `keeper.backtest.trial`,
`keeper.backtest.devnet_chain`). So what happens depends on the path, the devnet and the
keeper, not on timing: the same inputs give the same report (wall-clock figures aside).

At every block the replay samples the books (`keeper.backtest.episodes`): which
positions are liquidatable and, at each step's price block and when an episode opens,
what liquidating each alone would have paid there. After each step it samples the
health-factor distribution. At the end the keeper's liquidations are read back from the
journal and their receipts. `--capital USD` gives the liquidator that much of each asset
(at the devnet's starting prices; 5M each otherwise) to see what capital costs.

There are no competing liquidators on the devnet, so the report's historical list is empty.

The path file (its format, its checks) is `keeper.backtest.path_file`; the sampling of the
books at every block is `keeper.backtest.recorder`; the mining of the devnet's blocks
`keeper.backtest.devnet_chain`.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from keeper import demo_profiles as profiles
from keeper.anvil import Anvil
from keeper.backtest.devnet_chain import SETTLE_SECONDS, Clock, DevnetChain, prepare
from keeper.backtest.episodes import Attempt, Position, Taken
from keeper.backtest.model import BacktestReport, Liquidation, PriceSample
from keeper.backtest.path_file import PricePath
from keeper.backtest.recorder import Recorder
from keeper.backtest.replay import Sends
from keeper.backtest.sweep_params import Tuning
from keeper.chain.http import HttpRpc
from keeper.demo import build_keeper
from keeper.demo_perp import perp_summary
from keeper.devnet.crash import CrashStep, crash_steps
from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.devnet.info import DevnetInfo
from keeper.devnet.tokens import DEFAULT_TOKENS
from keeper.execution.journal import Journal
from keeper.execution.receipts import TRANSFER_TOPIC
from keeper.types import Opportunity as Ranked
from keeper.wiring import Keeper

WAD = 10**18
MAX_BLOCKS_PER_STEP = 32  # blocks of the keeper's reaction to one step, at most

# (steps done, steps in all, blocks replayed so far): drives the CLI's progress bar.
Progress = Callable[[int, int, int], None]
StartDevnet = Callable[[DevnetSpec], tuple[Anvil, DevnetInfo, bool]]


async def replay(
    info: DevnetInfo, steps: Sequence[CrashStep], journal: Journal, *,
    progress: Progress | None = None, capital_usd: Decimal | None = None,
    tuning: Tuning | None = None, step_seconds: int = 0,
) -> BacktestReport:
    """Drive a running devnet along `steps`, the keeper engine stepped block by block
    (its bid share, minimum profit, batch size and insert position: `tuning`, the demo
    keeper's and "next-block" by default; `step_seconds`: the chain time between two
    steps' price blocks, beyond their blocks).

    The replay mines every block itself (automine off, 12 s apart): a step's prices in one
    block, then, while the keeper sends, one block holding everything it sent in reaction
    to the last (at most `MAX_BLOCKS_PER_STEP`). "after-oracle" puts its reaction to the
    prices in their own block, right after them (`keeper.backtest.devnet_chain`). The
    engine steps onto each block once its sends of the block before are in the pool or
    over, so what it does depends on the path, not on timing, and the same inputs give
    the same report.
    """
    setup = await HttpRpc.open(info.rpc_url)
    try:
        await setup.call("anvil_setAutomine", [False])
        clock = await Clock.of(setup)
        try:
            await prepare(setup, clock, info, capital_usd)
            return await _replay(info, steps, journal, clock, progress=progress,
                                 capital_usd=capital_usd, tuning=tuning or Tuning(),
                                 step_seconds=step_seconds)
        finally:
            await clock.release(setup)
            await setup.call("anvil_setAutomine", [True])
    finally:
        await setup.aclose()


async def _replay(
    info: DevnetInfo, steps: Sequence[CrashStep], journal: Journal, clock: Clock, *,
    progress: Progress | None, capital_usd: Decimal | None, tuning: Tuning, step_seconds: int,
) -> BacktestReport:
    keeper = await build_keeper(info, journal, keep_outcomes=None, prepared_levels=0,
                                aave_markets=("aave_v3",), **tuning.keeper_kwargs())
    engine = keeper.engine
    chain = DevnetChain(keeper, info, clock, step_seconds)
    symbols = {t.address.lower(): s for s, t in info.tokens.items()} | profiles.maker_symbols(info)
    recorder = Recorder(keeper, symbols)
    report = BacktestReport(mode="price-path", chain_id=info.chain_id,
                            from_block=engine.stats.head, to_block=engine.stats.head,
                            quote_symbol="WETH")
    report.decimals = {s: t.decimals for s, t in info.tokens.items()}
    report.min_profit_quote = engine.min_profit / WAD
    report.capital_usd = float(capital_usd) if capital_usd is not None else None
    started = time.monotonic()
    late = 0
    try:
        async with Sends() as tasks:
            for done, step in enumerate(steps, 1):
                trial = _Trial(keeper, chain, tasks) if tuning.insert == "after-oracle" else None
                if trial is not None and await chain.keeper_pool():  # the last step's leftovers
                    late += await _react(keeper, chain, recorder, tasks, await chain.mine())
                block, trial_late = await chain.post(step, trial)
                stamp = int((await keeper.chain.call(
                    "eth_getBlockByNumber", [hex(block), False]))["timestamp"], 16)
                report.prices += [PriceSample(block, stamp, s, float(p))
                                  for s, p in step.prices.items()]
                if done == 1:  # the assets the path does not move, once (for USD values)
                    report.prices += [PriceSample(block, stamp, t.symbol, float(t.usd_price))
                                      for t in DEFAULT_TOKENS if t.symbol not in step.prices]
                late += trial_late + await _react(keeper, chain, recorder, tasks, block,
                                                  held=trial.ranked if trial else ())
                recorder.sample_health(keeper.head())
                if progress is not None:
                    progress(done, len(steps), engine.stats.head - report.from_block)
            if await chain.keeper_pool():  # the last step ran out of blocks: mine the rest
                late += await _react(keeper, chain, recorder, tasks, await chain.mine())
            late += not await chain.caught_up()
            for _ in range(MAX_BLOCKS_PER_STEP):  # a late send: its block, then its outcome
                if not keeper.inflight:
                    break
                await chain.mine()
                await asyncio.sleep(0.05)
            for task in tasks.started:  # none left unless the node never mined one
                task.cancel()
        report.seconds = time.monotonic() - started
        report.to_block = engine.stats.head
        report.blocks_replayed = report.to_block - report.from_block
        await _fill_outcomes(report, keeper, journal, recorder)
    finally:
        await keeper.aclose()
    report.health = recorder.health
    if late:
        report.notes.append(f"{late} blocks were mined before every send of the keeper had "
                            f"reached the pool ({SETTLE_SECONDS:.0f} s): timing may then "
                            "change the figures")
    confirmed = [o.key for o in keeper.outcomes if o.status == "confirmed"]
    for line in (profiles.maker_summary(confirmed), perp_summary(confirmed)):
        report.notes += [f"{line} (confirmed sends)"] if line else []
    report.notes.append(INSERT_NOTES[tuning.insert])
    report.notes.append("devnet price path: no competing liquidators, so no historical "
                        "liquidations; a missed opportunity counts at what it paid alone when "
                        "it first paid the minimum profit")
    return report


INSERT_NOTES = {
    "next-block": "insert next-block: the keeper's reaction to a step's prices goes in the "
                  "blocks after theirs",
    "after-oracle": "insert after-oracle: the keeper's reaction to a step's prices goes in "
                    "their block, right after them (decided on a trial of that block)",
}


class _Trial:
    """Steps the keeper onto a price block's trial ("after-oracle"), as `_react` steps it
    onto a mined block; keeps what it ranked there (the recorder's sample of the rebuilt
    block counts it as held)."""

    def __init__(self, keeper: Keeper, chain: DevnetChain, tasks: asyncio.TaskGroup) -> None:
        self.keeper, self.chain, self.tasks = keeper, chain, tasks
        self.ranked: list[Ranked] = []

    async def __call__(self, number: int) -> int:
        late = not await self.chain.caught_up()
        self.ranked = await self.keeper.step(self.tasks, to=number, trial=True)
        return late + (not await self.chain.caught_up())


async def _react(keeper: Keeper, chain: DevnetChain, recorder: Recorder,
                 tasks: asyncio.TaskGroup, block: int, *, held: Sequence[Ranked] = ()) -> int:
    """The keeper's reaction to a step's price block, block by block until it sends
    nothing more (`held`: what its trial of the price block ranked); how many blocks were
    mined before a late send reached the pool."""
    late = 0
    value = True
    for _ in range(MAX_BLOCKS_PER_STEP):
        late += not await chain.caught_up()
        ranked = await keeper.step(tasks, to=block)
        await recorder.sample(keeper.head(), [*held, *ranked], value=value)
        value, held = False, ()
        late += not await chain.caught_up()
        if not await chain.keeper_pool():
            return late
        block = await chain.mine()
    return late


def _flows(receipt: Mapping[str, Any], me: str, collateral: str, debt: str) -> tuple[int, int]:
    """(debt repaid by `me`, collateral seized to `me`) from the receipt's ERC-20 Transfers."""
    repaid = seized = 0
    for entry in receipt["logs"]:
        topics = [t.lower() for t in entry["topics"]]
        if len(topics) == 3 and topics[0] == TRANSFER_TOPIC:
            token, amount = entry["address"].lower(), int(entry["data"], 16)
            repaid += amount if (token, topics[1][-40:]) == (debt, me) else 0
            seized += amount if (token, topics[2][-40:]) == (collateral, me) else 0
    return repaid, seized


async def _fill_outcomes(
    report: BacktestReport, keeper: Keeper, journal: Journal, recorder: Recorder
) -> None:
    """The keeper's liquidations (journal + receipts), its attempts by outcome, gas spent,
    and every opportunity (`keeper.backtest.episodes`)."""
    executor = keeper.executor
    assert executor is not None
    me = executor.address.lower().removeprefix("0x")
    taken: dict[Position, list[Taken]] = {}
    attempts: dict[Position, list[Attempt]] = {}
    statuses: Counter[str] = Counter()
    # Ordered by the chain, then the key: the outcomes' own order is the order sends settled.
    for outcome in sorted(keeper.outcomes, key=lambda o: (o.block, o.tx_hash, o.key)):
        report.gas_spent_wei += outcome.gas_paid
        statuses[outcome.status] += 1
        intent = journal.get(outcome.key)
        if intent is None:
            continue
        position = (intent.strategy, intent.account.lower())
        if outcome.status != "confirmed":
            attempts.setdefault(position, []).append(
                Attempt(intent.block, outcome.status, outcome.reason))
            continue
        taken.setdefault(position, []).append(Taken(
            outcome.block, intent.block, outcome.realized_profit, intent.collateral,
            intent.debt))
        receipt = await keeper.chain.call("eth_getTransactionReceipt", [outcome.tx_hash])
        repaid, seized = _flows(receipt, me, intent.collateral.lower(), intent.debt.lower())
        report.keeper.append(Liquidation(
            block=outcome.block, tx=outcome.tx_hash, liquidator=executor.address,
            protocol=intent.strategy, account=intent.account,
            collateral=recorder.symbol(intent.collateral), debt=recorder.symbol(intent.debt),
            repaid=repaid, seized=seized, profit_quote=outcome.realized_profit / WAD,
            gas_wei=outcome.gas_paid, by_keeper=True, profit_wei=outcome.realized_profit,
        ))
    report.keeper.sort(key=lambda x: (x.block, x.tx))
    report.attempts = dict(sorted(statuses.items()))
    for found in attempts.values():
        found.sort(key=lambda a: a.ranked_at)
    report.opportunities = recorder.episodes.build(
        taken, attempts, quote_unit=WAD, min_profit_wei=keeper.engine.min_profit,
        symbol=recorder.symbols)


def run_price_path(
    loaded: PricePath, *, spec: DevnetSpec | None = None, max_steps: int | None = None,
    progress: Progress | None = None, capital_usd: Decimal | None = None,
    tuning: Tuning | None = None, start: StartDevnet = start_devnet,
    profile: profiles.DemoProfile | None = None,
) -> BacktestReport:
    """Start the (cached) devnet, replay the path on it, stop it; the report says what happened.
    `start`: how the devnet's anvil starts (a sweep's task starts its own with more flags);
    `profile`: a devnet profile instead (keeper.demo_profiles: Maker), its own start and
    chain time per step."""
    if profile is not None:
        start = profile.start
    start_prices = {t.symbol: t.usd_price for t in DEFAULT_TOKENS}
    steps = crash_steps(loaded.points, start_prices, loaded.betas)[:max_steps]
    started = time.monotonic()
    anvil, info, _cached = start(spec or DevnetSpec())
    try:
        boot = time.monotonic() - started
        with (tempfile.TemporaryDirectory(prefix="keeper-backtest-") as folder,
              Journal(Path(folder) / "journal.sqlite") as journal):
            report = asyncio.run(replay(info, steps, journal, progress=progress,
                                        capital_usd=capital_usd, tuning=tuning,
                                        step_seconds=profile.step_seconds if profile else 0))
    finally:
        anvil.stop()
    report.boot_seconds = boot
    report.notes.insert(0, f"price path {loaded.path.name}: {len(steps)} "
                           f"step{'' if len(steps) == 1 else 's'} driving "
                           + ", ".join(f"{s} (beta {b})" for s, b in loaded.betas.items())
                           + (f"; {capital_usd:,.0f} USD of each asset on hand" if capital_usd
                              else ""))
    return report

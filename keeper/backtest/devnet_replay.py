"""`keeper backtest --devnet --price-path FILE`: a historical price path replayed on the devnet.

The devnet (real Aave V3, Uniswap V2 and Morpho Blue with a seeded borrower population)
has its feeds driven one path step per block, with the step's historical gas price as
the base fee, while the keeper engine (`keeper.demo.build_keeper`, as in `keeper demo`)
is stepped by the replay. The replay is the clock: automine is off, every block is mined
here, 12 s apart, and the engine steps onto each block only once what it sent in
reaction to the one before is in the pool (or over). A step's prices go in one block;
the keeper's reaction fills the blocks after it until it sends nothing more. So what
happens depends on the path, the devnet and the keeper, not on timing: the same inputs
give the same report (wall-clock figures aside).

At every block the replay samples the books (`keeper.backtest.episodes`): which
positions are liquidatable and, at each step's price block and when an episode opens,
what liquidating each alone would have paid there. After each step it samples the
health-factor distribution. At the end the keeper's liquidations are read back from the
journal and their receipts. `--capital USD` gives the liquidator that much of each asset
(at the devnet's starting prices; 5M each otherwise) to see what capital costs.

There are no competing liquidators on the devnet, so the report's historical list is empty.

The path file (its format, its checks) is `keeper.backtest.path_file`; the sampling of the
books at every block is `keeper.backtest.recorder`.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector

from keeper import demo_profiles as profiles
from keeper.anvil import Anvil
from keeper.backtest.episodes import Attempt, Position, Taken
from keeper.backtest.model import BacktestReport, Liquidation, PriceSample
from keeper.backtest.path_file import PricePath
from keeper.backtest.recorder import Recorder
from keeper.backtest.replay import Sends
from keeper.backtest.sweep_params import Tuning
from keeper.chain.http import HttpRpc
from keeper.demo import build_keeper
from keeper.demo_perp import follow_step_replayed, perp_summary
from keeper.devnet.crash import CrashStep, crash_steps
from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.devnet.info import DevnetInfo
from keeper.devnet.tokens import DEFAULT_TOKENS, to_feed_answer
from keeper.execution.allowances import APPROVE, MAX_UINT
from keeper.execution.capital import BALANCE_OF
from keeper.execution.journal import Journal
from keeper.execution.receipts import TRANSFER_TOPIC
from keeper.wiring import Keeper

WAD = 10**18
# A block waits at most this long for the keeper's sends of the block before to reach the
# pool (or end); then it is mined without the late ones, and the report says so.
SETTLE_SECONDS = 10.0
BLOCK_SECONDS = 12  # the replayed blocks' spacing (their timestamps do not follow the clock)
MAX_BLOCKS_PER_STEP = 32  # blocks of the keeper's reaction to one step, at most
FEED_GAS = 200_000
UPDATE_ANSWER = "0x" + function_signature_to_4byte_selector("updateAnswer(int256)").hex()
TRANSFER = "0x" + function_signature_to_4byte_selector("transfer(address,uint256)").hex()
MINT = "0x" + function_signature_to_4byte_selector("mint(address,uint256)").hex()

# (steps done, steps in all, blocks replayed so far): drives the CLI's progress bar.
Progress = Callable[[int, int, int], None]
StartDevnet = Callable[[DevnetSpec], tuple[Anvil, DevnetInfo, bool]]


@dataclass
class _Clock:
    """The replay's blocks' timestamps: `BLOCK_SECONDS` apart from the devnet's last block,
    whatever the wall clock says (interest accrues the same in every run)."""

    stamp: int

    @classmethod
    async def of(cls, rpc: HttpRpc) -> _Clock:
        """From the devnet's last block; anvil's own clock is moved back there, or it would
        refuse a timestamp below the wall clock's."""
        stamp = int((await rpc.call("eth_getBlockByNumber", ["latest", False]))["timestamp"], 16)
        await rpc.call("evm_setTime", [stamp + 1])
        return cls(stamp)

    async def release(self, rpc: HttpRpc) -> None:
        """Anvil's clock back to the wall clock (never below the replay's last block)."""
        await rpc.call("evm_setTime", [max(int(time.time()), self.stamp + 1)])

    async def mine(self, rpc: HttpRpc, after: int = BLOCK_SECONDS) -> int:
        """One block of what the pool holds (by fee), `after` seconds on; its number."""
        self.stamp += after
        await rpc.call("evm_setNextBlockTimestamp", [self.stamp])
        await rpc.call("evm_mine", [])
        return int(await rpc.call("eth_blockNumber", []), 16)


class _Chain:
    """The devnet, mined by the replay: one block per `mine`, at the base fee the path
    says."""

    def __init__(self, keeper: Keeper, info: DevnetInfo, clock: _Clock,
                 step_seconds: int = 0) -> None:
        self.rpc = keeper.chain
        self.keeper = keeper
        self.info = info
        self.clock = clock
        self.step_seconds = step_seconds  # chain time a step stands for (Maker's auctions)

    async def mine(self) -> int:
        return await self.clock.mine(self.rpc)

    async def post(self, step: CrashStep) -> int:
        """The step's prices, all in one block (mined here; `step_seconds` after the step
        before: the clock jumps that far first), Maker's pip and Spotter with them; with
        Perp, its vAMMs' trades to the new prices follow (its marks move only so); the
        last block's number."""
        if step.index:
            self.clock.stamp += self.step_seconds
        if step.gas_gwei is not None:
            await self.rpc.call("anvil_setNextBlockBaseFeePerGas",
                                [hex(int(step.gas_gwei * 10**9))])
        deployer = self.info.accounts.deployer
        for symbol, usd in step.prices.items():
            data = UPDATE_ANSWER + encode(["int256"], [to_feed_answer(usd)]).hex()
            await self.rpc.call("eth_sendTransaction", [{
                "from": deployer, "to": self.info.feeds[symbol], "data": data,
                "gas": hex(FEED_GAS)}])
            for tx in profiles.maker_price_txs(self.info, symbol, usd):
                await self.rpc.call("eth_sendTransaction", [tx])
        block = await self.mine()
        return await follow_step_replayed(self.rpc, self.info, step,
                                          lambda s: self.clock.mine(self.rpc, s)) or block

    async def keeper_pool(self) -> int:
        """How many of the keeper's transactions wait in the pool."""
        executor = self.keeper.executor
        if executor is None:
            return 0
        content = await self.rpc.call("txpool_content", [])
        waiting = {a.lower(): txs for a, txs in (content.get("pending") or {}).items()}
        return len(waiting.get(executor.address.lower(), {}))

    async def caught_up(self) -> bool:
        """Until every liquidation in flight has its transaction in the pool, or has ended
        (False after `SETTLE_SECONDS`: the block is then mined without the late ones)."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while self.keeper.inflight > await self.keeper_pool():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True


async def _prepare(
    rpc: HttpRpc, clock: _Clock, info: DevnetInfo, capital_usd: Decimal | None
) -> None:
    """In one block: the liquidator allows the Aave Pool and Morpho to pull every devnet
    token (what its first liquidation of each would do: otherwise an approval mined
    mid-step would hold that step's sends behind it), and, with `capital_usd`, holds that
    much of each token (at the devnet's starting prices): the excess goes to the
    deployer, a shortfall is minted."""
    address = info.accounts.liquidator
    prices = {t.symbol: t.usd_price for t in DEFAULT_TOKENS}
    accounts, txs = profiles.replay_setup(info)  # Maker's, when the devnet has it
    for account in accounts:
        await rpc.call("anvil_impersonateAccount", [account])
        await rpc.call("anvil_setBalance", [account, hex(1000 * WAD)])
    for tx in txs:
        await rpc.call("eth_sendTransaction", [tx])
    for symbol, token in sorted(info.tokens.items()):
        for spender in (info.aave_v3.pool, info.morpho_blue.morpho):
            data = APPROVE + encode(["address", "uint256"], [spender, MAX_UINT]).hex()
            await rpc.call("eth_sendTransaction", [{"from": address, "to": token.address,
                                                    "data": data}])
        if capital_usd is None or symbol not in prices:
            continue
        keep = int(capital_usd / prices[symbol] * 10**token.decimals)
        have = int(await rpc.eth_call(
            token.address, BALANCE_OF + encode(["address"], [address]).hex()), 16)
        if have > keep:
            move = TRANSFER + encode(["address", "uint256"],
                                     [info.accounts.deployer, have - keep]).hex()
            await rpc.call("eth_sendTransaction", [{"from": address, "to": token.address,
                                                    "data": move}])
        elif have < keep:  # the devnet's tokens are mintable (Aave's MintableERC20 mock)
            mint = MINT + encode(["address", "uint256"], [address, keep - have]).hex()
            await rpc.call("eth_sendTransaction", [{"from": info.accounts.deployer,
                                                    "to": token.address, "data": mint}])
    await clock.mine(rpc)


async def replay(
    info: DevnetInfo, steps: Sequence[CrashStep], journal: Journal, *,
    progress: Progress | None = None, capital_usd: Decimal | None = None,
    tuning: Tuning | None = None, step_seconds: int = 0,
) -> BacktestReport:
    """Drive a running devnet along `steps`, the keeper engine stepped block by block
    (its bid share, minimum profit and batch size: `tuning`, the demo keeper's by default;
    `step_seconds`: the chain time between two steps' price blocks, beyond their blocks).

    The replay mines every block itself (automine off, 12 s apart): a step's prices in one
    block, then, while the keeper sends, one block holding everything it sent in reaction
    to the last (at most `MAX_BLOCKS_PER_STEP`). The engine steps onto each block once its
    sends of the block before are in the pool or over, so what it does depends on the
    path, not on timing, and the same inputs give the same report.
    """
    setup = await HttpRpc.open(info.rpc_url)
    try:
        await setup.call("anvil_setAutomine", [False])
        clock = await _Clock.of(setup)
        try:
            await _prepare(setup, clock, info, capital_usd)
            return await _replay(info, steps, journal, clock, progress=progress,
                                 capital_usd=capital_usd, tuning=tuning or Tuning(),
                                 step_seconds=step_seconds)
        finally:
            await clock.release(setup)
            await setup.call("anvil_setAutomine", [True])
    finally:
        await setup.aclose()


async def _replay(
    info: DevnetInfo, steps: Sequence[CrashStep], journal: Journal, clock: _Clock, *,
    progress: Progress | None, capital_usd: Decimal | None, tuning: Tuning, step_seconds: int,
) -> BacktestReport:
    keeper = await build_keeper(info, journal, keep_outcomes=None, prepared_levels=0,
                                aave_markets=("aave_v3",), **tuning.keeper_kwargs())
    engine = keeper.engine
    chain = _Chain(keeper, info, clock, step_seconds)
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
                block = await chain.post(step)
                stamp = int((await keeper.chain.call(
                    "eth_getBlockByNumber", [hex(block), False]))["timestamp"], 16)
                report.prices += [PriceSample(block, stamp, s, float(p))
                                  for s, p in step.prices.items()]
                if done == 1:  # the assets the path does not move, once (for USD values)
                    report.prices += [PriceSample(block, stamp, t.symbol, float(t.usd_price))
                                      for t in DEFAULT_TOKENS if t.symbol not in step.prices]
                late += await _react(keeper, chain, recorder, tasks, block)
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
    report.notes.append("devnet price path: no competing liquidators, so no historical "
                        "liquidations; a missed opportunity counts at what it paid alone when "
                        "it first paid the minimum profit")
    return report


async def _react(keeper: Keeper, chain: _Chain, recorder: Recorder,
                 tasks: asyncio.TaskGroup, block: int) -> int:
    """The keeper's reaction to a step's price block, block by block until it sends
    nothing more; how many blocks were mined before a late send reached the pool."""
    late = 0
    value = True
    for _ in range(MAX_BLOCKS_PER_STEP):
        late += not await chain.caught_up()
        ranked = await keeper.step(tasks, to=block)
        await recorder.sample(keeper.head(), ranked, value=value)
        value = False
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
            gas_wei=outcome.gas_paid, by_keeper=True,
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
    report.notes.insert(0, f"price path {loaded.path.name}: {len(steps)} steps driving "
                           + ", ".join(f"{s} (beta {b})" for s, b in loaded.betas.items())
                           + (f"; {capital_usd:,.0f} USD of each asset on hand" if capital_usd
                              else ""))
    return report

"""`keeper backtest --devnet --price-path FILE`: a historical price path replayed on the devnet.

The devnet (real Aave V3, Uniswap V2 and Morpho Blue with a seeded borrower population)
has its feeds driven one path step per block, with the step's historical gas price as
the base fee, while the keeper engine runs in this process exactly as in `keeper demo`
(`keeper.demo.build_keeper`; heads and feed logs over the WebSocket). After each step,
once the engine has caught up, the replay samples the strategies' books: the health-factor
distribution and every position that has become liquidatable. At the end the keeper's
liquidations are read back from the journal and their receipts.

There are no competing liquidators on the devnet, so the report's historical list is empty.

A path file is `time_utc,price[,gas_gwei]` (see `keeper.devnet.price_path`); a
`# drives: WETH=1, WBTC=0.7` comment says which devnet feeds follow it and with what beta
(the default is the demo's). The files shipped in `keeper/backtest/paths/` credit their source.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from web3 import Web3

from keeper.backtest.model import (
    BacktestReport,
    HealthSample,
    Liquidation,
    Opportunity,
    PriceSample,
)
from keeper.chain.follower import block_ref
from keeper.demo import build_keeper
from keeper.devnet.crash import BETAS, CrashStep, apply_step, crash_steps
from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.devnet.info import DevnetInfo
from keeper.devnet.price_path import PricePoint, load_price_path
from keeper.devnet.tokens import DEFAULT_TOKENS
from keeper.errors import DevnetError, InputFileError
from keeper.execution.journal import Journal
from keeper.execution.receipts import TRANSFER_TOPIC
from keeper.types import BlockRef, Outcome
from keeper.wiring import Keeper

PATHS = Path(__file__).parent / "paths"
WAD = 10**18
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95)
# A step waits at most this long for the keeper's sends to be mined and applied.
SETTLE_SECONDS = 10.0
NO_DEBT = 2**255  # a health factor at or above this is "no debt" (uint max in both protocols)

# (steps done, steps in all, blocks replayed so far): drives the CLI's progress bar.
Progress = Callable[[int, int, int], None]


@dataclass(frozen=True)
class PricePath:
    """A loaded path file: its points and the devnet symbols it drives, with their betas."""

    path: Path
    points: list[PricePoint]
    betas: dict[str, Decimal]


def load_path(path: Path) -> PricePath:
    """The path's points, and its `# drives:` header (the demo's betas when it has none)."""
    points = load_price_path(path)
    symbols = {t.symbol for t in DEFAULT_TOKENS}
    betas: dict[str, Decimal] = dict(BETAS)
    for line in path.read_text().splitlines():
        if not line.startswith("# drives:"):
            continue
        betas = {}
        for item in line.removeprefix("# drives:").split(","):
            symbol, _, beta = item.strip().partition("=")
            if symbol not in symbols:
                raise InputFileError(f"{path}: drives {symbol!r}, not a devnet asset "
                                     f"({', '.join(sorted(symbols))})")
            try:
                betas[symbol] = Decimal(beta or "1")
            except InvalidOperation:
                raise InputFileError(f"{path}: bad beta {beta!r} for {symbol}") from None
    return PricePath(path, points, betas)


def resolve_path(name: str | Path) -> Path:
    """A path file by file name, or by the name of a shipped one (with or without `.csv`)."""
    given = Path(name)
    if given.exists():
        return given
    for candidate in (PATHS / given.name, PATHS / f"{given.name}.csv"):
        if candidate.is_file():
            return candidate
    shipped = ", ".join(sorted(p.stem for p in PATHS.glob("*.csv")))
    raise InputFileError(f"{name}: price path file not found (shipped paths: {shipped})")


@dataclass
class _Seen:
    """A position first seen liquidatable, and what the keeper ranked it at (best seen)."""

    first_block: int
    collateral: str
    debt: str
    estimate_wei: int | None = None


@dataclass
class _Recorder:
    """Samples the engine's strategies between steps (between awaits: the books are stable)."""

    keeper: Keeper
    symbols: Mapping[str, str]  # token address (lower-case) -> symbol
    seen: dict[tuple[str, str], _Seen] = field(default_factory=dict)
    health: list[HealthSample] = field(default_factory=list)

    def unhealthy(self, at: BlockRef, block: int) -> None:
        """Positions liquidatable in the books now; new ones are dated `block`."""
        for strategy in self.keeper.engine.strategies:
            for candidate in strategy.candidates(at):
                self.seen.setdefault(
                    (candidate.strategy, candidate.account),
                    _Seen(block, self.symbol(candidate.collateral), self.symbol(candidate.debt)),
                )
        for opp in self.keeper.engine.stats.last_opportunities:
            seen = self.seen.get((opp.strategy, opp.account))
            if seen is not None:
                seen.estimate_wei = max(seen.estimate_wei or 0, opp.net_profit)

    def sample_health(self, at: BlockRef) -> None:
        """The health-factor distribution over every tracked position with debt."""
        factors: list[float] = []
        for source in self.keeper.engine.capabilities.positions:
            factors += [p.health_factor / WAD for p in source.positions(at)
                        if p.health_factor < NO_DEBT]
        factors.sort()
        self.health.append(HealthSample(
            block=at.number, positions=len(factors), below_one=sum(f < 1 for f in factors),
            quantiles={q: _quantile(factors, q) for q in QUANTILES} if factors else {},
        ))

    def symbol(self, token: str) -> str:
        return self.symbols.get(token.lower(), token)


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of a sorted, non-empty sequence."""
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def _head(keeper: Keeper) -> BlockRef:
    """The newest block the strategies' books have applied (the engine records a step's
    head in the same synchronous stretch as it applies the step's logs)."""
    head = keeper.engine.last
    assert head is not None, "synced first"
    return head


async def _settle(keeper: Keeper) -> bool:
    """Until the keeper's sends are mined and the engine has applied the chain's head
    (False after `SETTLE_SECONDS`)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if not keeper.inflight:
            head = int(await keeper.chain.call("eth_blockNumber", []), 16)
            if keeper.engine.stats.processed >= head and not keeper.inflight:
                return True
        await asyncio.sleep(0.02)
    return False


async def replay(
    info: DevnetInfo, steps: Sequence[CrashStep], journal: Journal, *,
    progress: Progress | None = None,
) -> BacktestReport:
    """Drive a running devnet along `steps` with the keeper engine in this process."""
    keeper = await build_keeper(info, journal, ws=True, keep_outcomes=None)
    engine = keeper.engine
    symbols = {t.address.lower(): s for s, t in info.tokens.items()}
    recorder = _Recorder(keeper, symbols)
    w3 = Web3(Web3.HTTPProvider(info.rpc_url))
    report = BacktestReport(mode="price-path", chain_id=info.chain_id,
                            from_block=engine.stats.head, to_block=engine.stats.head,
                            quote_symbol="WETH")
    stop = asyncio.Event()
    started = time.monotonic()
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(keeper.run(stop))
            for done, step in enumerate(steps, 1):
                block = await asyncio.to_thread(apply_step, w3, info, step)
                at = await _price_block(keeper, block)
                report.prices += [PriceSample(block, at.timestamp, s, float(p))
                                  for s, p in step.prices.items()]
                recorder.unhealthy(await _head(keeper), block)
                if not await _settle(keeper):
                    report.notes.append(f"step {step.index}: the keeper had not settled after "
                                        f"{SETTLE_SECONDS:.0f} s; the next step went on")
                head = await _head(keeper)
                recorder.unhealthy(head, block)
                recorder.sample_health(head)
                if progress is not None:
                    progress(done, len(steps), engine.stats.head - report.from_block)
            stop.set()
        report.seconds = time.monotonic() - started
        report.to_block = engine.stats.head
        report.blocks_replayed = report.to_block - report.from_block
        await _fill_outcomes(report, keeper, journal, recorder)
    finally:
        await keeper.aclose()
    report.health = recorder.health
    report.notes.append("devnet price path: no competing liquidators, so no historical "
                        "liquidations; missed opportunities count at the keeper's own estimate")
    return report


async def _price_block(keeper: Keeper, block: int) -> BlockRef:
    """The step's last price block, once the engine has ranked it."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while keeper.engine.stats.processed < block:
        if time.monotonic() > deadline:
            raise DevnetError(f"the engine did not process block {block} in {SETTLE_SECONDS} s")
        await asyncio.sleep(0.01)
    raw = await keeper.chain.call("eth_getBlockByNumber", [hex(block), False])
    return block_ref(raw)


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
    report: BacktestReport, keeper: Keeper, journal: Journal, recorder: _Recorder
) -> None:
    """The keeper's liquidations (journal + receipts), gas spent, and each opportunity's fate."""
    executor = keeper.executor
    assert executor is not None
    me = executor.address.lower().removeprefix("0x")
    by_account: dict[tuple[str, str], list[Outcome]] = {}
    for outcome in keeper.outcomes:
        report.gas_spent_wei += outcome.gas_paid
        intent = journal.get(outcome.key)
        if intent is None:
            continue
        by_account.setdefault((intent.strategy, intent.account.lower()), []).append(outcome)
        # Ranked and sent within one step, between two of the recorder's samples: it was
        # liquidatable at the block it was ranked at.
        recorder.seen.setdefault((intent.strategy, intent.account), _Seen(
            intent.block, recorder.symbol(intent.collateral), recorder.symbol(intent.debt)))
        if outcome.status != "confirmed":
            continue
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
    ordered = sorted(recorder.seen.items(), key=lambda kv: kv[1].first_block)
    for (strategy, account), seen in ordered:
        outcomes = by_account.get((strategy, account.lower()), [])
        report.opportunities.append(_fate(strategy, account, seen, outcomes))


def _fate(strategy: str, account: str, seen: _Seen, outcomes: list[Outcome]) -> Opportunity:
    """Taken by the keeper (with its latency), or missed and why."""
    confirmed = [o for o in outcomes if o.status == "confirmed"]
    missed = Opportunity(
        first_block=seen.first_block, protocol=strategy, account=account,
        collateral=seen.collateral, debt=seen.debt, profit_quote=(seen.estimate_wei or 0) / WAD,
        taken_by=None,
    )
    if confirmed:
        return replace(missed, profit_quote=sum(o.realized_profit for o in confirmed) / WAD,
                       taken_by="keeper",
                       latency_blocks=min(o.block for o in confirmed) - seen.first_block)
    if outcomes:
        last = outcomes[-1]
        why = f"{last.status}: {last.reason}" if last.reason else last.status
    elif seen.estimate_wei is not None:
        why = "ranked profitable but never sent"
    else:
        why = "unprofitable after slippage and gas (below the minimum profit)"
    return replace(missed, missed_because=why)


def run_price_path(
    loaded: PricePath, *, spec: DevnetSpec | None = None, max_steps: int | None = None,
    progress: Progress | None = None,
) -> BacktestReport:
    """Start the (cached) devnet, replay the path on it, stop it; the report says what happened."""
    start_prices = {t.symbol: t.usd_price for t in DEFAULT_TOKENS}
    steps = crash_steps(loaded.points, start_prices, loaded.betas)[:max_steps]
    started = time.monotonic()
    anvil, info, cached = start_devnet(spec or DevnetSpec())
    try:
        boot = time.monotonic() - started
        with (tempfile.TemporaryDirectory(prefix="keeper-backtest-") as folder,
              Journal(Path(folder) / "journal.sqlite") as journal):
            report = asyncio.run(replay(info, steps, journal, progress=progress))
    finally:
        anvil.stop()
    report.notes.insert(0, f"price path {loaded.path.name}: {len(steps)} steps driving "
                           + ", ".join(f"{s} (beta {b})" for s, b in loaded.betas.items())
                           + f"; devnet up in {boot:.1f} s ({'cached' if cached else 'deployed'})")
    return report

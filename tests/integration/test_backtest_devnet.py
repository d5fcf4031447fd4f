"""The price-path backtest on the devnet: the June 2022 stETH depeg driven through the WETH
feed, the keeper in-process, and the report checked against the chain and the journal;
the same path twice gives the same report; with little capital, missed opportunities are
valued and the capture rate falls below 100 %; the three shipped paths' steepest stretches
give no negative latency; the HTML report's tables fit."""

from __future__ import annotations

import asyncio
import html
import json
import re
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from keeper.backtest.devnet_replay import replay
from keeper.backtest.model import WALL_CLOCK, BacktestReport
from keeper.backtest.path_file import load_path, resolve_path
from keeper.backtest.report import write_html
from keeper.backtest.units import CELL
from keeper.devnet.crash import CrashStep, crash_steps
from keeper.devnet.tokens import DEFAULT_TOKENS, to_feed_answer
from keeper.execution.journal import Journal
from keeper.journal_report import read_journal
from keeper.log import reset_logging
from keeper.types import Event
from strategies.aave_v3 import events as aave_events
from strategies.morpho_blue import events as morpho_events
from tests.conftest import Devnet
from tests.integration.helpers import feeds

# The depeg's deepest days come at rounds 10-20; 20 steps keep the test near 5 s.
STEPS = 20
# Each shipped path's steepest stretch (steps), short enough for the suite.
STRETCHES = {"eth_usd_2021-05-19_10min": (66, 80), "eth_usd_2020-03-12_10min": (50, 64),
             "steth_eth_2022-06_depeg": (0, 20)}


def _steps(name: str, first: int = 0, last: int = STEPS) -> list[CrashStep]:
    path = load_path(resolve_path(name))
    return crash_steps(path.points, {t.symbol: t.usd_price for t in DEFAULT_TOKENS},
                       path.betas)[first:last]


def _replay(devnet: Devnet, steps: list[CrashStep], journal_path: Path, *,
            capital_usd: Decimal | None = None, keep: bool = False) -> BacktestReport:
    """One replay on the devnet, rolled back afterwards unless `keep` (so the next one
    starts where this one did)."""
    snapshot = devnet.rpc("evm_snapshot")
    try:
        with Journal(journal_path) as journal:
            return asyncio.run(replay(devnet.info, steps, journal, capital_usd=capital_usd))
    finally:
        reset_logging()
        if not keep:
            devnet.rpc("evm_revert", snapshot)


@pytest.fixture
def run(devnet: Devnet, tmp_path: Path) -> tuple[BacktestReport, Path]:
    journal_path = tmp_path / "journal.sqlite"
    report = _replay(devnet, _steps("steth_eth_2022-06_depeg"), journal_path, keep=True)
    return report, journal_path


def _logs(devnet: Devnet, report: BacktestReport, address: str, topic: str) -> list[Event]:
    raw = devnet.rpc("eth_getLogs", {"address": address, "topics": [topic],
                                     "fromBlock": hex(report.from_block + 1),
                                     "toBlock": hex(report.to_block)})
    assert isinstance(raw, list)
    return [Event.from_rpc(entry) for entry in raw]


def _on_chain(devnet: Devnet, report: BacktestReport) -> dict[str, tuple[str, int, int]]:
    """Every liquidation by the devnet liquidator in the replayed range: tx -> (borrower,
    debt repaid, collateral seized), from the Pool's and Morpho's own logs."""
    me = devnet.info.accounts.liquidator.lower()
    out: dict[str, tuple[str, int, int]] = {}
    info = devnet.info
    for address, topic in ((info.aave_v3.pool, aave_events.TOPIC_LIQUIDATION_CALL),
                           (info.morpho_blue.morpho, morpho_events.TOPIC_LIQUIDATE)):
        for event in _logs(devnet, report, address, topic):
            match aave_events.decode(event) or morpho_events.decode(event):
                case aave_events.LiquidationCall() as call if call.liquidator.lower() == me:
                    out[event.transaction_hash] = (
                        call.user, call.debt_to_cover, call.liquidated_collateral_amount)
                case morpho_events.Liquidate() as call if call.caller.lower() == me:
                    out[event.transaction_hash] = (
                        call.borrower, call.repaid_assets, call.seized_assets)
    return out


def test_report_matches_the_chain_and_the_journal(
    devnet: Devnet, run: tuple[BacktestReport, Path], tmp_path: Path
) -> None:
    report, journal_path = run
    assert report.mode == "price-path" and report.blocks_replayed > STEPS
    assert report.keeper, "the depeg must make the keeper liquidate"
    # Liquidations: exactly the liquidator's LiquidationCall / Liquidate logs on chain.
    chain = _on_chain(devnet, report)
    assert {x.tx for x in report.keeper} == set(chain)
    for x in report.keeper:
        assert (x.account.lower(), x.repaid, x.seized) == (
            chain[x.tx][0].lower(), chain[x.tx][1], chain[x.tx][2])
        receipt: Any = devnet.w3.eth.get_transaction_receipt(x.tx)  # type: ignore[arg-type]
        assert receipt["blockNumber"] == x.block
        assert x.gas_wei == receipt["gasUsed"] * receipt["effectiveGasPrice"]
    # Profit: the journal's realized profit of each confirmed transaction.
    with sqlite3.connect(journal_path) as db:
        realized = dict(db.execute(
            "SELECT tx_hash, realized_profit FROM transactions WHERE status = 'confirmed'"))
    assert {x.tx: round(x.profit_quote * 10**18) for x in report.keeper} == pytest.approx(
        {tx: int(p) for tx, p in realized.items()}, rel=1e-12)
    # ... exactly, in the JSON (the tables show it in whole tokens).
    exact = {x["tx"]: x["profit_wei"] for x in report.to_json()["keeper"]}
    assert exact == {tx: int(p) for tx, p in realized.items()}
    assert report.gas_spent_wei >= sum(x.gas_wei for x in report.keeper)
    # `keeper journal` reads the same journal: one confirmed row per liquidation.
    rows = read_journal(journal_path)
    confirmed = {r.tx_hash: r.realized_profit for r in rows if r.status == "confirmed"}
    assert confirmed == {tx: int(p) for tx, p in realized.items()}
    # Prices: the feeds' answers at the sampled blocks.
    contracts = feeds(devnet)
    for sample in report.prices:
        answer = contracts[sample.asset].functions.latestAnswer().call(
            block_identifier=sample.block)
        assert answer == to_feed_answer(Decimal(str(sample.price)))
    # Opportunities: every account the keeper liquidated was first seen before it.
    taken = {(o.protocol, o.account.lower()): o for o in report.opportunities
             if o.taken_by == "keeper"}
    for x in report.keeper:
        first = taken[(x.protocol, x.account.lower())]
        assert first.latency_blocks is not None and first.first_block <= x.block
    assert all(o.missed_because for o in report.opportunities if o.taken_by is None)
    assert len(report.health) == STEPS and max(h.below_one for h in report.health) > 0
    # One reconciliation: each keeper liquidation closes one taken opportunity, and each
    # is one confirmed attempt.
    assert sum(o.liquidations for o in report.opportunities) == len(report.keeper)
    assert report.attempts.get("confirmed") == len(report.keeper)
    # The HTML report renders from it, its tables fit, its amounts are token units.
    page = tmp_path / "report.html"
    write_html(report, page)
    text = page.read_text()
    assert len(re.findall(r"data:image/png;base64,", text)) == 5
    assert_tables_fit(text, [str(x.repaid) for x in report.keeper])


def test_the_same_path_gives_the_same_report(devnet: Devnet, tmp_path: Path) -> None:
    steps = _steps("steth_eth_2022-06_depeg", 0, 14)
    first, second = (_replay(devnet, steps, tmp_path / f"journal{n}.sqlite") for n in (1, 2))
    assert first.keeper, "the depeg must make the keeper liquidate"

    def stable(report: BacktestReport) -> dict[str, Any]:
        return {k: v for k, v in report.to_json().items() if k not in WALL_CLOCK}

    assert json.dumps(stable(first), sort_keys=True) == json.dumps(stable(second),
                                                                   sort_keys=True)


def test_missed_opportunities_are_valued_when_capital_runs_out(
    devnet: Devnet, tmp_path: Path
) -> None:
    report = _replay(devnet, _steps("steth_eth_2022-06_depeg", 0, 14),
                     tmp_path / "journal.sqlite", capital_usd=Decimal(150_000))
    missed = [o for o in report.opportunities if o.taken_by is None]
    short = [o for o in missed if o.missed_because == "no-capital"]
    assert report.keeper and short, [o.missed_because for o in missed]
    assert all(o.profit_quote > 0 and o.valued_at is not None for o in short)
    assert report.missed_net_profit > 0
    assert report.capture_rate is not None and 0 < report.capture_rate < 1
    assert report.available_net_profit == pytest.approx(
        report.keeper_net_profit + report.missed_net_profit)


@pytest.mark.parametrize("name", sorted(STRETCHES))
def test_no_negative_latency_on_the_shipped_paths(
    devnet: Devnet, tmp_path: Path, name: str
) -> None:
    report = _replay(devnet, _steps(name, *STRETCHES[name]), tmp_path / "journal.sqlite")
    assert report.keeper, f"{name}: its steepest stretch must make the keeper liquidate"
    latencies = [o.latency_blocks for o in report.opportunities if o.taken_by == "keeper"]
    assert latencies and all(x is not None and x >= 0 for x in latencies), latencies
    # Measured from the first block the position was liquidatable: never after its
    # liquidation's block.
    for o in report.opportunities:
        assert o.last_block is None or o.first_block <= o.last_block


def assert_tables_fit(page: str, raw: list[str]) -> None:
    """No table cell over 24 characters; no raw token amount in a table."""
    cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", page, re.S)]
    assert cells and max(len(c) for c in cells) <= CELL, max(cells, key=len)
    assert not set(raw) & set(cells)

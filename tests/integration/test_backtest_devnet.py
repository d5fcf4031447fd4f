"""The price-path backtest on the devnet: the June 2022 stETH depeg driven through the WETH
feed, the keeper in-process, and the report checked against the chain and the journal."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from keeper.backtest.devnet_replay import load_path, replay, resolve_path
from keeper.backtest.model import BacktestReport
from keeper.backtest.report import write_html
from keeper.devnet.crash import crash_steps
from keeper.devnet.tokens import DEFAULT_TOKENS, to_feed_answer
from keeper.execution.journal import Journal
from keeper.log import reset_logging
from keeper.types import Event
from strategies.aave_v3 import events as aave_events
from strategies.morpho_blue import events as morpho_events
from tests.conftest import Devnet
from tests.integration.helpers import feeds

# The depeg's deepest days come at rounds 10-20; 20 steps keep the test near 5 s.
STEPS = 20


@pytest.fixture
def run(devnet: Devnet, tmp_path: Path) -> tuple[BacktestReport, Path]:
    path = load_path(resolve_path("steth_eth_2022-06_depeg"))
    steps = crash_steps(path.points, {t.symbol: t.usd_price for t in DEFAULT_TOKENS}, path.betas)
    journal_path = tmp_path / "journal.sqlite"
    try:
        with Journal(journal_path) as journal:
            report = asyncio.run(replay(devnet.info, steps[:STEPS], journal))
    finally:
        reset_logging()
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
    assert report.gas_spent_wei >= sum(x.gas_wei for x in report.keeper)
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
    # The HTML report renders from it.
    page = tmp_path / "report.html"
    write_html(report, page)
    assert len(re.findall(r"data:image/png;base64,", page.read_text())) == 5

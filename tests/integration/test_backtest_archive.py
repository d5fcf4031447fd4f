"""ACCEPTANCE: `keeper backtest --rpc` / `--tape` against a devnet "history" as the archive.

tests/integration/backtest_history.py mines a few dozen blocks on the session devnet: ambient
transfers, WETH price drops posted mid-block, and a per-block polling competitor that
liquidates some of the seeded Aave borrowers. Then the range is replayed on an anvil fork
of the devnet:

- passive (the keeper observes, sends nothing): every replayed block has the historical tx
  hashes in order, the same receipts root, and the same balances (native, nonce, ERC-20) of
  every account it touched (anvil computes no state root on a fork);
- active (the devnet liquidator's key, inserted after the oracle update): each keeper
  liquidation in the report is its receipt on the fork; the historical liquidations are the
  competitor's; a competitor transaction that failed on the fork is "beaten" by the keeper;
- `record` then `--tape` (offline, anvil from the taped state) gives the same report.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from eth_typing import HexStr

from keeper.anvil import rpc_call
from keeper.backtest.archive import (
    BacktestError,
    Insert,
    ReplayResult,
    open_archive,
    replay_on_fork,
    run_archive,
    start_fork,
)
from keeper.backtest.history import decode_liquidations, signed_raw
from keeper.backtest.record import record_tape
from keeper.cli import main
from keeper.config import KeeperConfig
from keeper.errors import ChainMismatch, InputFileError, RpcUnavailable
from tests.conftest import Devnet
from tests.integration.backtest_history import (
    WETH_DROP,
    History,
    devnet_keeper_config,
    make_history,
)
from tests.integration.helpers import SPECS

BLOCKS = 24


@pytest.fixture(scope="module")
def history(devnet_session: Devnet) -> Iterator[History]:
    """The scenario, mined once for the module and rolled back after it (as `devnet` does)."""
    snapshot = devnet_session.rpc("evm_snapshot")
    try:
        yield make_history(devnet_session, blocks=BLOCKS)
    finally:
        devnet_session.rpc("anvil_dropAllTransactions")
        assert devnet_session.rpc("evm_revert", snapshot) is True
        latest = devnet_session.rpc("eth_getBlockByNumber", "latest", False)
        assert isinstance(latest, dict)
        devnet_session.rpc("anvil_setNextBlockBaseFeePerGas", latest["baseFeePerGas"])


def keeper_config(devnet: Devnet, directory: Path, *, active: bool) -> KeeperConfig:
    """The devnet keeper's config; `active` gives it the liquidator's key (from the env)."""
    return devnet_keeper_config(devnet.info, directory, active=active)


@dataclass
class Replayed:
    """A replay's result, and what the fork held before it stopped."""

    result: ReplayResult
    receipts: dict[str, dict[str, Any]]  # of every keeper transaction mined
    order: dict[int, list[str]]  # each replayed block's transaction hashes, in order


def replay(devnet: Devnet, history: History, config: KeeperConfig | None, insert: Insert
           ) -> Replayed:
    """An archive replay on a fork this test owns."""

    async def run() -> Replayed:
        archive = await open_archive(devnet.info.rpc_url)
        fork = await start_fork(chain_id=archive.chain_id, fork_url=devnet.info.rpc_url,
                                block=history.first - 1)
        try:
            result = await replay_on_fork(
                archive, fork, from_block=history.first, to_block=history.last, insert=insert,
                config=config, progress=None, mode="archive")
            receipts = {
                tx: rpc_call(fork.rpc_url, "eth_getTransactionReceipt", [tx])
                for check in result.checks for tx in check.keeper_txs
            }
            order = {
                check.number: [h.lower() for h in rpc_call(
                    fork.rpc_url, "eth_getBlockByNumber", [hex(check.number), False]
                )["transactions"]]
                for check in result.checks
            }
            return Replayed(result, receipts, order)
        finally:
            fork.stop()
            await archive.aclose()

    return asyncio.run(run())


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """A report's JSON without what depends on the run (time, mode)."""
    return {k: v for k, v in report.items() if k not in ("seconds", "blocks_per_second", "mode")}


@pytest.fixture(scope="module")
def active(devnet_session: Devnet, history: History, tmp_path_factory: pytest.TempPathFactory
           ) -> Replayed:
    config = keeper_config(devnet_session, tmp_path_factory.mktemp("active"), active=True)
    return replay(devnet_session, history, config, "after-oracle")


def test_the_history_has_busy_blocks_and_competing_liquidations(
    devnet_session: Devnet, history: History
) -> None:
    assert history.last - history.first + 1 == BLOCKS
    assert history.busiest >= 5
    assert len(history.price_blocks) >= 5
    succeeded = [h for h in history.liquidations
                 if devnet_session.w3.eth.get_transaction_receipt(h)["status"] == 1]
    assert len(succeeded) >= 5


def test_raw_transactions_rebuilt_from_fields_match_the_node(
    devnet_session: Devnet, history: History
) -> None:
    """For nodes without eth_getRawTransactionByHash, the replay rebuilds the signed bytes."""
    url = devnet_session.info.rpc_url
    for number in (history.first, history.price_blocks[0]):
        block = rpc_call(url, "eth_getBlockByNumber", [hex(number), True])
        for tx in block["transactions"]:
            assert signed_raw(tx) == rpc_call(url, "eth_getRawTransactionByHash", [tx["hash"]])


def test_passive_replay_reproduces_every_block(
    devnet_session: Devnet, history: History, tmp_path: Path
) -> None:
    config = keeper_config(devnet_session, tmp_path, active=False)
    result = replay(devnet_session, history, config, "after-oracle").result
    report = result.report
    assert [c.number for c in result.checks] == list(range(history.first, history.last + 1))
    w3 = devnet_session.w3
    for check in result.checks:
        assert check.reproduced, check
        assert not check.keeper_txs
        assert check.same_txs and check.same_receipts_root and not check.fingerprint_diff
        assert len(w3.eth.get_block(check.number)["transactions"]) >= 1
    assert report.blocks_replayed == BLOCKS and not report.keeper
    # Every successful competitor liquidation is listed, with its liquidator and block.
    succeeded = {str(h): w3.eth.get_transaction_receipt(h) for h in history.liquidations}
    expected = {h for h, r in succeeded.items() if r["status"] == 1}
    assert {liq.tx for liq in report.historical} == expected
    for liq in report.historical:
        assert liq.liquidator == history.competitor.lower()
        assert liq.block == succeeded[liq.tx]["blockNumber"]
        assert not liq.by_keeper
    # The feed's prices as posted (5% steps down from the devnet's), and the book's health.
    assert [(p.block, p.asset) for p in report.prices] == [
        (n, "WETH") for n in history.price_blocks]
    start = float(SPECS["WETH"].usd_price)
    for step, sample in enumerate(report.prices, 1):
        assert sample.price == pytest.approx(start * float(WETH_DROP) ** step, rel=1e-6)
    assert len(report.health) == BLOCKS
    assert report.health[-1].below_one > report.health[0].below_one
    # The passive keeper saw opportunities, and took none.
    assert report.opportunities
    assert all(o.taken_by != "keeper" for o in report.opportunities)
    assert report.capture_rate in (0.0, None)


def test_active_keeper_capture_figures_match_the_fork(
    devnet_session: Devnet, history: History, active: Replayed
) -> None:
    result, receipts = active.result, active.receipts
    report = result.report
    keeper = history.keeper.lower()
    assert report.keeper, "the keeper liquidated nothing"
    # Each keeper liquidation in the report is its own receipt on the fork.
    for liq in report.keeper:
        receipt = receipts[liq.tx]
        assert int(receipt["status"], 16) == 1 and receipt["from"].lower() == keeper
        assert int(receipt["blockNumber"], 16) == liq.block
        events = decode_liquidations(receipt["logs"])
        assert (liq.account, liq.repaid, liq.seized) in {
            (e.account, e.repaid, e.seized) for e in events}
        assert liq.liquidator == keeper and liq.by_keeper
    gas = sum(int(r["gasUsed"], 16) * int(r["effectiveGasPrice"], 16) for r in receipts.values())
    assert report.gas_spent_wei == gas
    # Historical liquidations: all the competitor's. Those that failed on the fork were
    # beaten (the keeper took the same position), or failed on the state the keeper's
    # liquidations left (e.g. "ERC20: transfer amount exceeds balance": the keeper drained
    # the collateral reserve's liquidity); neither counts as taken by the competitor.
    assert {liq.liquidator for liq in report.historical} == {history.competitor.lower()}
    failed = {tx for check in result.checks for tx in check.failed}
    taken = {(liq.protocol, liq.account) for liq in report.keeper}
    by_account = {(o.protocol, o.account): o for o in report.opportunities}
    beaten = [liq for liq in report.historical
              if liq.tx in failed and (liq.protocol, liq.account) in taken]
    assert beaten, "the keeper beat no competitor"
    for liq in beaten:
        opp = by_account[(liq.protocol, liq.account)]
        assert opp.taken_by == "keeper" and opp.historical_liquidator == liq.liquidator
    for liq in report.historical:
        opp = by_account[(liq.protocol, liq.account)]
        if liq.tx in failed and opp.taken_by != "keeper":
            assert opp.taken_by is None and "failed on the fork" in str(opp.missed_because)
    # Capture: opportunities the keeper took are exactly its liquidations' positions.
    assert {(o.protocol, o.account) for o in report.opportunities if o.taken_by == "keeper"} \
        == taken
    for opp in report.opportunities:
        if opp.taken_by == "keeper":
            assert opp.latency_blocks is not None and opp.latency_blocks >= 0
        else:
            assert opp.missed_because
    assert report.capture_rate is not None and 0 < report.capture_rate <= 1
    # Insert position: a liquidation decided on a price update's block sits right after the
    # update (after-oracle), preceded only by the keeper's own transactions.
    feed = devnet_session.info.feeds["WETH"].lower()
    mine = {h.lower() for check in result.checks for h in check.keeper_txs}
    same_block = [liq for liq in report.keeper
                  if by_account[(liq.protocol, liq.account)].first_block == liq.block]
    assert same_block, "no liquidation in the block of its price update"
    for liq in same_block:
        assert liq.block in history.price_blocks
        order = active.order[liq.block]
        update = next(i for i, h in enumerate(order) if str(
            devnet_session.w3.eth.get_transaction(HexStr(h))["to"]).lower() == feed)
        position = order.index(liq.tx.lower())
        assert position > update
        assert all(h in mine for h in order[update + 1:position])
    # Blocks the keeper left alone still reproduce history.
    for check in result.checks:
        if not check.keeper_txs and not check.failed and check.number < min(
                liq.block for liq in report.keeper):
            assert check.reproduced, check


def test_next_block_insert_puts_the_keeper_at_the_top_of_the_next_block(
    devnet_session: Devnet, history: History, tmp_path: Path
) -> None:
    config = keeper_config(devnet_session, tmp_path, active=True)
    replayed = replay(devnet_session, history, config, "next-block")
    report = replayed.result.report
    assert report.keeper
    for check in replayed.result.checks:
        mine = {h.lower() for h in check.keeper_txs}
        order = replayed.order[check.number]
        # The keeper's transactions (decided on the previous block) open the block.
        assert order[: len(mine)] == [h for h in order if h in mine]
    for opp in report.opportunities:
        if opp.taken_by == "keeper":
            assert opp.latency_blocks is not None and opp.latency_blocks >= 1


def test_record_then_tape_gives_the_same_report(
    devnet_session: Devnet, history: History, tmp_path: Path,
    active: Replayed,
) -> None:
    config = keeper_config(devnet_session, tmp_path, active=True)
    tape = tmp_path / "history.tape"
    recorded = asyncio.run(record_tape(
        rpc_url=devnet_session.info.rpc_url, from_block=history.first, to_block=history.last,
        out=tape, insert="after-oracle", config=config))
    offline = asyncio.run(run_archive(
        rpc_url=None, tape=tape, from_block=history.first, to_block=history.last,
        insert="after-oracle", config=config, progress=None))
    assert offline.mode == "tape"
    online = comparable(active.result.report.to_json())
    assert comparable(recorded.report.to_json()) == online
    assert comparable(offline.to_json()) == online


def test_bad_input_is_one_clear_error(devnet_session: Devnet, history: History,
                                      tmp_path: Path) -> None:
    url = devnet_session.info.rpc_url

    def archive(**kwargs: Any) -> None:
        args: dict[str, Any] = {"rpc_url": url, "tape": None, "from_block": history.first,
                                "to_block": history.last, "insert": "after-oracle",
                                "config": None, "progress": None}
        asyncio.run(run_archive(**{**args, **kwargs}))

    with pytest.raises(BacktestError, match="bad block range"):
        archive(from_block=history.last, to_block=history.first)
    with pytest.raises(BacktestError, match="past the source's head"):
        archive(to_block=history.last + 10_000)
    with pytest.raises(RpcUnavailable):
        archive(rpc_url="http://127.0.0.1:9")
    other = keeper_config(devnet_session, tmp_path, active=False)
    other = other.model_copy(update={"chain": other.chain.model_copy(update={"chain_id": 1})})
    with pytest.raises(ChainMismatch):
        archive(config=other)
    bad = tmp_path / "bad.tape"
    for content in (b"not gzip", gzip.compress(b'{"tape": 1}\n'), gzip.compress(b"[1]\n")):
        bad.write_bytes(content)
        with pytest.raises(InputFileError):
            archive(rpc_url=None, tape=bad)
    # The CLI: one line, exit 2, no traceback.
    result = CliRunner().invoke(main, ["record", "--rpc", url, "--from", "5", "--to", "3",
                                       "--out", str(tmp_path / "t.tape")])
    assert result.exit_code == 2, result.output
    assert "bad block range" in result.output and "Traceback" not in result.output

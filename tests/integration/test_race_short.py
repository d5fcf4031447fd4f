"""The race's short version (benchmarks/race): the keeper daemon against the peer-design
competitor, a few crash steps under automine, judged from the chain.

It asserts that the verdict is consistent with the chain, not who wins (that is a benchmark
figure, in docs/benchmarks.md): every liquidation log in the window is attributed to exactly
one liquidator, the sender of its transaction; the bonus shares add up to all that was
taken; the verdict counts every transaction each bot sent in the window, and every revert
of either bot has a classified cause (a lost race or a stale view names an earlier
liquidation of the same account, else the revert reason is decoded); the timing table has
the send time of every transaction the keeper landed, from its journal. Run once with one
keeper (SQLite journal) and once with `[ha]` (`--ha`: two replicas on the session's
PostgreSQL server, one leading).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from eth_typing import HexStr
from web3 import Web3
from web3.types import FilterParams

from benchmarks.race import abi
from benchmarks.race.harness import RaceOptions, RaceResult, run_race
from tests.conftest import Devnet

# Steps 66..68 of the 2021-05-19 path: WETH from $1,636 to $1,528, enough to make dozens of
# the seeded accounts liquidatable at once.
SHORT = RaceOptions(first_step=66, steps=3, step_seconds=1.0, quiet_seconds=1.5,
                    idle_timeout=30.0, ready_timeout=60.0)


def _liquidation_logs(devnet: Devnet, result: RaceResult) -> list[tuple[str, str]]:
    """(tx hash, topic 0) of every liquidation log in the window, read afresh."""
    info, v = devnet.info, result.verdict
    out: list[tuple[str, str]] = []
    for address, event in ((info.aave_v3.pool, abi.LIQUIDATION_CALL_EVENT),
                           (info.morpho_blue.morpho, abi.MORPHO_LIQUIDATE_EVENT)):
        query: FilterParams = {
            "fromBlock": v.first_block, "toBlock": v.last_block,
            "address": Web3.to_checksum_address(address), "topics": [HexStr(event)]}
        logs = devnet.w3.eth.get_logs(query)
        out += [(Web3.to_hex(x["transactionHash"]), event) for x in logs]
    return out


@pytest.mark.parametrize("ha", [False, True], ids=["one-keeper", "ha-replicas"])
def test_short_race_verdict_is_consistent_with_the_chain(
    ha: bool, devnet: Devnet, tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    options = dataclasses.replace(SHORT, ha=True, ha_dsn=request.getfixturevalue("postgres")) \
        if ha else SHORT
    result = run_race(devnet.info, options, tmp_path)
    v = result.verdict
    print("\n".join(v.lines()))  # shown with -s: the figures are the benchmark's, not asserted
    w3 = devnet.w3
    assert v.liquidations, "the crash steps made nothing liquidatable"

    # Every liquidation log is attributed to exactly one liquidator: its transaction's sender.
    logs = _liquidation_logs(devnet, result)
    assert len(logs) == len(v.liquidations)
    assert sorted(h for h, _ in logs) == sorted(x.tx_hash for x in v.liquidations)
    by_address = {a: n for n, a in v.bots.items()}
    for liquidation in v.liquidations:
        sender = str(w3.eth.get_transaction(HexStr(liquidation.tx_hash))["from"]).lower()
        assert liquidation.sender == sender
        assert liquidation.who == by_address.get(sender, "other")
    assert sum(t.liquidations for t in v.totals.values()) == len(v.liquidations)
    # Each liquidated account has one first liquidation, the earliest of its own.
    firsts = v.firsts()
    assert sum(t.first for t in v.totals.values()) == len(firsts) == v.accounts
    for account, first in firsts.items():
        assert first.position == min(x.position for x in v.liquidations if x.account == account)

    # The bonus shares add up to everything that was taken.
    names = [*v.bots, "other"]
    assert math.isclose(sum(v.capture(n) for n in names), 1.0, rel_tol=1e-9)
    assert math.isclose(sum(v.totals[n].bonus_usd for n in names), v.bonus_total, rel_tol=1e-9)

    # The verdict saw every transaction each bot sent in the window, and its reverts.
    for name, address in v.bots.items():
        account = Web3.to_checksum_address(address)
        sent = (w3.eth.get_transaction_count(account, v.last_block)
                - w3.eth.get_transaction_count(account, v.first_block - 1))
        assert v.totals[name].transactions == sent, name
        reverted = [r for r in v.reverts if r.who == name]
        assert v.totals[name].reverted == len(reverted), name

    # Every revert of either bot has a cause: a named earlier liquidation, or a decoded reason.
    by_hash = {x.tx_hash: x for x in v.liquidations}
    for revert in v.reverts:
        receipt = w3.eth.get_transaction_receipt(HexStr(revert.tx_hash))
        assert receipt["status"] == 0
        assert revert.cause in ("lost", "self", "market", "revert"), revert
        assert revert.reason and not revert.reason.startswith("no trace"), revert
        if revert.cause == "revert":
            assert revert.winner is None
            continue
        if revert.cause == "market":  # a price post between its accounts' last liquidation
            post = w3.eth.get_transaction_receipt(HexStr(str(revert.winner)))
            assert revert.winner_who == "oracle" and post["status"] == 1
            assert (post["blockNumber"], post["transactionIndex"]) < (
                revert.block, revert.tx_index)
            continue
        assert revert.targets, revert
        winner = by_hash[str(revert.winner)]
        assert winner.account in revert.targets
        assert winner.position < (revert.block, revert.tx_index)
        assert (winner.who != revert.who) == (revert.cause == "lost")

    # The timing table timed every transaction the keeper landed, from its journal (with
    # [ha], the PostgreSQL one its replicas share, written by the one that led).
    landed = {x.tx_hash.lower() for x in v.liquidations if x.who == "keeper"} \
        | {r.tx_hash.lower() for r in v.reverts if r.who == "keeper"}
    timed = {s.tx_hash.lower() for s in result.sends["keeper"]}
    assert landed <= timed, landed - timed
    if ha:
        assert any("took the lead: keeper-" in note for note in result.notes), result.notes

"""Signing bundled transactions ahead (keeper/execution/bundles_presign.py): the lanes a
launch would give a level's intents, and the gas limit a bundled transaction is signed
with (never under what its largest liquidation needs alone)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from eth_account import Account

from keeper.chain.http import HttpRpc
from keeper.execution.bundles_presign import bundle_call, planned_lanes
from keeper.execution.fees import FeePolicy
from keeper.execution.journal import Journal
from keeper.execution.lanes import Lane, Lanes
from keeper.execution.nonces import NonceManager
from keeper.execution.sender import Sender
from keeper.execution.volley import FLASH_GAS_MARGIN_PERCENT, GAS_MARGIN_PERCENT
from keeper.types import Call, Opportunity, TxIntent
from tests.factories import candidate

ACCOUNTS = [Account.create() for _ in range(3)]


def _opp(n: int, gas: int) -> Opportunity:
    return Opportunity(
        strategy="aave_v3", key=f"k{n}", account="0x" + f"{n:040x}", collateral="0x" + "c0" * 20,
        debt="0x" + "d0" * 20, debt_to_cover=1, collateral_received=1, gross_value=1,
        slippage=0, gas_limit=gas, gas_cost=0, net_profit=1, quote_token="0x" + "e0" * 20,
        health_factor=1, block=1, candidate=candidate())


def _intent(n: int, *, spender: str | None = None, members: int = 0, gas: int = 0) -> TxIntent:
    lead = _opp(n, 400_000)
    return TxIntent(lead, Call("0x" + "aa" * 20, "0x01"), gas, spender,
                    members=tuple(_opp(100 * n + m, 500_000 + m) for m in range(members)))


def test_a_batch_is_never_signed_under_its_largest_liquidations_gas() -> None:
    # GasBook.batch_saving learned from a batch whose members were taken before it can
    # bring the batch's summed limit to zero or below.
    batch = _intent(1, members=2, gas=-120_000)
    assert bundle_call(batch).gas == 500_001 * FLASH_GAS_MARGIN_PERCENT // 100
    fine = dataclasses.replace(batch, gas_limit=900_000)
    assert bundle_call(fine).gas == 900_000 * FLASH_GAS_MARGIN_PERCENT // 100


def test_a_wallet_paid_liquidation_is_signed_with_a_margin_over_its_figure() -> None:
    # The strategy's 450k is a first estimate: a WBTC liquidation ran out of gas at 437k.
    own = _intent(2, spender="0x" + "5e" * 20, gas=450_000)
    assert bundle_call(own).gas == 450_000 * GAS_MARGIN_PERCENT // 100


def test_planned_lanes_take_one_lane_each_and_lane_zero_last(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        chain = HttpRpc("http://127.0.0.1:1")
        lanes = Lanes([Lane(i, a, Sender(chain, a, journal, FeePolicy(10, 1), NonceManager()))
                       for i, a in enumerate(ACCOUNTS)])
        lanes.lanes[2].holder = "0x" + "77" * 32  # holds a bundle
        flash = [_intent(n) for n in range(3)]
        assert [lane.index if lane else None for lane in planned_lanes(lanes, flash)] == \
            [1, 0, None]
        own = [_intent(5, spender="0x" + "55" * 20), _intent(6, spender="0x" + "55" * 20)]
        assert [lane.index if lane else None for lane in planned_lanes(lanes, own)] == \
            [0, None]

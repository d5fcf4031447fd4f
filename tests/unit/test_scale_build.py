"""The scale devnet's pure parts: trace stripping of anvil dumps, and debt sizing.

`strip_traces` must empty every transaction's `traces` and leave every other byte of the
JSON as it was, whatever the chunk boundaries. `size_debts_at_open` must aim at the plan's
health factor at starting prices and stay under the borrow limit at the opening prices.
"""

from __future__ import annotations

import gzip
import io
import json
import random
from decimal import Decimal

import pytest

from keeper.devnet import scale
from keeper.errors import DevnetError


def _dump(rng: random.Random) -> dict[str, object]:
    trace = {"parent": None, "children": [1], "trace": {"data": "0x" + "ab" * 40,
                                                        "kind": "CALL", "exit": "x"}}
    return {
        "block": {"number": "0x1"},
        "transactions": [
            {"info": {"transaction_hash": f"0x{i:064x}", "traces": [trace] * rng.randint(0, 4),
                      "exit": "Return", "out": "0x"},
             "receipt": {"logs": [{"topics": ["0x" + "11" * 32], "data": "0x"}]}}
            for i in range(40)
        ],
        "note": "traces",
    }


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_strip_traces_empties_traces_only(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scale, "_CHUNK", chunk)
    doc = _dump(random.Random(chunk))
    raw = json.dumps(doc, separators=(",", ":")).encode()
    out = io.BytesIO()
    scale.strip_traces(gzip.compress(raw), out)
    for tx in doc["transactions"]:  # type: ignore[attr-defined]
        tx["info"]["traces"] = []
    assert json.loads(out.getvalue()) == doc


def test_strip_traces_refuses_an_unterminated_trace() -> None:
    with pytest.raises(DevnetError):
        scale.strip_traces(gzip.compress(b'{"info":{"traces":[1,2'), io.BytesIO())


def test_debts_aim_at_the_target_under_the_opening_limit() -> None:
    risk = scale.aave_risk()
    plans = scale.plan_aave_positions(2_000, seed=5)
    factor = scale.OPEN_PRICE_FACTOR
    on_target = 0
    for plan in plans:
        debts = scale.size_debts_at_open(plan, risk)
        lt = risk.emode_lt_bps if plan.emode else None
        ltv = risk.emode_ltv_bps if plan.emode else None
        threshold = sum((v * (lt or risk.aave_lt_bps[s]) for s, v in plan.collateral_usd.items()),
                        Decimal(0)) / 10_000
        limit = sum((v * factor.get(s, Decimal(1)) * (ltv or risk.aave_ltv_bps[s])
                     for s, v in plan.collateral_usd.items()), Decimal(0)) / 10_000
        debt_now = sum(debts.values(), Decimal(0))
        debt_open = sum((v * factor.get(s, Decimal(1)) for s, v in debts.items()), Decimal(0))
        assert debt_open <= limit * Decimal("0.995") * (1 + Decimal("1e-20"))
        health = threshold / debt_now
        assert health >= plan.target_health * (1 - Decimal("1e-20"))
        on_target += abs(health - plan.target_health) < Decimal("1e-9")
    assert on_target >= len(plans) * 0.8  # e-mode and short-ETH ones may be capped

"""Tests for keeper.batching: which ranked liquidations share a transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from keeper.batching import group_sends, split_by_weight
from keeper.types import Opportunity
from tests.factories import candidate

BASE = Opportunity(
    strategy="aave_v3", key="k", account="0xa", collateral="weth", debt="usdc",
    debt_to_cover=100, collateral_received=1, gross_value=1, slippage=0, gas_limit=400_000,
    gas_cost=1, net_profit=10, quote_token="weth", health_factor=9 * 10**17, block=1,
    candidate=candidate(),
)
POOLS = {("weth", "usdc"): "weth-usdc", ("wbtc", "usdc"): "wbtc-usdc",
         ("wbtc", "dai"): "wbtc-dai", ("weth", "dai"): "weth-dai"}


def opp(key: str, collateral: str, debt: str, *, flash: bool = True) -> Opportunity:
    return replace(BASE, key=key, account=key, collateral=collateral, debt=debt,
                   candidate=candidate(fee=(lambda _: 0) if flash else None))


def touches(o: Opportunity) -> frozenset[str]:
    pools = {POOLS.get((o.collateral, o.debt)), POOLS.get((o.debt, "weth")),
             POOLS.get(("weth", o.debt))}
    return frozenset(p for p in pools if p is not None)


def group(ranked: Sequence[Opportunity], *, max_size: int = 5,
          fits: int = 10**9) -> list[list[str]]:
    sends = group_sends(
        ranked, batchable=lambda o: o.candidate.fee is not None, touches=touches,
        fits=lambda batch: sum(o.debt_to_cover for o in batch) <= fits, max_size=max_size)
    return [[o.key for o in send] for send in sends]


def test_same_debt_token_is_batched_in_rank_order() -> None:
    ranked = [opp("a", "weth", "usdc"), opp("b", "wbtc", "usdc"), opp("c", "weth", "usdc")]
    assert group(ranked) == [["a", "b", "c"]]


def test_max_size_and_lender_liquidity_cap_a_batch() -> None:
    ranked = [opp(k, "weth", "usdc") for k in "abcde"]
    assert group(ranked, max_size=2) == [["a", "b"], ["c", "d"], ["e"]]
    assert group(ranked, fits=300) == [["a", "b", "c"], ["d", "e"]]
    assert group(ranked, max_size=1) == [[k] for k in "abcde"]


def test_directly_funded_ones_are_never_batched() -> None:
    ranked = [opp("a", "weth", "usdc", flash=False), opp("b", "weth", "usdc", flash=False)]
    assert group(ranked) == [["a"], ["b"]]


def test_a_liquidation_does_not_jump_a_send_that_moves_its_pools() -> None:
    # "b" (debt DAI) uses wbtc-dai and weth-dai; "c" uses wbtc-usdc and weth-usdc: no pool
    # in common, so c may move ahead of b into a's batch.
    ranked = [opp("a", "weth", "usdc"), opp("b", "wbtc", "dai"), opp("c", "wbtc", "usdc")]
    assert group(ranked) == [["a", "c"], ["b"]]
    # "b2" sells WBTC for USDC through wbtc-usdc, the pair "c" sells into: c stays behind it.
    ranked = [opp("a", "weth", "usdc"), opp("b2", "wbtc", "usdc", flash=False),
              opp("c", "wbtc", "usdc")]
    assert group(ranked) == [["a"], ["b2"], ["c"]]


def test_split_by_weight_keeps_the_sum() -> None:
    assert split_by_weight(100, [1, 1, 1]) == [34, 33, 33]
    assert split_by_weight(-7, [5, 0, -3]) == [-7, 0, 0]
    assert split_by_weight(10, [0, 0]) == [10, 0]
    assert split_by_weight(10, []) == []
    shares = split_by_weight(10**18 + 7, [3, 5, 11])
    assert sum(shares) == 10**18 + 7 and shares[2] > shares[1] > 0

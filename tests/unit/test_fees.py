"""Tests for keeper.execution.fees: EIP-1559 base fee vectors, first offers and bumps.

The base fee reference below is written from the EIP's text with `Fraction`;
the vectors are go-ethereum's `TestCalcBaseFee` (parent gas limit 20M, base
fee 1 gwei) and hand-computed full/empty block cases.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from keeper.execution.fees import FeePolicy, min_replacement, next_base_fee

GWEI = 10**9


def reference_base_fee(parent: int, used: int, limit: int) -> int:
    target = limit // 2
    if used == target:
        return parent
    change = Fraction(parent * abs(used - target), target * 8)
    if used > target:
        return parent + max(math.floor(change), 1)
    return parent - math.floor(change)


@pytest.mark.parametrize(
    ("parent", "used", "limit", "expected"),
    [
        # go-ethereum consensus/misc/eip1559 TestCalcBaseFee
        (GWEI, 10_000_000, 20_000_000, GWEI),  # usage == target
        (GWEI, 9_000_000, 20_000_000, 987_500_000),  # usage below target
        (GWEI, 11_000_000, 20_000_000, 1_012_500_000),  # usage above target
        # full block: +12.5 %; empty block: -12.5 %
        (GWEI, 20_000_000, 20_000_000, 1_125_000_000),
        (GWEI, 0, 20_000_000, 875_000_000),
        # 100 gwei, 20M of a 30M block: 100e9 * 5M // 15M // 8 = 4166666666
        (100 * GWEI, 20_000_000, 30_000_000, 104_166_666_666),
        # the increase is at least 1 wei, the decrease may be 0
        (7, 15_000_001, 30_000_000, 8),
        (7, 14_999_999, 30_000_000, 7),
        (0, 30_000_000, 30_000_000, 1),
        # an odd gas limit: target is floor(limit / 2)
        (GWEI, 15_000_000, 30_000_001, GWEI),
    ],
)
def test_next_base_fee_vectors(parent: int, used: int, limit: int, expected: int) -> None:
    assert next_base_fee(parent, used, limit) == expected
    assert reference_base_fee(parent, used, limit) == expected


def test_next_base_fee_matches_reference_on_random_inputs() -> None:
    rng = random.Random(1559)
    for _ in range(5000):
        limit = rng.randrange(2, 60_000_000)
        used = rng.randrange(0, limit + 1)
        parent = rng.choice(
            [rng.randrange(0, 1000), rng.randrange(0, 10**12), rng.getrandbits(200)]
        )
        assert next_base_fee(parent, used, limit) == reference_base_fee(parent, used, limit)


def test_next_base_fee_rejects_zero_target() -> None:
    with pytest.raises(ValueError, match="gas target"):
        next_base_fee(GWEI, 0, 1)


def test_first_offer_is_twice_base_plus_tip_under_the_cap() -> None:
    policy = FeePolicy(max_fee_per_gas=100 * GWEI, priority_fee=2 * GWEI)
    assert policy.fees(10 * GWEI) == (22 * GWEI, 2 * GWEI)
    assert policy.fees(60 * GWEI) == (100 * GWEI, 2 * GWEI)  # capped
    assert policy.fees(100 * GWEI) == (100 * GWEI, 2 * GWEI)  # base fee == cap is still allowed
    assert policy.fees(0) == (2 * GWEI, 2 * GWEI)


def test_first_offer_refused_when_base_fee_alone_exceeds_cap() -> None:
    policy = FeePolicy(max_fee_per_gas=100 * GWEI, priority_fee=2 * GWEI)
    assert policy.fees(100 * GWEI + 1) is None


def test_tip_is_capped_too() -> None:
    policy = FeePolicy(max_fee_per_gas=5, priority_fee=9)
    assert policy.fees(1) == (5, 5)


def test_min_replacement_is_ceil_nine_eighths_plus_one() -> None:
    assert min_replacement(0) == 1
    assert min_replacement(8) == 10
    assert min_replacement(9) == 12  # ceil(10.125) + 1
    assert min_replacement(80 * GWEI) == 90 * GWEI + 1


def test_bump_example() -> None:
    policy = FeePolicy(max_fee_per_gas=1000 * GWEI, priority_fee=2 * GWEI)
    bumped = policy.bump((22 * GWEI, 2 * GWEI), 10 * GWEI, profit_cap_wei=10**18, gas_limit=500_000)
    assert bumped is not None
    max_fee, tip = bumped
    assert tip == min_replacement(2 * GWEI) == 2_250_000_001
    assert max_fee == max(min_replacement(22 * GWEI), 20 * GWEI + tip) == 24_750_000_001


def test_bump_capped_by_policy_cap() -> None:
    policy = FeePolicy(max_fee_per_gas=25 * GWEI, priority_fee=2 * GWEI)
    bumped = policy.bump((22 * GWEI, 2 * GWEI), 20 * GWEI, profit_cap_wei=10**18, gas_limit=500_000)
    assert bumped == (25 * GWEI, min_replacement(2 * GWEI))


def test_bump_capped_by_profit() -> None:
    policy = FeePolicy(max_fee_per_gas=1000 * GWEI, priority_fee=2 * GWEI)
    gas_limit = 500_000
    profit = 30 * GWEI * gas_limit + 123
    bumped = policy.bump(
        (22 * GWEI, 2 * GWEI), 20 * GWEI, profit_cap_wei=profit, gas_limit=gas_limit
    )
    assert bumped == (30 * GWEI, min_replacement(2 * GWEI))
    assert bumped[0] * gas_limit <= profit


def test_bump_none_when_impossible() -> None:
    policy = FeePolicy(max_fee_per_gas=24 * GWEI, priority_fee=2 * GWEI)
    # the policy cap is below the required 12.5 % bump
    assert policy.bump((22 * GWEI, 2 * GWEI), 1, 10**18, 21_000) is None
    # the profit cannot pay for the bumped fee
    wide = FeePolicy(max_fee_per_gas=1000 * GWEI, priority_fee=2 * GWEI)
    assert wide.bump((22 * GWEI, 2 * GWEI), 1, 24 * GWEI * 21_000, 21_000) is None
    assert wide.bump((22 * GWEI, 2 * GWEI), 1, 0, 21_000) is None
    assert wide.bump((22 * GWEI, 2 * GWEI), 1, -(10**18), 21_000) is None
    # the base fee alone is above what may be paid
    assert wide.bump((22 * GWEI, 2 * GWEI), 1001 * GWEI, 10**30, 21_000) is None
    # a tip equal to the max fee: both must rise 12.5 %, and the profit allows one wei less
    assert wide.bump((100, 100), 0, 113 * 21_000, 21_000) is None


def test_bump_rejects_bad_gas_limit() -> None:
    with pytest.raises(ValueError, match="gas_limit"):
        FeePolicy(10, 1).bump((1, 1), 1, 100, 0)


def test_bump_random_properties() -> None:
    rng = random.Random(20240601)
    bumped_count = 0
    for _ in range(20_000):
        scale = rng.choice([10, 10**6, GWEI, 1000 * GWEI])
        cap = rng.randrange(1, 300 * scale)
        tip = rng.randrange(0, 5 * scale)
        policy = FeePolicy(max_fee_per_gas=cap, priority_fee=tip)
        old_tip = rng.randrange(0, 5 * scale)
        old_max = old_tip + rng.randrange(0, 200 * scale)
        base = rng.randrange(0, 150 * scale)
        gas_limit = rng.randrange(21_000, 3_000_000)
        profit = rng.randrange(-(10**6), 400 * scale * gas_limit)
        result = policy.bump((old_max, old_tip), base, profit, gas_limit)

        need_max = math.ceil(Fraction(old_max * 9, 8)) + 1
        need_tip = math.ceil(Fraction(old_tip * 9, 8)) + 1
        ceiling = min(cap, max(profit, 0) // gas_limit)
        # A valid replacement (m, t) needs t <= m, m <= ceiling, m >= base and both bumps.
        possible = ceiling >= max(need_max, need_tip, base)
        assert (result is not None) == possible, (policy, old_max, old_tip, base, profit)
        if result is None:
            continue
        bumped_count += 1
        new_max, new_tip = result
        assert new_max * 8 >= old_max * 9 + 8 and new_tip * 8 >= old_tip * 9 + 8
        assert new_max >= need_max and new_tip >= need_tip
        assert new_tip <= new_max <= cap
        assert new_max * gas_limit <= profit
        assert new_max >= base
    assert bumped_count > 1000

"""keeper.dex.uniswap_v2: UniswapV2Library vectors and reverts, Sync logs, quotes, batched load.

The swap vectors are the expected outputs of Uniswap's own v2-core test suite
(`UniswapV2Pair.spec.ts`, "swap:token0" cases) and v2-periphery's router test.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import pytest

from keeper.dex.uniswap_v2 import (
    SYNC_TOPIC,
    UINT256_MAX,
    Pair,
    PairBook,
    UniswapV2Error,
    get_amount_in,
    get_amount_out,
)
from keeper.types import Event, LogFilter, SwapLeg

E18 = 10**18
A, B, C = "0x" + "aa" * 20, "0x" + "bb" * 20, "0x" + "cc" * 20
PAIR_AB, PAIR_BC = "0x" + "01" * 20, "0x" + "02" * 20


def reference_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    return amount_in * 997 * reserve_out // (reserve_in * 1000 + amount_in * 997)


@pytest.mark.parametrize(
    ("amount_in", "reserve_in", "reserve_out", "expected"),
    [
        (1, 5, 10, 1662497915624478906),
        (1, 10, 5, 453305446940074565),
        (2, 5, 10, 2851015155847869602),
        (2, 10, 5, 831248957812239453),
        (1, 10, 10, 906610893880149131),
        (1, 100, 100, 987158034397061298),
        (1, 1000, 1000, 996006981039903216),
    ],
)
def test_get_amount_out_matches_v2_core_vectors(
    amount_in: int, reserve_in: int, reserve_out: int, expected: int
) -> None:
    assert get_amount_out(amount_in * E18, reserve_in * E18, reserve_out * E18) == expected


def test_router_vectors_and_small_numbers() -> None:
    # v2-periphery router spec: getAmountOut(2, 100, 100) == 1, getAmountIn(1, 100, 100) == 2.
    assert get_amount_out(2, 100, 100) == 1
    assert get_amount_in(1, 100, 100) == 2
    assert get_amount_out(1, 100, 100) == 0  # rounds down to nothing
    assert get_amount_out(1, 1, 1) == 0
    assert get_amount_in(99, 100, 100) == 100 * 99 * 1000 // (1 * 997) + 1


def test_reverts_carry_the_library_messages() -> None:
    with pytest.raises(UniswapV2Error, match="INSUFFICIENT_INPUT_AMOUNT"):
        get_amount_out(0, 100, 100)
    with pytest.raises(UniswapV2Error, match="INSUFFICIENT_LIQUIDITY"):
        get_amount_out(2, 0, 100)
    with pytest.raises(UniswapV2Error, match="INSUFFICIENT_LIQUIDITY"):
        get_amount_out(2, 100, 0)
    with pytest.raises(UniswapV2Error, match="INSUFFICIENT_OUTPUT_AMOUNT"):
        get_amount_in(0, 100, 100)
    with pytest.raises(UniswapV2Error, match="INSUFFICIENT_LIQUIDITY"):
        get_amount_in(1, 100, 0)
    with pytest.raises(UniswapV2Error, match="ds-math-sub-underflow"):
        get_amount_in(101, 100, 100)
    with pytest.raises(UniswapV2Error, match="division by zero"):
        get_amount_in(100, 100, 100)
    with pytest.raises(UniswapV2Error, match="ds-math-mul-overflow"):
        get_amount_out(2**250, 100, 100)  # amountIn * 997 overflows
    with pytest.raises(UniswapV2Error, match="ds-math-mul-overflow"):
        get_amount_out(2**200, 100, 2**60)  # amountInWithFee * reserveOut overflows
    with pytest.raises(UniswapV2Error, match="ds-math-add-overflow"):
        get_amount_out(UINT256_MAX // 997, UINT256_MAX // 1000, 1)
    with pytest.raises(UniswapV2Error, match="ds-math-mul-overflow"):
        get_amount_in(2**100, 2**160, 2**101)
    with pytest.raises(UniswapV2Error, match="uint256"):
        get_amount_out(-1, 100, 100)
    with pytest.raises(ValueError, match="fee_bps"):
        get_amount_out(1, 100, 100, fee_bps=10_000)


def test_random_amounts_agree_with_the_reference_and_round_trip() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        reserve_in = rng.randrange(1, 2**112)
        reserve_out = rng.randrange(2, 2**112)
        amount_in = rng.randrange(1, 2**112)
        out = get_amount_out(amount_in, reserve_in, reserve_out)
        assert out == reference_out(amount_in, reserve_in, reserve_out)
        assert out < reserve_out
        want = rng.randrange(1, reserve_out)
        needed = get_amount_in(want, reserve_in, reserve_out)
        # getAmountIn (floor + 1) is enough, and is at most one unit above the least that is.
        assert get_amount_out(needed, reserve_in, reserve_out) >= want
        if needed > 2:
            assert get_amount_out(needed - 2, reserve_in, reserve_out) < want


def test_other_fees() -> None:
    assert get_amount_out(1000, 10_000, 10_000, fee_bps=0) == 1000 * 10_000 // 11_000
    # 25 bps: 9975 / 10000 = 399 / 400
    assert get_amount_out(1000, 10_000, 10_000, fee_bps=25) == (
        1000 * 399 * 10_000 // (10_000 * 400 + 1000 * 399)
    )
    assert get_amount_out(E18, 5 * E18, 10 * E18, fee_bps=30) == 1662497915624478906


def book() -> PairBook:
    # token0 < token1 as the factory sorts them; given upper-case to check normalisation.
    return PairBook([
        Pair(PAIR_AB.upper().replace("0X", "0x"), A, B, 1_000 * E18, 2_000_000 * 10**6),
        Pair(PAIR_BC, B, C, 5_000 * 10**6, 0),
    ])


def sync(pair: str, r0: int, r1: int, *, block: int, index: int, removed: bool = False) -> Event:
    return Event(
        address=pair, topics=(SYNC_TOPIC,), data="0x" + f"{r0:064x}{r1:064x}",
        block_number=block, block_hash="0x" + "00" * 32, transaction_hash="0x" + "11" * 32,
        transaction_index=0, log_index=index, removed=removed,
    )


def test_quote_and_mid_price_in_both_directions() -> None:
    b = book()
    leg = b.quote(A, B, 3 * E18)
    assert leg == SwapLeg(PAIR_AB, A, B, 3 * E18, reference_out(3 * E18, 1_000 * E18, 2 * 10**12))
    back = b.quote(B.upper().replace("0X", "0x"), A, 6_000 * 10**6)
    assert back is not None
    assert back.amount_out == reference_out(6_000 * 10**6, 2 * 10**12, 1_000 * E18)
    assert b.mid_price(A, B) == Fraction(2 * 10**12, 1_000 * E18)
    assert b.mid_price(B, A) == Fraction(1_000 * E18, 2 * 10**12)
    assert b.mid_price(A, A) == 1
    assert b.mid_price(A, C) is None
    assert b.quote(A, C, E18) is None  # no direct pair
    assert b.quote(A, B, 0) is None
    assert b.quote(B, C, 10) is None  # no liquidity
    assert b.mid_price(B, C) is None


def test_sync_logs_set_reserves_last_one_wins() -> None:
    b = book()
    assert b.subscriptions() == LogFilter(addresses=(PAIR_AB, PAIR_BC), topics0=(SYNC_TOPIC,))
    other_topic = Event(
        address=PAIR_AB, topics=("0x" + "ee" * 32,), data="0x" + "00" * 64, block_number=9,
        block_hash="0x", transaction_hash="0x", transaction_index=0, log_index=0,
    )
    applied = b.apply([
        sync(PAIR_AB, 7, 8, block=10, index=5),
        sync(PAIR_AB, 5, 6, block=10, index=2),  # earlier in the block: overwritten
        sync(PAIR_BC, 100, 200, block=9, index=1),
        sync(PAIR_BC, 1, 1, block=11, index=0, removed=True),  # reorged away: ignored
        sync("0x" + "99" * 20, 1, 1, block=12, index=0),  # unknown pair: ignored
        other_topic,
    ])
    assert applied == 3
    assert (b.pairs[PAIR_AB].reserve0, b.pairs[PAIR_AB].reserve1) == (7, 8)
    assert (b.pairs[PAIR_BC].reserve0, b.pairs[PAIR_BC].reserve1) == (100, 200)
    assert b.block == 10
    leg = b.quote(C, B, 50)
    assert leg is not None and leg.amount_out == reference_out(50, 200, 100)


class FakeChain:
    """A ChainReader answering eth_calls of pairs and a factory from dictionaries."""

    chain_id = 1

    def __init__(self, answers: dict[tuple[str, str], str]) -> None:
        self.answers = answers
        self.batches: list[int] = []

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        assert method == "eth_call"
        return self.answers[(params[0]["to"], params[0]["data"])]

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        self.batches.append(len(calls))
        return [await self.call(m, p) for m, p in calls]

    async def eth_call(self, to: str, data: str, block: int | str = "latest") -> str:
        return str(await self.call("eth_call", [{"to": to, "data": data}, block]))

    async def get_logs(self, log_filter: LogFilter, from_block: int, to_block: int) -> list[Event]:
        raise NotImplementedError


def word(value: int | str) -> str:
    return f"{int(value, 16) if isinstance(value, str) else value:064x}"


async def test_load_reads_every_pair_in_one_batch() -> None:
    factory = "0x" + "fa" * 20
    answers = {
        (PAIR_AB, "0x0dfe1681"): "0x" + word(A),
        (PAIR_AB, "0xd21220a7"): "0x" + word(B),
        (PAIR_AB, "0x0902f1ac"): "0x" + word(11) + word(22) + word(123),
        (PAIR_BC, "0x0dfe1681"): "0x" + word(B),
        (PAIR_BC, "0xd21220a7"): "0x" + word(C),
        (PAIR_BC, "0x0902f1ac"): "0x" + word(33) + word(44) + word(123),
        (factory, "0x574f2ba3"): "0x" + word(2),
        (factory, "0x1e3dd18b" + word(0)): "0x" + word(PAIR_AB),
        (factory, "0x1e3dd18b" + word(1)): "0x" + word(PAIR_BC),
    }
    chain = FakeChain(answers)
    b = await PairBook.load(chain, [PAIR_AB, PAIR_BC.upper().replace("0X", "0x")], 77)
    assert chain.batches == [6]
    assert b.block == 77
    assert b.pairs == {
        PAIR_AB: Pair(PAIR_AB, A, B, 11, 22),
        PAIR_BC: Pair(PAIR_BC, B, C, 33, 44),
    }
    from_factory = await PairBook.load(chain, factory, 77)
    assert from_factory.pairs == b.pairs
    assert chain.batches == [6, 2, 6]

"""keeper.ranking: repay sizing against exact Uniswap V2 quotes, gas, thresholds, one per account.

Candidates are synthetic: collateral X worth $2 (18 decimals), debt USDC (6 decimals),
quote WETH at $2000; seize(r) pays a 5 % bonus in exact integers. Net values are
recomputed here independently of the module, and the chosen size is checked against
brute force over a grid of repay sizes.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import pytest

from keeper.dex.uniswap_v2 import Pair, PairBook
from keeper.ranking import MAX_EVALUATIONS, head_start, rank, search_max, swaps_of
from keeper.size_search import TOP_SLIVER_SHIFT
from keeper.types import Candidate, Opportunity, SwapLeg

X, USDC, WETH, Y = "0x" + "0a" * 20, "0x" + "0c" * 20, "0x" + "0e" * 20, "0x" + "0f" * 20
PAIR_X_USDC, PAIR_USDC_WETH = "0x" + "11" * 20, "0x" + "22" * 20
E18, E6 = 10**18, 10**6
# The USDC/WETH pool: $10M a side at $2000 per WETH, so one USDC unit is worth 5e8 wei.
R_USDC, R_WETH = 10_000_000 * E6, 5_000 * E18
BASE_FEE, PRIORITY_FEE, GAS_LIMIT = 10 * 10**9, 10**9, 400_000
GAS_COST = GAS_LIMIT * (BASE_FEE + PRIORITY_FEE)


def seize_x(repay: int) -> int:
    """Collateral X for `repay` USDC units: $1 of debt buys 0.5 X, plus a 5 % bonus."""
    return repay * 10**12 // 2 * 105 // 100


def dex(x_depth_usd: int) -> PairBook:
    """X/USDC with `x_depth_usd` a side, and the USDC/WETH valuation pool."""
    return PairBook([
        Pair(PAIR_X_USDC, X, USDC, x_depth_usd // 2 * E18, x_depth_usd * E6),
        Pair(PAIR_USDC_WETH, USDC, WETH, R_USDC, R_WETH),
    ])


def candidate(
    max_repay: int,
    *,
    account: str = "0x" + "ab" * 20,
    strategy: str = "test",
    collateral: str = X,
    debt: str = USDC,
    seize: Callable[[int], int] = seize_x,
    key: str | None = None,
) -> Candidate:
    return Candidate(
        strategy=strategy, account=account, collateral=collateral, debt=debt,
        max_repay=max_repay, health_factor=9 * 10**17,
        key=key or f"{strategy}:{account}:{collateral}:{debt}", seize=seize,
        gas_limit=GAS_LIMIT, spender="0x" + "5e" * 20, private="kept",
    )


def reference_net(book: PairBook, repay: int, seize: Callable[[int], int] = seize_x) -> int:
    """net(repay) in wei, written out: sell the collateral, value USDC at the pool mid price."""
    pair = book.pairs[PAIR_X_USDC]
    seized = seize(repay)
    out = seized * 997 * pair.reserve1 // (pair.reserve0 * 1000 + seized * 997) if seized else 0
    return (out - repay) * R_WETH // R_USDC - GAS_COST


def ranked(cands: list[Candidate], book: PairBook, min_profit: int = 0) -> list[Opportunity]:
    return rank(
        cands, dex=book, quote_token=WETH.upper().replace("0X", "0x"), base_fee=BASE_FEE,
        priority_fee=PRIORITY_FEE, min_profit=min_profit, block=123,
    )


def test_deep_pool_repays_the_maximum() -> None:
    book = dex(2_000_000_000)  # $2B a side
    max_repay = 10_000 * E6
    (opp,) = ranked([candidate(max_repay)], book)
    assert opp.debt_to_cover == max_repay
    assert opp.collateral_received == seize_x(max_repay)
    assert opp.net_profit == reference_net(book, max_repay)
    swap = opp.swap
    assert isinstance(swap, SwapLeg)
    assert (swap.pair, swap.token_in, swap.token_out) == (PAIR_X_USDC, X, USDC)
    assert swap.amount_in == opp.collateral_received
    assert opp.candidate.private == "kept"
    assert opp.candidate.max_repay == max_repay
    assert 0 < opp.evaluations <= MAX_EVALUATIONS
    # Value accounting: gross (at mid prices) - slippage - gas == net, all in wei of WETH.
    assert opp.gas_cost == GAS_COST
    assert opp.gross_value - opp.slippage - opp.gas_cost == opp.net_profit
    assert opp.gross_value == (
        (opp.collateral_received * book.pairs[PAIR_X_USDC].reserve1
         // book.pairs[PAIR_X_USDC].reserve0 - max_repay) * R_WETH // R_USDC
    )
    assert opp.slippage > 0  # the 0.3 % fee at least
    assert (opp.quote_token, opp.block, opp.health_factor) == (WETH, 123, 9 * 10**17)
    assert (opp.collateral, opp.debt, opp.gas_limit) == (X, USDC, GAS_LIMIT)


def test_shallow_pool_picks_a_smaller_size_that_beats_brute_force() -> None:
    book = dex(100_000)  # $100k a side
    max_repay = 1_000_000 * E6  # ten times the pool
    (opp,) = ranked([candidate(max_repay)], book)
    chosen = opp.debt_to_cover
    assert 0 < chosen < max_repay // 2
    assert opp.net_profit == reference_net(book, chosen)
    assert opp.net_profit > reference_net(book, max_repay)
    assert opp.evaluations <= MAX_EVALUATIONS
    grid = [max_repay * k // 2000 for k in range(1, 2001)]
    best_on_grid = max(reference_net(book, r) for r in grid)
    assert opp.net_profit >= best_on_grid
    # Near the optimum, a finer grid around the chosen size finds nothing better either.
    fine = range(max(1, chosen - 1000), chosen + 1001)
    assert opp.net_profit >= max(reference_net(book, r) for r in fine)
    assert opp.gross_value - opp.slippage - opp.gas_cost == opp.net_profit


@pytest.mark.parametrize("depth_usd", [20_000, 300_000, 5_000_000])
def test_chosen_size_beats_a_brute_force_grid_at_several_depths(depth_usd: int) -> None:
    book = dex(depth_usd)
    max_repay = 2_000_000 * E6 + 12_345
    (opp,) = ranked([candidate(max_repay)], book)
    grid = [max_repay * k // 2000 for k in range(1, 2001)]
    assert opp.net_profit >= max(reference_net(book, r) for r in grid)


def test_search_finds_the_exact_peak_of_concave_integer_functions() -> None:
    """Exact below the top sliver (the last 1/65536 of the range, `TOP_SLIVER_SHIFT`): a
    function still rising across it is taken at the top, in two evaluations."""
    rng = random.Random(11)
    for _ in range(300):
        upper = rng.randrange(1, 10**12)
        peak = rng.randrange(1, upper - (upper >> TOP_SLIVER_SHIFT) + 1)
        calls: list[int] = []

        def f(x: int, peak: int = peak, calls: list[int] = calls) -> int:
            calls.append(x)
            return -((x - peak) ** 2)

        best, evaluations = search_max(f, upper)
        assert best == peak
        assert evaluations == len(calls) <= MAX_EVALUATIONS
        assert all(1 <= x <= upper for x in calls)
    # Monotone functions end at the bounds; tiny ranges are searched exhaustively.
    assert search_max(lambda x: x, 10**30)[0] == 10**30
    assert search_max(lambda x: -x, 10**12)[0] == 1
    # On huge ranges the budget ends the search within ~1e-13 of the bracket, not at 1.
    best, evaluations = search_max(lambda x: -x, 10**30)
    assert best < 10**30 // 10**12 and evaluations <= MAX_EVALUATIONS
    assert search_max(lambda x: -abs(x - 2), 3) == (2, 3)
    assert search_max(lambda x: x, 1) == (1, 1)
    # Rising across the top sliver: the top, after two evaluations. A peak inside the sliver
    # is taken at the top too; on a parabola what that leaves is the sliver's square.
    assert search_max(lambda x: x, 10**12) == (10**12, 2)
    upper = 10**12
    sliver = upper >> TOP_SLIVER_SHIFT
    peak = upper - sliver // 3
    best, evaluations = search_max(lambda x: -((x - peak) ** 2), upper)
    assert (best, evaluations) == (upper, 2)
    assert (best - peak) ** 2 < sliver**2


def test_below_min_profit_is_dropped_and_gas_kills_tiny_positions() -> None:
    book = dex(2_000_000_000)
    tiny = candidate(E6, account="0x" + "01" * 20)  # $1 of debt: a 5 cent bonus, $8.80 of gas
    assert ranked([tiny], book) == []
    assert reference_net(book, E6) < 0
    fine = candidate(10_000 * E6, account="0x" + "02" * 20)
    (opp,) = ranked([fine, tiny], book)
    assert ranked([fine], book, min_profit=opp.net_profit) == [opp]
    assert ranked([fine], book, min_profit=opp.net_profit + 1) == []
    # Without gas the tiny one would be worth something: gas is what makes it unprofitable.
    no_gas = rank(
        [tiny], dex=book, quote_token=WETH, base_fee=0, priority_fee=0, min_profit=0, block=1
    )
    assert len(no_gas) == 1 and no_gas[0].net_profit > 0 and no_gas[0].gas_cost == 0


def test_one_opportunity_per_account_best_first() -> None:
    book = dex(2_000_000_000)
    alice, bob = "0x" + "a1" * 20, "0x" + "b0" * 20
    small = candidate(1_000 * E6, account=alice, key="alice-small")
    large = candidate(5_000 * E6, account=alice, key="alice-large")
    other_strategy = candidate(2_000 * E6, account=alice, strategy="other")
    bobs = candidate(3_000 * E6, account=bob)
    result = ranked([small, bobs, large, other_strategy], book)
    assert [(o.strategy, o.account, o.key) for o in result] == [
        ("test", alice, "alice-large"),
        ("test", bob, bobs.key),
        ("other", alice, other_strategy.key),
    ]
    assert [o.net_profit for o in result] == sorted((o.net_profit for o in result), reverse=True)


def test_same_token_needs_no_swap_and_debt_in_quote_is_valued_as_is() -> None:
    book = dex(100_000)

    def seize_same(repay: int) -> int:
        return repay * 105 // 100

    (opp,) = ranked([candidate(10 * E18, collateral=WETH, debt=WETH, seize=seize_same)], book)
    assert opp.swap is None
    assert opp.debt_to_cover == 10 * E18  # linear: more is better
    assert opp.slippage == 0
    assert opp.net_profit == seize_same(10 * E18) - 10 * E18 - GAS_COST
    assert opp.gross_value == seize_same(10 * E18) - 10 * E18


def test_candidates_the_book_cannot_value_are_skipped() -> None:
    book = dex(100_000)
    assert ranked([candidate(E6 * 1000, collateral=Y)], book) == []  # no Y/USDC pair
    assert ranked([candidate(E18, collateral=X, debt=Y)], book) == []  # no Y pools at all
    assert ranked([candidate(0)], book) == []


def test_later_liquidations_are_valued_on_the_pool_the_earlier_ones_left() -> None:
    """Two flash liquidations sell X into the same shallow pool: the second is valued after
    the first's swap (and can drop below min_profit), the order is the sending order, the
    best first."""
    book = dex(20_000_000)
    big = flashed(candidate(300_000 * E6, account="0x" + "01" * 20))
    small = flashed(candidate(100_000 * E6, account="0x" + "02" * 20))
    ranked = rank([small, big], dex=book, quote_token=WETH, base_fee=BASE_FEE,
                  priority_fee=PRIORITY_FEE, min_profit=0, block=1)
    assert [o.account for o in ranked] == [big.account, small.account]
    alone = rank([small], dex=book, quote_token=WETH, base_fee=BASE_FEE,
                 priority_fee=PRIORITY_FEE, min_profit=0, block=1)[0]
    second = ranked[1]
    assert second.net_profit < alone.net_profit
    moved = book.copy()
    first_swap = ranked[0].swap
    assert first_swap is not None and second.swap is not None
    moved.swap(first_swap)
    expected = moved.quote(X, USDC, second.collateral_received)
    assert expected is not None and second.swap.amount_out == expected.amount_out
    # The book passed in is untouched.
    assert book.pairs[PAIR_X_USDC].reserve0 == 10_000_000 * E18


def flashed(c: Candidate) -> Candidate:
    """`c` through the flash executor (a free loan): its exit is swapped on chain."""
    return dataclasses.replace(c, fee=lambda repay: 0)


def test_liquidations_paid_from_the_wallet_are_valued_each_on_the_pools_as_they_are() -> None:
    """Paid from the wallet, a liquidation's collateral stays with the sender: no pool moves
    when it is mined, so the second one selling X is valued as if alone, and neither has
    swaps for the ones after it."""
    book = dex(20_000_000)
    big = candidate(300_000 * E6, account="0x" + "01" * 20)
    small = candidate(100_000 * E6, account="0x" + "02" * 20)
    ranked = rank([small, big], dex=book, quote_token=WETH, base_fee=BASE_FEE,
                  priority_fee=PRIORITY_FEE, min_profit=0, block=1)
    assert [o.account for o in ranked] == [big.account, small.account]
    alone = rank([small], dex=book, quote_token=WETH, base_fee=BASE_FEE,
                 priority_fee=PRIORITY_FEE, min_profit=0, block=1)[0]
    assert ranked[1].net_profit == alone.net_profit
    assert ranked[0].swap is not None and swaps_of(ranked[0]) == ()


def test_pending_swaps_are_applied_before_anything_is_valued() -> None:
    book = dex(20_000_000)
    c = candidate(100_000 * E6)
    fresh = rank([c], dex=book, quote_token=WETH, base_fee=BASE_FEE,
                 priority_fee=PRIORITY_FEE, min_profit=0, block=1)[0]
    sold = book.quote(X, USDC, 200_000 * E18)
    assert sold is not None
    after = rank([c], dex=book, quote_token=WETH, base_fee=BASE_FEE,
                 priority_fee=PRIORITY_FEE, min_profit=0, block=1, pending=[sold])[0]
    assert after.net_profit < fresh.net_profit


def test_a_route_fee_is_paid_on_top_of_the_repay() -> None:
    """`Candidate.fee` (a flash-loan fee) is paid on top of the repay, and the flash surplus
    is worth exactly what selling it for the quote token returns (the executor sells it)."""
    book = dex(50_000_000)
    plain = candidate(10_000 * E6)
    fee_units = 30 * E6
    with_fee = Candidate(**{**plain.__dict__, "fee": lambda repay: fee_units})
    a = rank([plain], dex=book, quote_token=WETH, base_fee=BASE_FEE, priority_fee=PRIORITY_FEE,
             min_profit=0, block=1)[0]
    b = rank([with_fee], dex=book, quote_token=WETH, base_fee=BASE_FEE,
             priority_fee=PRIORITY_FEE, min_profit=0, block=1)[0]
    assert a.debt_to_cover == b.debt_to_cover
    assert a.profit_swap is None  # sent with our own tokens: the debt asset stays, at mid
    sale = book.quote(USDC, WETH, b.debt_out - b.debt_to_cover - fee_units)
    assert sale is not None and b.profit_swap == sale
    assert b.net_profit == sale.amount_out - b.gas_cost
    to_quote = R_WETH / R_USDC
    assert a.net_profit - b.net_profit >= fee_units * to_quote - 2  # the fee, and the sale's
    assert b.net_profit == b.gross_value - b.slippage - b.gas_cost


def test_flash_surplus_sales_move_the_pair_in_sequence() -> None:
    """Two flash liquidations of one debt token: the second is valued after the first's exit
    and surplus sale, so its profit is exactly its own sale's quote on the moved pair."""
    book = dex(50_000_000)
    free = {"fee": lambda repay: 0}
    cands = [Candidate(**{**candidate(size, account=f"0x{n:040x}").__dict__, **free})
             for n, size in ((1, 200_000 * E6), (2, 150_000 * E6))]
    first, second = rank(cands, dex=book, quote_token=WETH, base_fee=BASE_FEE,
                         priority_fee=PRIORITY_FEE, min_profit=0, block=1)
    moved = book.copy()
    for leg in (first.swap, first.profit_swap):
        assert leg is not None
        moved.swap(leg)
    assert second.swap is not None and second.profit_swap is not None
    moved.swap(second.swap)
    sale = moved.quote(USDC, WETH, second.debt_out - second.debt_to_cover)
    assert sale == second.profit_swap
    assert second.net_profit == sale.amount_out - second.gas_cost


def test_head_start_picks_the_most_promising_accounts_whole() -> None:
    book = dex(2_000_000_000)
    sizes = {f"0x{n:040x}": n * 1_000 * E6 for n in range(1, 9)}
    cands = [candidate(size, account=account) for account, size in sizes.items()]
    # A second pair of the biggest account stays with it; an unvaluable one comes last.
    cands.append(candidate(10 * E6, account="0x" + "08".rjust(40, "0"), debt=WETH,
                           seize=lambda r: r))
    cands.append(candidate(10**12 * E6, account="0x" + "99" * 20, collateral=Y))
    first, rest = head_start(cands, dex=book, quote_token=WETH, accounts=3)
    assert {c.account for c in first} == {f"0x{n:040x}" for n in (6, 7, 8)}
    assert len(first) == 4 and len(first) + len(rest) == len(cands)
    # The full ranking's best three are among the first part.
    full = ranked(cands, book)
    assert {o.account for o in full[:3]} <= {c.account for c in first}
    assert head_start([], dex=book, quote_token=WETH, accounts=3) == ([], [])

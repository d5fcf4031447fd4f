"""The repay sizes a v3.6 candidate offers are exactly those the pool accepts, and ranking
proposes only sizes inside them (the dust rule: all debt, all collateral, or $1,000 of
both left; no burn of zero scaled units)."""

from __future__ import annotations

from strategies.aave_v3 import liquidation_v36
from strategies.aave_v3.market import Account, AccountReserve, Market, Reserve
from strategies.aave_v3.math_lib import AaveMathError
from strategies.aave_v3.reserve_config import ReserveConfig, UserConfig
from strategies.aave_v3.rules import RuleSet
from tests.factories import candidate

RAY = 10**27
USD = 10**8
NOW = 1_000_000
COL, DEBT, OTHER = "0x" + "c0" * 20, "0x" + "de" * 20, "0x" + "07" * 20


def _config(*, ltv: int, lt: int, bonus: int, decimals: int, fee: int) -> ReserveConfig:
    data = ltv | lt << 16 | bonus << 32 | decimals << 48 | 1 << 56 | 1 << 58 | fee << 152
    return ReserveConfig.decode(data)


def _reserve(asset: str, rid: int, decimals: int, price: int = USD) -> Reserve:
    config = _config(ltv=8_000, lt=8_500, bonus=10_500, decimals=decimals, fee=1_000)
    return Reserve(
        asset=asset, id=rid, config=config, liquidity_index=RAY, current_liquidity_rate=0,
        variable_borrow_index=RAY, current_variable_borrow_rate=0,
        current_stable_borrow_rate=0, last_update_timestamp=NOW, a_token="0x" + "a1" * 20,
        stable_debt_token="0x" + "5d" * 20, variable_debt_token="0x" + "bd" * 20,
        price=price, price_source="0x" + "fe" * 20, rules=RuleSet.V3_6)


def _market() -> Market:
    reserves = (_reserve(COL, 0, 2), _reserve(DEBT, 1, 2), _reserve(OTHER, 2, 2))
    return Market(block=1, addresses_provider="0x01", pool="0x02", oracle="0x03",
                  data_provider="0x04", reserves=reserves, emode_categories={},
                  rules=RuleSet.V3_6)


def _account(collateral: int, debt: int, other_debt: int = 0) -> Account:
    # bits: reserve 0 collateral (bit 1), reserve 1 borrowed (bit 2), reserve 2 (bit 4)
    bits = 1 << 1 | 1 << 2 | (1 << 4 if other_debt else 0)
    balances = {COL: AccountReserve(collateral, 0, 0, 0, 0),
                DEBT: AccountReserve(0, debt, 0, 0, 0),
                OTHER: AccountReserve(0, other_debt, 0, 0, 0)}
    return Account("0x" + "ab" * 20, UserConfig.decode(bits), 0, balances)


def _accepted(pair: liquidation_v36.Pair, repay: int) -> bool:
    try:
        pair.outcome(repay)
    except AaveMathError:  # a require (LiquidationRevert) or a checked-arithmetic panic
        return False
    return True


def _check_every_size(account: Account) -> tuple[tuple[int, int], ...]:
    (pair,) = liquidation_v36.pairs(_market(), account, NOW, "0x" + "99" * 20)
    ranges = pair.repay_ranges()
    for repay in range(1, pair.max_repay + 1):
        inside = any(lo <= repay <= hi for lo, hi in ranges)
        assert inside == _accepted(pair, repay), (repay, ranges)
    return ranges


def test_a_small_position_offers_all_or_enough_left() -> None:
    """$1,500 debt, $1,700 collateral (2-decimal tokens, every cent checked): HF 0.963,
    close factor 100 % (under $2k); only sizes that take everything, or leave $1,000 of both."""
    ranges = _check_every_size(_account(170_000, 150_000))
    assert len(ranges) == 2
    (lo, interior), (terminal, top) = ranges
    assert lo == 1 and interior < 50_001  # repaying $500 at most leaves $1,000 of debt
    assert top == 150_000  # all the debt (or the collateral, whichever runs out first)
    assert terminal > interior + 1  # sizes between the two revert with MustNotLeaveDust


def test_a_position_under_1000_dollars_can_only_be_closed() -> None:
    ranges = _check_every_size(_account(90_000, 80_000))
    assert len(ranges) == 1 and ranges[0][1] == 80_000


def test_a_large_position_caps_at_half_of_the_whole_debt() -> None:
    """$3,000 of this debt and $1,076.53 of another, $4,700 of collateral: HF 0.98, both
    reserves over $2,000, so at most 50 % of the WHOLE debt; the dust rule cuts further."""
    account = _account(470_000, 300_000, 107_653)  # HF ~0.98: 4700*0.85/4076.53
    (pair,) = [p for p in liquidation_v36.pairs(_market(), account, NOW, "0x" + "99" * 20)
               if p.debt.asset == DEBT]
    assert 95 * 10**16 < pair.data.health_factor < 10**18
    # 50 % of the whole debt ($4,076.53) converted to DEBT: 203,826 (floor of 203826.5)
    assert pair.max_repay == 203_826
    # Leaving $1,000 of this debt caps the repay at $2,000 (the collateral left, 4,700 -
    # 2,000 * 1.05, is plenty): every size up to 200,000 passes, none above it does.
    assert pair.repay_ranges() == ((1, 200_000),)
    assert _accepted(pair, 200_000) and not _accepted(pair, 200_001)
    assert not _accepted(pair, pair.max_repay)


def test_the_keeper_never_liquidates_itself() -> None:
    account = _account(170_000, 150_000)
    assert list(liquidation_v36.pairs(_market(), account, NOW, account.user)) == []


def test_ranking_proposes_only_accepted_sizes() -> None:
    """A candidate whose profit grows with the size, limited to [1, 100] and [400, 500]: the
    best accepted size is 500; with max_repay cut to 450 (capital), 450; to 300, 100."""
    from dataclasses import replace  # noqa: PLC0415

    from keeper.ranking import accepted_sizes, search_max  # noqa: PLC0415

    c = replace(candidate(), max_repay=500, repay_ranges=((1, 100), (400, 500)))
    assert accepted_sizes(c) == [(1, 100), (400, 500)]
    assert accepted_sizes(replace(c, max_repay=450)) == [(1, 100), (400, 450)]
    assert accepted_sizes(replace(c, max_repay=300)) == [(1, 100)]
    assert accepted_sizes(replace(c, max_repay=0)) == []
    assert accepted_sizes(replace(c, repay_ranges=())) == [(1, 500)]
    # The search over each range finds its best size.
    best, _ = search_max(lambda x: x, 100)
    assert best == 100

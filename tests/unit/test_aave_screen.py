"""The float health screen (strategies/aave_v3/screen.py) never misses a liquidatable account.

The main test checks every one of 100,000 synthetic positions with the exact integer mirror
(`market.account_data`) after each scenario (single-feed moves of -30 %..+30 %, multi-asset
moves, time jumps of a day to a year), with the screen carried incrementally from one
scenario to the next as it is in the keeper: flagged ⊇ exact, and flagged is close to exact.
Few random positions sit within 1e-6 of HF 1, so it also checks the bounds themselves on
every row: the screen's lower bound of percentMul(C, avgLT) is below the exact value and its
upper bound of the debt above it, which is what makes flagged ⊇ exact hold for any book.
Further tests: positions built exactly at HF == 1 wad (and one wei of scaled debt either
side), accounts re-loaded from logs and compaction, and the strategy's `candidates()`
against the full exact scan it replaced, over blocks of feed moves and account changes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from eth_abi.abi import encode

from benchmarks.synthetic_book import SyntheticBook, generate, with_price, with_prices
from keeper.strategy import StrategyContext
from keeper.types import BlockRef, Candidate, Event
from strategies.aave_v3 import events as ev
from strategies.aave_v3 import math
from strategies.aave_v3.book import PositionBook
from strategies.aave_v3.config import AaveV3Config
from strategies.aave_v3.market import Account, AccountReserve, Market, Reserve, account_data
from strategies.aave_v3.reserve_config import UserConfig
from strategies.aave_v3.screen import HealthScreen
from strategies.aave_v3.strategy import AaveV3Strategy

N = 100_000
WAD = math.WAD


def _now(market: Market) -> int:
    return max(r.last_update_timestamp for r in market.reserves) + 60


def exact_state(
    market: Market, accounts: list[Account], timestamp: int
) -> tuple[set[int], list[int], list[int]]:
    """Rows whose exact HF < 1 (the check `candidates` makes), and per row the two sides
    of the HF: percentMul(totalCollateral, avgLT) and totalDebt (base currency)."""
    out = set()
    pm: list[int] = []
    debt: list[int] = []
    for i, account in enumerate(accounts):
        data = account_data(market, account, timestamp)
        if data.total_debt_base and math.is_liquidatable(data.health_factor):
            out.add(i)
        pm.append(math.percent_mul(data.total_collateral_base, data.avg_liquidation_threshold))
        debt.append(data.total_debt_base)
    return out, pm, debt


def exact_liquidatable(market: Market, accounts: list[Account], timestamp: int) -> set[int]:
    return exact_state(market, accounts, timestamp)[0]


def assert_bounds(screen: HealthScreen, pm: list[int], debt: list[int]) -> float:
    """Every row: lo + abs_d < pm and hi + abs_d >= debt (so pm < debt => lo < hi), compared
    exactly (Python compares floats with ints exactly). Returns the median slack of lo."""
    n = len(screen)
    lo = screen.in_input_order(screen.lo[:n]).tolist()
    hi = screen.in_input_order(screen.hi[:n]).tolist()
    slack = screen.abs_d
    for i in range(n):
        assert lo[i] + slack < pm[i], (i, lo[i], pm[i])
        if hi[i] == -np.inf:  # no debt entry: the exact debt must be 0
            assert debt[i] == 0, i
        else:
            assert hi[i] + slack >= debt[i], (i, hi[i], debt[i])
    rel = [(p - w) / p for p, w in zip(pm, lo, strict=True) if p]
    return float(np.median(rel))


@pytest.fixture(scope="module")
def world() -> tuple[SyntheticBook, list[Account]]:
    synthetic = generate(N, seed=11)
    return synthetic, [synthetic.book.account(i) for i in range(N)]


def test_no_false_negative_on_100k_positions(world: tuple[SyntheticBook, list[Account]]) -> None:
    synthetic, accounts = world
    base = synthetic.market
    t0 = _now(base)
    rng = np.random.default_rng(5)
    n_assets = len(base.reserves)
    eth_group = {k: 0.8 for k, r in enumerate(base.reserves) if r.config.emode_category == 1}
    scenarios: list[tuple[str, Market, int]] = [
        ("base", base, t0),
        ("WETH -30%", with_price(base, 0, 0.7), t0),
        ("USDC +30% (a debt asset)", with_price(base, 3, 1.3), t0 + 12),
        ("random single feed", with_price(
            base, int(rng.integers(n_assets)), float(rng.uniform(0.7, 1.3))), t0 + 24),
        ("every price x U(0.85, 1.15)", with_prices(
            base, {k: float(rng.uniform(0.85, 1.15)) for k in range(n_assets)}), t0 + 36),
        ("ETH-correlated -20%", with_prices(base, eth_group), t0 + 48),
        ("one day of interest", base, t0 + 86_400),
        ("a year of interest, WBTC -10%", with_price(base, 2, 0.9), t0 + 365 * 86_400),
    ]
    entries = synthetic.book.entries()
    always = int(entries.stable.size)
    screen = HealthScreen(base, entries, t0)
    for name, market, t in scenarios:
        screen.update(market, t)
        flagged = set(screen.flagged_positions().tolist())
        exact, pm, debt = exact_state(market, accounts, t)
        # the bound itself, on every row (not only those near HF 1); it is loose by about
        # half a basis point of the threshold (the LT - 1 of the average's floor)
        assert assert_bounds(screen, pm, debt) < 2e-4, name
        missed = exact - flagged
        assert not missed, f"{name}: {len(missed)} liquidatable accounts not flagged"
        assert exact, name
        # false positives: the stable-debt rows (always flagged) and the thin margin band
        assert len(flagged - exact) <= always + N // 1000, (name, len(flagged), len(exact))
    fresh = HealthScreen(market, entries, t)  # the full path agrees at the last state
    assert set(fresh.flagged_positions().tolist()) >= exact


def _with_debt(account: Account, asset: str, scaled: int, user: str) -> Account:
    balances = dict(account.balances)
    balances[asset] = dataclasses.replace(balances[asset], scaled_variable_debt=scaled)
    return Account(user, account.config, account.emode_category, balances)


def _boundary(market: Market, account: Account, asset: str, t: int) -> int:
    """The largest scaled debt in `asset` with HF >= 1 wad (HF is monotone in the debt)."""
    def hf(scaled: int) -> int:
        changed = _with_debt(account, asset, scaled, account.user)
        return account_data(market, changed, t).health_factor

    lo, hi = 1, 1
    while hf(hi) >= WAD:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if hf(mid) >= WAD else (lo, mid)
    return lo


def test_positions_exactly_at_the_threshold() -> None:
    synthetic = generate(4000, seed=5)
    market, book = synthetic.market, synthetic.book
    t = _now(market)
    # accounts whose one debt is an 18-decimal asset: 1 wei of scaled debt moves the debt
    # in base currency by 0 or 1, so some debt makes it exactly equal to percentMul(C, LT)
    picked: list[tuple[Account, str]] = []
    for row in range(len(book)):
        account = book.account(row)
        debts = [r for r in market.reserves if account.balances[r.asset].scaled_variable_debt]
        if (len(debts) == 1 and debts[0].decimals == 18 and not book.stable.get(row)
                and account_data(market, account, t).total_collateral_base):
            picked.append((account, debts[0].asset))
        if len(picked) == 60:
            break
    assert any(a.emode_category for a, _ in picked)
    built: list[Account] = []
    at_one: list[int] = []
    over: list[int] = []
    for i, (account, asset) in enumerate(picked):
        s = _boundary(market, account, asset, t)
        for j, scaled in enumerate((s - 1, s, s + 1)):
            built.append(_with_debt(account, asset, scaled, f"0x{i:030x}{j:010x}"))
        at_one.append(3 * i + 1)
        over.append(3 * i + 2)
    hfs = [account_data(market, a, t).health_factor for a in built]
    assert all(hfs[i] == WAD for i in at_one)  # HF exactly 1 wad: not liquidatable
    assert all(hfs[i] == WAD - 1 or hfs[i] < WAD for i in over)
    screen = HealthScreen.from_accounts(market, built, t)
    flagged = set(screen.flagged_positions().tolist())
    assert set(over) <= flagged
    assert set(at_one) <= flagged  # inside the margin as well
    # interest and a tiny move (no column moves past `drift`) make most HF == 1 ones
    # liquidatable, with no row touched: the margin covers them
    for later, moved in ((t + 12, market), (t + 13, with_price(market, 0, 1 - 1e-9))):
        assert screen.update(moved, later) == 0
        exact = exact_liquidatable(moved, built, later)
        assert len(set(at_one) & exact) > len(at_one) // 2
        assert exact <= set(screen.flagged_positions().tolist())


def _tight_account(market: Market, user: str, btc: int, m: int, t: int) -> Account:
    """WETH and WBTC collateral (thresholds 8300 and 7800) in the one proportion that puts
    S / C just below the integer 7800 + m + 1: the floor of the average threshold then loses
    almost nothing, so the screen's LT - 1 bound is tight (~1e-12) and only the margin is
    left. DAI debt is 1e-7 below the largest amount with HF >= 1 wad: HF ~ 1 + 1e-7."""
    weth, wbtc, dai = market.reserves[0], market.reserves[2], market.reserves[5]
    assert (weth.config.liquidation_threshold, wbtc.config.liquidation_threshold) == (8300, 7800)
    bits = (1 << (2 * weth.id + 1)) | (1 << (2 * wbtc.id + 1)) | (1 << (2 * dai.id))
    zero = AccountReserve(0, 0, 0, 0, 0)

    def value(r: Reserve, scaled: int) -> int:
        return math.user_balance_in_base_currency(
            scaled, r.normalized_income(t), r.price, math.asset_unit(r.decimals))

    b2 = value(wbtc, btc)

    def avg_lt(s1: int) -> int:
        b1 = value(weth, s1)
        return (8300 * b1 + 7800 * b2) // (b1 + b2)

    lo, hi = 1, 1  # the largest WETH amount with avgLT == 7800 + m
    while avg_lt(hi) <= 7800 + m:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if avg_lt(mid) <= 7800 + m else (lo, mid)
    balances = dict.fromkeys((r.asset for r in market.reserves), zero)
    balances[weth.asset] = AccountReserve(lo, 0, 0, 0, 0)
    balances[wbtc.asset] = AccountReserve(btc, 0, 0, 0, 0)
    account = Account(user, UserConfig.decode(bits), 0, balances)
    edge = _boundary(market, account, dai.asset, t)
    return _with_debt(account, dai.asset, edge - edge // 10**7, user)


def test_tight_positions_need_the_margin() -> None:
    market = generate(10, seed=5).market
    t = _now(market)
    built = [_tight_account(market, f"0x{i:040x}", (20 + 7 * i) * 10**8, 100 + 10 * i, t)
             for i in range(20)]
    assert not exact_liquidatable(market, built, t)
    screen = HealthScreen.from_accounts(market, built, t)
    # WETH -9e-7 moves no column past `drift` (1e-6) but makes them all liquidatable: only
    # the margin keeps them flagged (with no margin this test fails)
    moved = with_price(market, 0, 1 - 9e-7)
    for later in (t, t + 12):
        assert screen.update(moved, later) == 0
        exact = exact_liquidatable(moved, built, later)
        assert len(exact) == len(built)
        assert exact <= set(screen.flagged_positions().tolist())


def test_reloaded_accounts_and_compaction() -> None:
    synthetic = generate(5000, seed=9)
    market, book = synthetic.market, synthetic.book
    t = _now(market)
    accounts = [book.account(i) for i in range(len(book))]
    screen = HealthScreen.from_accounts(market, accounts, t)
    rng = np.random.default_rng(3)
    changed = [int(i) for i in rng.choice(len(accounts), 400, replace=False)]
    for i in changed:
        a = accounts[i]
        balances = {
            asset: AccountReserve(b.scaled_atoken_balance // 2, b.scaled_variable_debt * 3 // 2,
                                  b.stable_principal, b.stable_rate, b.stable_last_updated)
            for asset, b in a.balances.items()
        }
        emode = (a.emode_category + 1) % 3 if i % 5 == 0 else a.emode_category
        accounts[i] = Account(a.user, a.config, emode, balances)
    new = [dataclasses.replace(accounts[i], user=f"0x{0xEE:02x}{i:038x}") for i in changed[:50]]
    new[0] = dataclasses.replace(new[0], emode_category=7)  # a category the market lacks
    screen.load(market, [accounts[i] for i in changed] + new, t)
    everyone = accounts + new
    for step, (moved, later) in enumerate(((with_price(market, 0, 0.8), t + 12),
                                           (market, t + 24))):
        if step:  # the same rows loaded again (their earlier overlay entries die)
            for i in changed[:100]:
                a = accounts[i]
                balances = {
                    asset: dataclasses.replace(b, scaled_variable_debt=2 * b.scaled_variable_debt)
                    for asset, b in a.balances.items()
                }
                accounts[i] = dataclasses.replace(a, balances=balances)
            screen.load(market, [accounts[i] for i in changed[:100]], later)
            everyone = accounts + new
        screen.update(moved, later)
        exact = exact_liquidatable(moved, everyone, later)
        assert exact <= set(screen.flagged_positions().tolist())
        before = screen.flagged()
        screen.compact()
        assert screen.flagged() == before
        # the merged columns are the book: a full recompute equals a screen built afresh
        screen.recompute(moved, later)
        fresh = HealthScreen.from_accounts(moved, everyone, later)
        assert np.allclose(screen.approx_health(), fresh.approx_health(), rtol=1e-12,
                           equal_nan=True)
        assert screen.flagged() == fresh.flagged()


# ------------------------------------------------------------------ the strategy


def _answer(feed: str, price: int, block: int, index: int) -> Event:
    return Event(
        address=feed,
        topics=(ev.TOPIC_ANSWER_UPDATED, "0x" + encode(["int256"], [price]).hex(),
                "0x" + encode(["uint256"], [block]).hex()),
        data="0x" + encode(["uint256"], [block]).hex(), block_number=block,
        block_hash=f"0x{block:064x}", transaction_hash=f"0x{block:060x}{index:04x}",
        transaction_index=index, log_index=index,
    )


def _pool_event(pool: str, topic: str, words: list[str], data: str, *, block: int,
                index: int) -> Event:
    return Event(
        address=pool, topics=(topic, *("0x" + "00" * 12 + w[2:] for w in words)), data=data,
        block_number=block, block_hash=f"0x{block:064x}",
        transaction_hash=f"0x{block:060x}{index:04x}", transaction_index=index,
        log_index=index,
    )


def _full_scan(strategy: AaveV3Strategy, block: BlockRef) -> list[Candidate]:
    """The exact scan `candidates` made before the screen: every account of the book."""
    market = strategy.book.market
    out: list[Candidate] = []
    for user in strategy.book.users:
        if user in strategy.book.needs_read:
            continue
        account = strategy.book.account(user)
        data = account_data(market, account, block.timestamp)
        if data.total_debt_base == 0 or not math.is_liquidatable(data.health_factor):
            continue
        out.extend(strategy._pairs(market, account, data.health_factor, block.timestamp))
    return out


def _summary(candidates: list[Candidate]) -> list[tuple[object, ...]]:
    return [(c.account, c.collateral, c.debt, c.max_repay, c.health_factor, c.key)
            for c in candidates]


def test_candidates_equal_the_full_exact_scan() -> None:
    synthetic = generate(3000, seed=21, near_share=0.3)
    market = synthetic.market
    accounts = [synthetic.book.account(i) for i in range(len(synthetic.book))]
    strategy = AaveV3Strategy(
        AaveV3Config(addresses_provider=market.addresses_provider),
        StrategyContext(1, "0x" + "11" * 20),
    )
    t = _now(market)
    start = BlockRef(100, f"0x{100:064x}", "0x" + "00" * 32, t)
    strategy._book = PositionBook(market, accounts)
    strategy._book.block = start
    strategy._synced = start
    rng = np.random.default_rng(8)
    assert _summary(list(strategy.candidates(start))) == _summary(_full_scan(strategy, start))
    prices = {k: r.price for k, r in enumerate(market.reserves)}
    checked = 0
    for number in range(101, 113):
        events: list[Event] = []
        for i, k in enumerate(rng.choice(len(prices), 2, replace=False).tolist()):
            prices[k] = max(1, int(prices[k] * rng.uniform(0.8, 1.2)))
            events.append(_answer(market.reserves[k].feed, prices[k], number, i))
        users = rng.choice(len(accounts), 3, replace=False).tolist()
        u0, u1, u2 = (accounts[u].user for u in users)
        reserve = market.reserves[int(rng.integers(len(market.reserves)))].asset
        events.append(_pool_event(market.pool, ev.TOPIC_COLLATERAL_DISABLED, [reserve, u0],
                                  "0x", block=number, index=10))
        events.append(_pool_event(market.pool, ev.TOPIC_USER_EMODE_SET, [u1],
                                  "0x" + encode(["uint8"], [number % 3]).hex(), block=number,
                                  index=11))
        events.append(_pool_event(market.pool, ev.TOPIC_COLLATERAL_ENABLED, [reserve, u2],
                                  "0x", block=number, index=12))
        newcomer = f"0x{0xDD:02x}{number:038x}"  # a user the book has never seen
        events.append(_pool_event(market.pool, ev.TOPIC_COLLATERAL_ENABLED,
                                  [reserve, newcomer], "0x", block=number, index=13))
        block = BlockRef(number, f"0x{number:064x}", f"0x{number - 1:064x}",
                         t + 12 * (number - 100))
        strategy.apply(events, block)
        got = _summary(list(strategy.candidates(block)))
        want = _summary(_full_scan(strategy, block))
        assert got == want, number
        checked += len(want)
    assert checked > 0
    screen = strategy._screen
    assert screen is not None and len(screen.flagged()) < len(accounts) // 2

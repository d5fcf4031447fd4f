"""Synthetic Aave V3 books of any size, without a chain (fixed seed, mainnet-like mix).

The reserves mimic Ethereum mainnet's V3 market: WETH, wstETH, WBTC, USDC, USDT, DAI, LINK,
AAVE, cbETH, rETH, CRV, MKR and LUSD (listed with a zero threshold: not collateral), with
their real decimals, rough prices (8-decimal USD), thresholds and e-mode categories
(1 = ETH-correlated, no price source; 2 = stablecoins, with a price source at $1).
Position sizes are log-normal; `near_share` of the positions get a target HF in
[0.97, 1.03] and `under_share` one in [0.85, 0.97]; the rest are healthy (1.03 to ~10).
About 15 % supply only, 3 % hold a supplied asset with the collateral bit off, and
`stable_share` carry stable debt.

`generate(n)` returns a `SyntheticBook`: the `Market`, and a `CompactBook` (exact integer
scaled balances) whose `account(row)` feeds `market.account_data` and whose `entries()`
feeds the screen. `with_price` / `with_prices` give the market after a feed move.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from strategies.aave_v3 import math
from strategies.aave_v3.compact import CompactBook
from strategies.aave_v3.market import EModeCategory, Market, Reserve
from strategies.aave_v3.reserve_config import ReserveConfig

T0 = 1_700_000_000
ZERO = "0x" + "00" * 20
STABLE_SOURCE = "0x" + "5e" * 20


@dataclass(frozen=True)
class AssetSpec:
    """One reserve: symbol, decimals, price ($), LTV/threshold/bonus (bps), e-mode id,
    supply and borrow popularity weights."""

    symbol: str
    decimals: int
    price: float
    ltv: int
    lt: int
    bonus: int
    emode: int
    supply_w: float
    borrow_w: float


ASSETS: tuple[AssetSpec, ...] = (
    AssetSpec("WETH", 18, 3000.0, 8050, 8300, 10500, 1, 30, 20),
    AssetSpec("wstETH", 18, 3500.0, 7850, 8100, 10600, 1, 18, 2),
    AssetSpec("WBTC", 8, 60000.0, 7300, 7800, 10500, 0, 14, 3),
    AssetSpec("USDC", 6, 1.0, 7700, 8000, 10450, 2, 10, 30),
    AssetSpec("USDT", 6, 1.0, 7400, 7600, 10450, 2, 4, 25),
    AssetSpec("DAI", 18, 1.0, 7700, 8000, 10500, 2, 4, 15),
    AssetSpec("LINK", 18, 15.0, 5300, 6800, 10700, 0, 4, 1),
    AssetSpec("AAVE", 18, 90.0, 6600, 7300, 10750, 0, 3, 0.2),
    AssetSpec("cbETH", 18, 3200.0, 7450, 7700, 10750, 1, 3, 0.5),
    AssetSpec("rETH", 18, 3300.0, 7450, 7700, 10750, 1, 3, 0.5),
    AssetSpec("CRV", 18, 0.5, 3500, 4100, 10830, 0, 1, 0.5),
    AssetSpec("MKR", 18, 2000.0, 6500, 7000, 10850, 0, 1, 0.2),
    AssetSpec("LUSD", 18, 1.0, 0, 0, 0, 0, 1, 2),
)
EMODES = {
    1: EModeCategory(1, 9300, 9500, 10100, ZERO, "ETH correlated", 0),
    2: EModeCategory(2, 9300, 9750, 10100, STABLE_SOURCE, "Stablecoins", 100_000_000),
}


def _address(tag: int, i: int) -> str:
    return f"0x{tag:02x}{i:038x}"


def make_market(seed: int = 7, timestamp: int = T0) -> Market:
    """The synthetic market: indexes a few % above RAY, rates of a few %, updated < 1 h ago."""
    rng = np.random.default_rng(seed)
    reserves = []
    for i, a in enumerate(ASSETS):
        config = ReserveConfig(
            data=0, ltv=a.ltv, liquidation_threshold=a.lt, liquidation_bonus=a.bonus,
            decimals=a.decimals, active=True, frozen=False, borrowing_enabled=True,
            stable_borrowing_enabled=False, paused=False, borrowable_in_isolation=False,
            siloed_borrowing=False, flash_loan_enabled=True, reserve_factor=1000,
            borrow_cap=0, supply_cap=0, liquidation_protocol_fee=1000,
            emode_category=a.emode, unbacked_mint_cap=0, debt_ceiling=0,
        )
        reserves.append(Reserve(
            asset=_address(0xA0, i), id=i, config=config,
            liquidity_index=int(math.RAY * (1 + rng.uniform(0.01, 0.1))),
            current_liquidity_rate=int(math.RAY * rng.uniform(0.005, 0.05)),
            variable_borrow_index=int(math.RAY * (1 + rng.uniform(0.02, 0.2))),
            current_variable_borrow_rate=int(math.RAY * rng.uniform(0.02, 0.12)),
            current_stable_borrow_rate=int(math.RAY * 0.1),
            last_update_timestamp=timestamp - int(rng.integers(0, 3600)),
            a_token=_address(0xA1, i), stable_debt_token=_address(0xA2, i),
            variable_debt_token=_address(0xA3, i),
            price=round(a.price * 1e8), price_source=_address(0xF0, i),
        ))
    return Market(
        block=1, addresses_provider=_address(0xB0, 0), pool=_address(0xB0, 1),
        oracle=_address(0xB0, 2), data_provider=_address(0xB0, 3), reserves=tuple(reserves),
        emode_categories=dict(EMODES),
    )


def with_prices(market: Market, factors: Mapping[int, float]) -> Market:
    """The market with reserve k's price times factors[k] (a feed move; at least 1 wei)."""
    reserves = tuple(
        replace(r, price=max(1, round(r.price * factors[k]))) if k in factors else r
        for k, r in enumerate(market.reserves)
    )
    return replace(market, reserves=reserves)


def with_price(market: Market, k: int, factor: float) -> Market:
    """One feed moves: reserve k's price times `factor`."""
    return with_prices(market, {k: factor})


@dataclass
class SyntheticBook:
    """A market and its accounts (exact, compact)."""

    market: Market
    book: CompactBook
    target_hf: NDArray[np.float64]


def _pick(rng: np.random.Generator, n: int, weights: NDArray[np.float64],
          allowed: NDArray[np.bool_]) -> NDArray[np.intp]:
    """n draws of a reserve index by weight, among `allowed` (a row mask per draw)."""
    w = np.where(allowed, weights[None, :], 0.0)
    cum = np.cumsum(w, axis=1)
    u = rng.random(n) * cum[:, -1]
    picked: NDArray[np.intp] = np.minimum(
        (cum < u[:, None]).sum(axis=1), len(weights) - 1).astype(np.intp)
    return picked


def generate(
    n: int, *, seed: int = 1, near_share: float = 0.1, under_share: float = 0.005,
    stable_share: float = 0.001, market: Market | None = None, timestamp: int = T0,
) -> SyntheticBook:
    """A book of `n` accounts (see the module docstring); deterministic for a seed."""
    rng = np.random.default_rng(seed)
    market = market if market is not None else make_market(seed + 1, timestamp)
    a = len(ASSETS)
    supply_w = np.array([s.supply_w for s in ASSETS])
    borrow_w = np.array([s.borrow_w for s in ASSETS])
    cat_of = np.array([s.emode for s in ASSETS])
    lt = np.array([s.lt for s in ASSETS], np.float64)
    price = np.array([r.price for r in market.reserves], np.float64) / 1e8
    unit = np.array([10.0**s.decimals for s in ASSETS])
    income = np.array([r.normalized_income(timestamp) / math.RAY for r in market.reserves])
    debt_idx = np.array([r.normalized_debt(timestamp) / math.RAY for r in market.reserves])

    emode = rng.choice([0, 1, 2], size=n, p=[0.85, 0.10, 0.05]).astype(np.int64)
    in_cat = cat_of[None, :] == emode[:, None]  # assets of the row's category
    eligible = np.where(emode[:, None] == 0, True, in_cat) & (lt[None, :] > 0)

    # collateral: 1-3 draws per row (duplicates merge)
    n_coll = rng.choice([1, 2, 3], size=n, p=[0.6, 0.3, 0.1])
    c_rows = np.repeat(np.arange(n), n_coll)
    c_res = _pick(rng, c_rows.size, supply_w, eligible[c_rows])
    size = np.exp(rng.normal(np.log(5000.0), 1.6, n))  # USD of collateral per row
    c_share = rng.random(c_rows.size) + 0.05
    c_share /= np.bincount(c_rows, weights=c_share, minlength=n)[c_rows]
    c_usd = size[c_rows] * c_share
    emode_lt = np.array([0.0, EMODES[1].liquidation_threshold, EMODES[2].liquidation_threshold])
    lt_eff = np.where(in_cat[c_rows, c_res] & (emode[c_rows] != 0),
                      emode_lt[emode[c_rows]], lt[c_res])
    coll_off = rng.random(c_rows.size) < 0.03  # supplied, collateral bit off
    weighted = np.bincount(c_rows, weights=np.where(coll_off, 0.0, c_usd * lt_eff / 1e4),
                           minlength=n)

    # target health factor, then the debt that gives it
    u = rng.random(n)
    hf = 1.03 + np.exp(rng.normal(np.log(0.6), 0.9, n))
    hf = np.where(u < near_share, rng.uniform(0.97, 1.03, n), hf)
    hf = np.where((u >= near_share) & (u < near_share + under_share),
                  rng.uniform(0.85, 0.97, n), hf)
    borrower = (rng.random(n) >= 0.15) & (weighted > 0)
    n_debt = np.where(borrower, rng.choice([1, 2], size=n, p=[0.8, 0.2]), 0)
    d_rows = np.repeat(np.arange(n), n_debt)
    d_allowed = np.where(emode[d_rows, None] == 0, True, in_cat[d_rows])
    d_res = _pick(rng, d_rows.size, borrow_w, d_allowed)
    d_share = rng.random(d_rows.size) + 0.05
    d_share /= np.bincount(d_rows, weights=d_share, minlength=n)[d_rows]
    d_usd = (weighted / hf)[d_rows] * d_share

    # merge (row, reserve) pairs: one entry with both balances
    keys = np.concatenate([c_rows * a + c_res, d_rows * a + d_res])
    scaled_c = c_usd / price[c_res] * unit[c_res] / income[c_res]
    scaled_d = d_usd / price[d_res] * unit[d_res] / debt_idx[d_res]
    uniq, inv = np.unique(keys, return_inverse=True)
    at = np.bincount(inv[: c_rows.size], weights=scaled_c, minlength=uniq.size).astype(float)
    vd = np.bincount(inv[c_rows.size :], weights=scaled_d, minlength=uniq.size).astype(float)
    off = np.bincount(inv[: c_rows.size], weights=coll_off, minlength=uniq.size) > 0
    rows = uniq // a
    res = (uniq % a).astype(np.int16)
    ids = res.astype(np.uint64)
    bits = np.where((at > 0) & ~off, np.uint64(1) << (2 * ids + np.uint64(1)), np.uint64(0))
    bits |= np.where(vd > 0, np.uint64(1) << (2 * ids), np.uint64(0))
    config = np.zeros(n, np.uint64)
    np.bitwise_or.at(config, rows, bits)

    def limbs(x: NDArray[np.float64]) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
        x = np.floor(x)
        hi = np.floor(x / 2.0**64)
        return hi.astype(np.uint64), (x - hi * 2.0**64).astype(np.uint64)

    a_hi, a_lo = limbs(at)
    v_hi, v_lo = limbs(vd)
    ptr = np.zeros(n + 1, np.intp)
    np.cumsum(np.bincount(rows, minlength=n), out=ptr[1:])
    users = [f"0x{0xC0:02x}{i:038x}" for i in range(n)]
    book = CompactBook(market, users, [int(c) for c in config.tolist()], emode, ptr, res,
                       a_hi, a_lo, v_hi, v_lo)
    # stable debt on a few borrowers: on their first debt entry
    stable_rows = np.flatnonzero(borrower & (rng.random(n) < stable_share))
    for row in stable_rows.tolist():
        lo, hi_ = int(ptr[row]), int(ptr[row + 1])
        k = next(int(res[i]) for i in range(lo, hi_) if vd[i] > 0)
        principal = int(vd[lo:hi_].max() * 0.5) + 1
        book.stable[row] = {k: (principal, int(math.RAY * 0.08),
                                timestamp - int(rng.integers(0, 30 * 86400)))}
    return SyntheticBook(market, book, hf)

"""The screen's inputs (screen.py): flat entries of a book, per-column float factors of a
market, and the row order that makes the most held columns contiguous. The columns built from
them, and the overlay of rows re-loaded from logs, are in screen_store.py."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from strategies.aave_v3 import math
from strategies.aave_v3.market import Account, Market
from strategies.aave_v3.rules import RuleSet

F64 = NDArray[np.float64]
Rows = NDArray[np.intp]

SORT_COLUMNS = 12  # rows are ordered by membership of this many of the most held columns


@dataclass(frozen=True)
class Entries:
    """A book as flat entry arrays: (row, reserve index k, float scaled balance) per entry.

    `emode` holds each row's e-mode category id; `stable` the rows with stable debt.
    """

    users: Sequence[str]
    emode: NDArray[np.int64]
    coll_row: Rows
    coll_reserve: Rows
    coll_scaled: F64
    debt_row: Rows
    debt_reserve: Rows
    debt_scaled: F64
    stable: Rows


def account_entries(
    market: Market, account: Account
) -> tuple[list[tuple[int, float]], list[tuple[int, float]], bool]:
    """One account's (reserve index, float scaled) collateral and debt entries, and whether
    it has stable debt, with the bits calculateUserAccountData reads."""
    data = account.config.data  # UserConfigurationMap: bit 2i borrowing, 2i+1 collateral
    coll: list[tuple[int, float]] = []
    debt: list[tuple[int, float]] = []
    stable = False
    for k, r in enumerate(market.reserves):
        bits = (data >> (2 * r.id)) & 3
        if not bits:
            continue
        b = account.balances[r.asset]
        if bits & 2 and b.scaled_atoken_balance:
            coll.append((k, float(b.scaled_atoken_balance)))
        if bits & 1:
            if b.scaled_variable_debt:
                debt.append((k, float(b.scaled_variable_debt)))
            if b.stable_principal:
                stable = True
    return coll, debt, stable


def entries_of(market: Market, accounts: Iterable[Account]) -> Entries:
    """`Entries` of exact `Account`s (rows in the given order)."""
    users: list[str] = []
    emode: list[int] = []
    cr: list[int] = []
    ck: list[int] = []
    cv: list[float] = []
    dr: list[int] = []
    dk: list[int] = []
    dv: list[float] = []
    stable: list[int] = []
    for row, account in enumerate(accounts):
        users.append(account.user.lower())
        emode.append(account.emode_category)
        coll, debt, has_stable = account_entries(market, account)
        for k, v in coll:
            cr.append(row)
            ck.append(k)
            cv.append(v)
        for k, v in debt:
            dr.append(row)
            dk.append(k)
            dv.append(v)
        if has_stable:
            stable.append(row)
    return Entries(
        users, np.array(emode, np.int64),
        np.array(cr, np.intp), np.array(ck, np.intp), np.array(cv, np.float64),
        np.array(dr, np.intp), np.array(dk, np.intp), np.array(dv, np.float64),
        np.array(stable, np.intp),
    )


@dataclass(frozen=True)
class Factors:
    """Per-column float factors of a market at a timestamp, and the absolute slacks."""

    coll: F64
    debt: F64
    abs_w: float
    abs_d: float


def market_factors(market: Market, slots: Sequence[int], timestamp: int) -> Factors:
    """Column (slot s, reserve k) -> index s*A + k; factors as calculateUserAccountData prices
    and thresholds the reserve for a user in category `slots[s]`."""
    n = len(market.reserves)
    coll = np.zeros(len(slots) * n)
    debt = np.zeros(len(slots) * n)
    half = np.zeros((len(slots), n))
    v36 = market.rules is RuleSet.V3_6
    for s, cat_id in enumerate(slots):
        category = market.emode_categories.get(cat_id) if cat_id else None
        emode_price = category.price if category is not None else 0
        for k, r in enumerate(market.reserves):
            unit = math.asset_unit(r.decimals)
            if v36:  # v3.6: membership by the category's collateralBitmap, no e-mode price;
                # a reserve LT of 0 counts too (with the category's LT inside it)
                in_emode = category is not None and bool(
                    category.collateral_bitmap >> r.id & 1)
                price = r.price
            else:
                in_emode = cat_id != 0 and r.config.emode_category == cat_id
                price = emode_price if in_emode and emode_price != 0 else r.price
            if r.config.liquidation_threshold != 0 or (v36 and in_emode):
                lt = r.config.liquidation_threshold
                if in_emode:
                    lt = category.liquidation_threshold if category is not None else 0
                income = r.normalized_income(timestamp)
                if lt != 0:
                    coll[s * n + k] = price * income * (lt - 1) / (math.RAY * unit * 10**4)
            debt[s * n + k] = price * r.normalized_debt(timestamp) / (math.RAY * unit)
            half[s, k] = price / (2 * unit)
    # per reserve, the largest half-wei value over the slots (+1 for the floor of b_i)
    worst = half.max(axis=0) if n else half.sum(axis=0)
    if v36:  # v3.5 rounding: balances floor and debts ceil by up to one wei (2 * half), and
        # debt in base currency rounds up (mulDivCeil: +1)
        return Factors(coll, debt, 0.5 + float(np.sum(2 * worst + 1)),
                       float(np.sum(2 * worst + 1)))
    return Factors(coll, debt, 0.5 + float(np.sum(worst + 1)), float(np.sum(worst)))


def sorted_rows(entries: Entries, slots: Sequence[int], n_assets: int) -> tuple[Entries, Rows]:
    """The entries with rows ordered by membership of the SORT_COLUMNS most held columns
    (the most held first), and the permutation (new row -> input row)."""
    n = len(entries.users)
    slot = np.searchsorted(np.array(slots, np.int64), entries.emode)
    ncols = len(slots) * n_assets
    c_col = slot[entries.coll_row] * n_assets + entries.coll_reserve
    d_col = slot[entries.debt_row] * n_assets + entries.debt_reserve + ncols
    cols = np.concatenate([c_col, d_col])
    rows = np.concatenate([entries.coll_row, entries.debt_row])
    top = np.argsort(-np.bincount(cols, minlength=2 * ncols), kind="stable")[:SORT_COLUMNS]
    keys = []
    for c in top[::-1].tolist():  # lexsort: the last key is the primary one
        member = np.zeros(n, bool)
        member[rows[cols == c]] = True
        keys.append(~member)
    perm = np.lexsort(keys).astype(np.intp) if keys and n else np.arange(n, dtype=np.intp)
    inverse = np.empty(n, np.intp)
    inverse[perm] = np.arange(n, dtype=np.intp)
    users = [entries.users[i] for i in perm.tolist()]
    return Entries(
        users, entries.emode[perm],
        inverse[entries.coll_row], entries.coll_reserve, entries.coll_scaled,
        inverse[entries.debt_row], entries.debt_reserve, entries.debt_scaled,
        inverse[entries.stable],
    ), perm

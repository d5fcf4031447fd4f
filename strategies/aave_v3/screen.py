"""A columnar float64 screen of an Aave V3 book: which accounts MAY have HF < 1 (issue 8).

The exact integer mirror (market.account_data) costs ~100 µs per account; this screen
keeps, per account row, a lower bound `W` of `percentMul(totalCollateral, avgLT)` and an
upper bound `D` of `totalDebt` (both in base currency, float64), so that one comparison
per row says "cannot be liquidatable" for almost every row. Only flagged rows need the
exact math. There are no false negatives: every row whose exact HF < 1 is flagged.

Layout. A column is (e-mode slot, reserve): the user's category decides the price and the
threshold an asset gets. Per column the screen stores a float factor and, CSC-style, the
rows holding that column and their scaled balances (`float(scaled)`); a collateral entry
only where the collateral bit is on, a debt entry only where the borrowing bit is on.
A feed that moves re-prices its columns, and only the rows in those columns are touched:
`W[rows] += scaled * (f_new - f_old)`, then those rows' flags are re-evaluated.

The bound, from GenericLogic.calculateUserAccountData (1.19.3), with b_i the balance in
base currency, C = Σ b_i, S = Σ b_i·LT_i and avgLT = floor(S / C):

- pm = percentMul(C, avgLT) ≥ (C·avgLT - 4999)/1e4 and C·avgLT ≥ S - C + 1, so
  pm > Σ b_i·(LT_i - 1)/1e4 - 0.5: the collateral factor uses LT - 1, which absorbs the
  floor of the average threshold exactly, whatever the thresholds are;
- b_i = floor(rayMul(s, I)·p/u) ≥ s·I·p/(RAY·u) - p/(2u) - 1 and the debt
  floor(p·(rayMul(s, I) + stable)/u) ≤ s·I·p/(RAY·u) + p/(2u): the absolute slacks
  `abs_w`, `abs_d` sum these over every reserve (well under a cent);
- HF < 1e18 ⇔ pm·WAD + D/2 < WAD·D ⇒ pm < D. So a row is flagged when
  `W·(1 - m) - abs_w < D·(1 + m) + abs_d` (and it has a debt entry).

The relative margin m = 1e-9 + `drift`:

- `drift` (default 1e-6) covers interest accrual and anything else that moves a factor a
  little: each block the true factors are recomputed from the market (cheap, per column)
  and a column is re-priced as soon as its true factor is more than `drift` away from the
  stored one. So the true W is ≥ W_stored·(1 - drift) and the true D ≤ D_stored·(1 + drift)
  at every block, without touching any row until a column drifts that far (at a 10 %
  borrow rate, ~25 blocks);
- 1e-9 covers float64: the scaled balance, the factor (a correctly rounded int division)
  and their product are each within u = 2^-53; a sum of n non-negative terms is within
  (n-1)·u; each incremental update adds at most 4u·s·f_max + u·|W|. With n_up column
  updates since the last full recompute and rho = max_col f_max/f_now, the row error is
  ≤ (2A + 3 + 4·n_up)·u·rho relative to the row's exact value; a full recompute is forced
  before that exceeds 1e-10, and the 1e-9 also absorbs the products of the bounds.

(Aave's configurator requires an e-mode threshold != 0, so every LT - 1 ≥ 0 and every term is
non-negative.) Accounts with stable debt (disabled on mainnet since 2023) are always flagged:
their debt grows with a per-user rate the columns cannot carry. Rows re-loaded from logs
(`load`) live in an overlay whose sums are recomputed from scratch at each update, until
the overlay is merged back (compaction). The inputs are in screen_columns.py, the column
storage and the overlay in screen_store.py.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from keeper.errors import StrategyError
from strategies.aave_v3.market import Account, Market
from strategies.aave_v3.screen_columns import (
    Entries,
    account_entries,
    entries_of,
    market_factors,
    sorted_rows,
)
from strategies.aave_v3.screen_store import Columns, Overlay

F64 = NDArray[np.float64]
Rows = NDArray[np.intp]
__all__ = ["Entries", "HealthScreen", "ScreenError", "account_entries", "entries_of"]

UNIT_ROUNDOFF = 2.0**-53
BASE_MARGIN = 1e-9  # float64 (kept below FLOAT_BUDGET) and the products of the bounds
FLOAT_BUDGET = 1e-10  # a full recompute is forced before the accumulated bound passes this
DEFAULT_DRIFT = 1e-6  # relative factor drift tolerated before a column is re-priced
FULL_SHARE = 0.4  # re-price by a full recompute when the moved columns hold this share
OVERLAY_ROWS = 4096  # re-loaded rows kept aside (plus 0.5 % of the rows) before compaction


class ScreenError(StrategyError):
    """The screen does not fit the market (its reserve list changed): rebuild it."""


class HealthScreen:
    """Float bounds of every row's collateral and debt, kept per feed move; see the module.

    Per row: `lo` = W·(1 - m) - abs_w - abs_d, `hi` = D·(1 + m), or -inf without a debt
    entry, or +inf with stable debt (always flagged); flagged ⇔ lo < hi.

    Rows are stored in their own order: sorted by membership of the most held columns, so
    that each of those columns is a few contiguous runs of rows, re-priced by slices (one
    pass over memory) instead of a gather/scatter. `origin[row]` is the row's position in
    the input (and, for rows added later, in the order they were loaded).
    """

    def __init__(
        self, market: Market, entries: Entries, timestamp: int, *, drift: float = DEFAULT_DRIFT
    ) -> None:
        self.assets = tuple((r.asset, r.id) for r in market.reserves)
        self.n_assets = len(self.assets)
        self.drift = drift
        self.margin = BASE_MARGIN + drift
        ids = sorted({0, *market.emode_categories, *(int(i) for i in np.unique(entries.emode))})
        self.slots: list[int] = ids
        self._slot_of = {c: s for s, c in enumerate(ids)}
        entries, perm = sorted_rows(entries, ids, self.n_assets)
        self.users: list[str] = list(entries.users)
        self.index: dict[str, int] = {u: i for i, u in enumerate(self.users)}
        n = len(self.users)
        cap = max(16, n)
        self._n = n
        self.lo = np.zeros(cap)
        self.hi = np.zeros(cap)
        self.flag = np.zeros(cap, bool)
        self.has_debt = np.zeros(cap, bool)
        self.stable = np.zeros(cap, bool)
        self.slot = np.zeros(cap, np.intp)
        self.origin = np.zeros(cap, np.intp)
        self.origin[:n] = perm
        self.slot[:n] = np.searchsorted(np.array(ids, np.int64), entries.emode)
        self.stable[entries.stable] = True
        self._overlay = Overlay()
        self._build(entries)
        self.recompute(market, timestamp)

    # ------------------------------------------------------------------ build

    @classmethod
    def from_accounts(
        cls, market: Market, accounts: Iterable[Account], timestamp: int,
        *, drift: float = DEFAULT_DRIFT,
    ) -> HealthScreen:
        return cls(market, entries_of(market, accounts), timestamp, drift=drift)

    def _build(self, e: Entries) -> None:
        ncols = len(self.slots) * self.n_assets
        a = self.n_assets
        self.coll = Columns.of(
            e.coll_row, self.slot[e.coll_row] * a + e.coll_reserve, e.coll_scaled, ncols)
        self.debt = Columns.of(
            e.debt_row, self.slot[e.debt_row] * a + e.debt_reserve, e.debt_scaled, ncols)
        self.has_debt[: self._n] = False
        self.has_debt[self.debt.rows] = True

    def __len__(self) -> int:
        return self._n

    @property
    def overlay_rows(self) -> int:
        """Rows re-loaded since the last compaction."""
        return len(self._overlay)

    @property
    def nbytes(self) -> int:
        """Bytes held by the numpy arrays (not the user list and index)."""
        arrays = [self.lo, self.hi, self.flag, self.has_debt, self.stable, self.slot,
                  self.origin]
        return sum(a.nbytes for a in arrays) + self.coll.nbytes + self.debt.nbytes

    # ------------------------------------------------------------------ sums and flags

    def _set_rows(self, rows: Rows | slice, w: F64, d: F64) -> None:
        """lo/hi/flag of `rows` from their raw sums W and D."""
        m = self.margin
        self.lo[rows] = w * (1 - m) - (self.abs_w + self.abs_d)
        hi = np.where(self.has_debt[rows], d * (1 + m), -np.inf)
        self.hi[rows] = np.where(self.stable[rows], np.inf, hi)
        self.flag[rows] = self.lo[rows] < self.hi[rows]

    def recompute(self, market: Market, timestamp: int) -> None:
        """The full path: every factor from `market` at `timestamp`, every row's sums."""
        self._check(market)
        f = market_factors(market, self.slots, timestamp)
        self.fc, self.fd = f.coll, f.debt
        self.fc_max, self.fd_max = np.abs(f.coll), np.abs(f.debt)
        self.abs_w, self.abs_d = 2 * f.abs_w, 2 * f.abs_d  # headroom: prices may rise
        self.n_updates = 0
        n = self._n
        w = self.coll.sums(self.fc, n)
        d = self.debt.sums(self.fd, n)
        self._set_rows(slice(0, n), w, d)
        self._overlay_sums()

    def _check(self, market: Market) -> None:
        if tuple((r.asset, r.id) for r in market.reserves) != self.assets:
            raise ScreenError("aave_v3 screen: the market's reserve list changed; rebuild")

    def _float_bound(self) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.concatenate([
                np.where(self.fc_max > 0, self.fc_max / np.abs(self.fc), 1.0),
                np.where(self.fd_max > 0, self.fd_max / np.abs(self.fd), 1.0),
            ])
        rho = float(np.max(ratios)) if ratios.size else 1.0
        return (2 * self.n_assets + 3 + 4 * self.n_updates) * UNIT_ROUNDOFF * rho

    def update(self, market: Market, timestamp: int) -> int:
        """Re-price the columns whose true factor moved more than `drift`; returns how many.

        Falls back to `recompute` when the moved columns hold most entries, when the float
        error bound would pass FLOAT_BUDGET, or when the absolute slacks grew.
        """
        self._check(market)
        f = market_factors(market, self.slots, timestamp)
        moved_c = self._moved(self.fc, f.coll)
        moved_d = self._moved(self.fd, f.debt)
        moved = int(moved_c.size + moved_d.size)
        if moved == 0:
            return 0
        self.n_updates += moved
        self.fc_max = np.maximum(self.fc_max, np.abs(f.coll))
        self.fd_max = np.maximum(self.fd_max, np.abs(f.debt))
        size = self.coll.held(moved_c) + self.debt.held(moved_d)
        if (size > FULL_SHARE * (self.coll.size + self.debt.size)
                or f.abs_w > self.abs_w or f.abs_d > self.abs_d):
            self.recompute(market, timestamp)
            return moved
        scale_w, scale_d = 1 - self.margin, 1 + self.margin
        for c in moved_c.tolist():
            step = (f.coll[c] - self.fc[c]) * scale_w
            self.fc[c] = f.coll[c]
            self.coll.shift(self.lo, self.hi, self.flag, c, step, is_lo=True)
        for c in moved_d.tolist():
            step = (f.debt[c] - self.fd[c]) * scale_d
            self.fd[c] = f.debt[c]
            self.debt.shift(self.hi, self.lo, self.flag, c, step, is_lo=False)
        if self._float_bound() > FLOAT_BUDGET:  # rare: recompute rather than track errors
            self.recompute(market, timestamp)
            return moved
        self._overlay_sums()
        return moved

    def _moved_mask(self, stored: F64, true: F64) -> NDArray[np.bool_]:
        return np.abs(true - stored) > self.drift * np.abs(stored)

    def _moved(self, stored: F64, true: F64) -> Rows:
        return np.flatnonzero(self._moved_mask(stored, true)).astype(np.intp)

    # ------------------------------------------------------------------ rows from logs

    def load(self, market: Market, accounts: Iterable[Account], timestamp: int) -> None:
        """Re-load accounts changed by logs (new accounts get new rows) into the overlay."""
        self._check(market)
        changed = False
        for account in accounts:
            user = account.user.lower()
            row = self.index.get(user)
            if row is None:
                row = self._append(user)
            slot = self._slot_of.get(account.emode_category)
            if slot is None:  # a category the columns lack: rebuild them with it
                self._add_slot(account.emode_category, market, timestamp)
                slot = self._slot_of[account.emode_category]
            self.slot[row] = slot
            coll, debt, stable = account_entries(market, account)
            base = slot * self.n_assets
            self._overlay.put(row, [(base + k, v) for k, v in coll],
                              [(base + k, v) for k, v in debt])
            self.stable[row] = stable
            changed = True
        if not changed:
            return
        self._overlay_sums()
        # every update recomputes the overlay rows; compaction re-sorts the columns
        if len(self._overlay) > OVERLAY_ROWS + self._n // 200:
            self.compact()

    def _append(self, user: str) -> int:
        row = self._n
        if row == self.lo.size:
            cap = 2 * self.lo.size
            for name in ("lo", "hi", "flag", "has_debt", "stable", "slot", "origin"):
                old = getattr(self, name)
                new = np.zeros(cap, old.dtype)
                new[: old.size] = old
                setattr(self, name, new)
        self._n += 1
        self.origin[row] = row
        self.users.append(user)
        self.index[user] = row
        return row

    def _add_slot(self, cat_id: int, market: Market, timestamp: int) -> None:
        entries = self._entries()
        self.slots = sorted({*self.slots, cat_id})
        self._slot_of = {c: s for s, c in enumerate(self.slots)}
        self.slot[: self._n] = np.searchsorted(np.array(self.slots, np.int64), entries.emode)
        self._overlay = Overlay()
        self._build(entries)
        self.recompute(market, timestamp)

    def _dead(self) -> NDArray[np.bool_]:
        """Rows whose column entries are stale (they are in the overlay)."""
        dead = np.zeros(self._n, bool)
        dead[self._overlay.rows_array()] = True
        return dead

    def _entries(self) -> Entries:
        """Every entry (columns merged with the overlay), as (row, reserve index, value)."""
        dead, overlay_rows = self._dead(), self._overlay.rows_array()
        cr, ck, cv = self.coll.entries(dead, overlay_rows, self._overlay.coll, self.n_assets)
        dr, dk, dv = self.debt.entries(dead, overlay_rows, self._overlay.debt, self.n_assets)
        emode = np.array(self.slots, np.int64)[self.slot[: self._n]]
        return Entries(self.users, emode, cr, ck, cv, dr, dk, dv,
                       np.flatnonzero(self.stable[: self._n]).astype(np.intp))

    def compact(self) -> None:
        """Merge the overlay into the columns. No sum changes: the overlay rows' lo/hi are
        already fresh, and every other row keeps its columns."""
        if not len(self._overlay):
            return
        dead, overlay = self._dead(), self._overlay
        rows = overlay.rows_array()
        self.coll = self.coll.merged(dead, rows, overlay.coll)
        self.debt = self.debt.merged(dead, rows, overlay.debt)
        self._overlay = Overlay()

    def _overlay_sums(self) -> None:
        """Overlay rows' sums from scratch with the stored factors (their column entries,
        if any, are stale and were moved along with the others: overwrite them)."""
        if not len(self._overlay):
            return
        rows, has_debt, w, d = self._overlay.sums(self.fc, self.fd)
        self.has_debt[rows] = has_debt
        self._set_rows(rows, w, d)

    # ------------------------------------------------------------------ answers

    def flagged_rows(self) -> Rows:
        """Rows that may have HF < 1 (ascending): the float test, plus stable-debt rows."""
        return np.flatnonzero(self.flag[: self._n]).astype(np.intp)

    def flagged_positions(self) -> Rows:
        """The flagged rows' positions in the input order (`origin`), ascending."""
        return np.sort(self.origin[self.flagged_rows()])

    def flagged(self) -> list[str]:
        """The flagged rows' users, in the input order."""
        rows = self.flagged_rows()
        users = self.users
        return [users[i] for i in rows[np.argsort(self.origin[rows])].tolist()]

    def in_input_order(self, values: F64) -> F64:
        """Per-row `values` rearranged to the input order."""
        out = np.empty_like(values)
        out[self.origin[: values.size]] = values
        return out

    def approx_health(self) -> F64:
        """W / D per row in input order (inf without debt, nan with stable debt): diagnostics."""
        n = self._n
        w = (self.lo[:n] + self.abs_w + self.abs_d) / (1 - self.margin)
        d = self.hi[:n] / (1 + self.margin)
        with np.errstate(divide="ignore", invalid="ignore"):
            hf = np.where(self.stable[:n], np.nan, np.where(self.has_debt[:n], w / d, np.inf))
        return self.in_input_order(hf.astype(np.float64))

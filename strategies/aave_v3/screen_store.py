"""The screen's column storage (screen.py): per side (collateral, debt) CSC columns over
(e-mode slot, reserve) with the runs of contiguous rows that are re-priced by slices, and
the overlay of rows re-loaded from logs until it is merged back into the columns."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
Rows = NDArray[np.intp]

RUN_LENGTH = 256  # a column re-priced by slices when its runs of rows average this long


def columns(rows: Rows, cols: Rows, vals: F64, ncols: int) -> tuple[Rows, Rows, F64]:
    """CSC: column pointers, and rows/values sorted by column, then row (cache-friendly)."""
    n = int(rows.max()) + 1 if rows.size else 1
    order = np.argsort(cols.astype(np.int64) * n + rows, kind="stable")  # rows ascending
    cols_sorted = cols[order]
    ptr = np.searchsorted(cols_sorted, np.arange(ncols + 1)).astype(np.intp)
    return ptr, rows[order].astype(np.intp), vals[order].astype(np.float64)



def runs(ptr: Rows, rows: Rows) -> dict[int, list[tuple[int, int, int]]]:
    """Per column whose rows form long contiguous runs: (first row, end row, entry offset)."""
    out: dict[int, list[tuple[int, int, int]]] = {}
    for c in range(ptr.size - 1):
        lo, hi = int(ptr[c]), int(ptr[c + 1])
        if hi - lo < RUN_LENGTH:
            continue
        col = rows[lo:hi]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(col) != 1) + 1])
        if (hi - lo) < RUN_LENGTH * starts.size:
            continue
        ends = np.concatenate([starts[1:], [hi - lo]])
        out[c] = [(int(col[s]), int(col[e - 1]) + 1, lo + int(s))
                  for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]
    return out



class OverlayLog:
    """Append-only overlay entries: (local row, column, value); dead ones have value 0."""

    def __init__(self) -> None:
        self.local = np.zeros(64, np.intp)
        self.col = np.zeros(64, np.intp)
        self.val = np.zeros(64)
        self.size = 0

    def append(self, local: int, entries: Sequence[tuple[int, float]]) -> tuple[int, int]:
        start, end = self.size, self.size + len(entries)
        if end > self.val.size:
            cap = max(2 * self.val.size, end)
            for name in ("local", "col", "val"):
                old = getattr(self, name)
                new = np.zeros(cap, old.dtype)
                new[: old.size] = old
                setattr(self, name, new)
        self.local[start:end] = local
        self.col[start:end] = [c for c, _ in entries]
        self.val[start:end] = [v for _, v in entries]
        self.size = end
        return start, end

    def view(self) -> tuple[Rows, Rows, F64]:
        n = self.size
        return self.local[:n], self.col[:n], self.val[:n]


class Overlay:
    """Rows re-loaded since the last compaction. A row loaded again zeroes its old entries
    (scaled balances are never 0 in an entry), so no entry is ever searched for."""

    def __init__(self) -> None:
        self._rows = np.zeros(64, np.intp)  # local index -> row
        self.local: dict[int, int] = {}
        self.spans: dict[int, tuple[int, int, int, int]] = {}
        self.coll = OverlayLog()
        self.debt = OverlayLog()

    def __len__(self) -> int:
        return len(self.local)

    def put(self, row: int, coll: Sequence[tuple[int, float]],
            debt: Sequence[tuple[int, float]]) -> None:
        span = self.spans.get(row)
        if span is not None:
            self.coll.val[span[0] : span[1]] = 0.0
            self.debt.val[span[2] : span[3]] = 0.0
        local = self.local.get(row)
        if local is None:
            local = self.local[row] = len(self.local)
            if local == self._rows.size:
                self._rows = np.concatenate([self._rows, np.zeros_like(self._rows)])
            self._rows[local] = row
        c0, c1 = self.coll.append(local, coll)
        d0, d1 = self.debt.append(local, debt)
        self.spans[row] = (c0, c1, d0, d1)

    def rows_array(self) -> Rows:
        return self._rows[: len(self.local)]

    def sums(self, fc: F64, fd: F64) -> tuple[Rows, NDArray[np.bool_], F64, F64]:
        """The overlay's rows, whether each has a live debt entry, and their sums W and D
        from scratch with the column factors `fc` and `fd`."""
        rows = self.rows_array()
        n = rows.size
        cl, cc, cv = self.coll.view()
        dl, dc, dv = self.debt.view()
        live_debt = np.bincount(dl, weights=(dv != 0).astype(np.float64), minlength=n)
        w = np.bincount(cl, weights=cv * fc[cc], minlength=n).astype(np.float64)
        d = np.bincount(dl, weights=dv * fd[dc], minlength=n).astype(np.float64)
        return rows, live_debt > 0, w, d


def merge_columns(
    ptr: Rows, rows: Rows, vals: F64, *, dead: NDArray[np.bool_], overlay_rows: Rows,
    log: OverlayLog,
) -> tuple[Rows, Rows, F64]:
    """CSC columns without the `dead` rows' entries, plus the live overlay entries, still
    sorted by (column, row): the few new entries are sorted and inserted, no full sort."""
    ncols = ptr.size - 1
    n = dead.size
    cols = np.repeat(np.arange(ncols, dtype=np.intp), np.diff(ptr))
    keep = ~dead[rows]
    k_cols, k_rows, k_vals = cols[keep], rows[keep], vals[keep]
    local, o_cols, o_vals = log.view()
    live = o_vals != 0
    add_rows, add_cols, add_vals = overlay_rows[local[live]], o_cols[live], o_vals[live]
    add_key = add_cols.astype(np.int64) * n + add_rows
    order = np.argsort(add_key, kind="stable")
    at = np.searchsorted(k_cols.astype(np.int64) * n + k_rows, add_key[order])
    new_cols = np.insert(k_cols, at, add_cols[order])
    new_rows = np.insert(k_rows, at, add_rows[order]).astype(np.intp)
    new_vals = np.insert(k_vals, at, add_vals[order]).astype(np.float64)
    return np.searchsorted(new_cols, np.arange(ncols + 1)).astype(np.intp), new_rows, new_vals


class Columns:
    """One side of the screen (collateral or debt): CSC columns (pointers, rows ascending
    within a column, float scaled balances), and per column whose rows form long contiguous
    runs, those runs (`runs`)."""

    def __init__(self, ptr: Rows, rows: Rows, vals: F64) -> None:
        self.ptr, self.rows, self.vals = ptr, rows, vals
        self.runs = runs(ptr, rows)

    @classmethod
    def of(cls, rows: Rows, cols: Rows, vals: F64, ncols: int) -> Columns:
        """The columns of flat entries (row, column, value)."""
        return cls(*columns(rows, cols, vals, ncols))

    @property
    def nbytes(self) -> int:
        return self.ptr.nbytes + self.rows.nbytes + self.vals.nbytes

    @property
    def size(self) -> int:
        """Entries held by every column."""
        return int(self.rows.size)

    def held(self, cols: Rows) -> int:
        """Entries held by the columns `cols`."""
        return int(np.sum(self.ptr[cols + 1] - self.ptr[cols]))

    def sums(self, factors: F64, n: int) -> F64:
        """Per row (of `n`): the sum of its entries times their column's factor."""
        weights = self.vals * np.repeat(factors, np.diff(self.ptr))
        return np.bincount(self.rows, weights=weights, minlength=n).astype(np.float64)

    def shift(
        self, side: F64, other: F64, flag: NDArray[np.bool_], c: int, step: float, *,
        is_lo: bool,
    ) -> None:
        """side[rows of column c] += vals * step, and re-flag those rows (lo < hi)."""
        col_runs = self.runs.get(c)
        if col_runs is not None:  # contiguous runs: slices, no gather/scatter
            vals = self.vals
            for r0, r1, v0 in col_runs:
                seg = side[r0:r1]
                seg += vals[v0 : v0 + r1 - r0] * step
                if is_lo:
                    np.less(seg, other[r0:r1], out=flag[r0:r1])
                else:
                    np.less(other[r0:r1], seg, out=flag[r0:r1])
            return
        lo, hi = self.ptr[c], self.ptr[c + 1]
        if hi == lo:
            return
        rows = self.rows[lo:hi]
        new = side[rows] + self.vals[lo:hi] * step
        side[rows] = new
        flag[rows] = new < other[rows] if is_lo else other[rows] < new

    def entries(
        self, dead: NDArray[np.bool_], overlay_rows: Rows, log: OverlayLog, n_assets: int
    ) -> tuple[Rows, Rows, F64]:
        """Every live entry as (row, reserve index, value): the columns' entries of the rows
        not `dead`, then the overlay's live ones."""
        cols = np.repeat(np.arange(self.ptr.size - 1), np.diff(self.ptr))
        keep = ~dead[self.rows]
        local, o_cols, o_vals = log.view()
        live = o_vals != 0
        all_cols = np.concatenate([cols[keep], o_cols[live]])
        return (np.concatenate([self.rows[keep], overlay_rows[local[live]]]),
                all_cols % n_assets, np.concatenate([self.vals[keep], o_vals[live]]))

    def merged(self, dead: NDArray[np.bool_], overlay_rows: Rows, log: OverlayLog) -> Columns:
        """These columns with the overlay merged in (see `merge_columns`)."""
        return Columns(*merge_columns(
            self.ptr, self.rows, self.vals, dead=dead, overlay_rows=overlay_rows, log=log))

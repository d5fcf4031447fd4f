"""A compact, exact, columnar Aave V3 book: millions of accounts in a few hundred MB.

`PositionBook` (book.py) keeps a mutable slotted object per account (~590 MB per million,
it must apply logs); this read-only form, used for synthetic books and benchmarks, packs
them further. Here an account is a row: its UserConfigurationMap word and e-mode id, and
entries only where a scaled balance is non-zero, sorted by row (CSR). Scaled balances are
uint128 in the tokens (ScaledBalanceTokenBase's `_userState.balance`), so each is kept
exactly as two uint64 limbs. Stable debt (rare, disabled on mainnet) stays in a dict.

`account(row)` rebuilds the exact `Account` that `market.account_data` takes, and
`entries()` gives the float `Entries` the screen (screen.py) is built from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from strategies.aave_v3.market import Account, AccountReserve, Market
from strategies.aave_v3.reserve_config import UserConfig
from strategies.aave_v3.screen_columns import Entries

U64 = NDArray[np.uint64]
_MASK = (1 << 64) - 1
_ZERO = AccountReserve(0, 0, 0, 0, 0)
_TWO64 = float(2**64)


def split(values: Sequence[int]) -> tuple[U64, U64]:
    """Exact uint128 ints as (high, low) uint64 limbs."""
    hi = np.fromiter((v >> 64 for v in values), np.uint64, len(values))
    lo = np.fromiter((v & _MASK for v in values), np.uint64, len(values))
    return hi, lo


def as_float(hi: U64, lo: U64) -> NDArray[np.float64]:
    """float64 of hi*2**64 + lo (each limb rounds once, the sum once: within 2 ulp)."""
    return (hi.astype(np.float64) * _TWO64 + lo.astype(np.float64)).astype(np.float64)


@dataclass
class CompactBook:
    """Exact scaled balances of many accounts, one CSR row per account."""

    market: Market
    users: list[str]
    config: list[int]  # UserConfigurationMap.data per row
    emode: NDArray[np.int64]
    row_ptr: NDArray[np.intp]  # entries of row i: row_ptr[i]:row_ptr[i+1]
    reserve: NDArray[np.int16]  # index into market.reserves
    a_hi: U64
    a_lo: U64
    v_hi: U64
    v_lo: U64
    # row -> reserve index -> (principal, user rate, last updated)
    stable: dict[int, dict[int, tuple[int, int, int]]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.users)

    @property
    def nbytes(self) -> int:
        """Bytes of the numpy columns (not the users, config ints or stable dict)."""
        arrays = (self.emode, self.row_ptr, self.reserve, self.a_hi, self.a_lo, self.v_hi,
                  self.v_lo)
        return sum(a.nbytes for a in arrays)

    @classmethod
    def from_accounts(cls, market: Market, accounts: Iterable[Account]) -> CompactBook:
        users: list[str] = []
        config: list[int] = []
        emode: list[int] = []
        ptr = [0]
        reserve: list[int] = []
        atoken: list[int] = []
        vdebt: list[int] = []
        stable: dict[int, dict[int, tuple[int, int, int]]] = {}
        for row, account in enumerate(accounts):
            users.append(account.user.lower())
            config.append(account.config.data)
            emode.append(account.emode_category)
            for k, r in enumerate(market.reserves):
                b = account.balances.get(r.asset, _ZERO)
                if b.scaled_atoken_balance or b.scaled_variable_debt:
                    reserve.append(k)
                    atoken.append(b.scaled_atoken_balance)
                    vdebt.append(b.scaled_variable_debt)
                if b.stable_principal or b.stable_rate or b.stable_last_updated:
                    stable.setdefault(row, {})[k] = (
                        b.stable_principal, b.stable_rate, b.stable_last_updated)
            ptr.append(len(reserve))
        a_hi, a_lo = split(atoken)
        v_hi, v_lo = split(vdebt)
        return cls(market, users, config, np.array(emode, np.int64), np.array(ptr, np.intp),
                   np.array(reserve, np.int16), a_hi, a_lo, v_hi, v_lo, stable)

    def account(self, row: int) -> Account:
        """The exact `Account` of `row` (every reserve present; absent ones are zero)."""
        reserves = self.market.reserves
        balances = dict.fromkeys((r.asset for r in reserves), _ZERO)
        lo, hi = int(self.row_ptr[row]), int(self.row_ptr[row + 1])
        for i in range(lo, hi):
            k = int(self.reserve[i])
            balances[reserves[k].asset] = AccountReserve(
                (int(self.a_hi[i]) << 64) | int(self.a_lo[i]),
                (int(self.v_hi[i]) << 64) | int(self.v_lo[i]), 0, 0, 0)
        for k, (principal, rate, last) in self.stable.get(row, {}).items():
            b = balances[reserves[k].asset]
            balances[reserves[k].asset] = AccountReserve(
                b.scaled_atoken_balance, b.scaled_variable_debt, principal, rate, last)
        return Account(self.users[row], UserConfig.decode(self.config[row]),
                       int(self.emode[row]), balances)

    def entry_bits(self) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """Per entry: is its reserve collateral / borrowed in the row's configuration?"""
        ids = np.array([r.id for r in self.market.reserves], np.int64)[self.reserve]
        rows = np.repeat(np.arange(len(self.users)), np.diff(self.row_ptr))
        # configurations fit 64 bits for markets of up to 32 reserves; else go bit by bit
        if ids.size and int(ids.max()) < 32:
            words = np.array(self.config, np.uint64)[rows]
            coll = (words >> (2 * ids + 1).astype(np.uint64)) & np.uint64(1)
            borrow = (words >> (2 * ids).astype(np.uint64)) & np.uint64(1)
            return coll.astype(bool), borrow.astype(bool)
        cfg = self.config
        coll_l = [bool(cfg[r] >> (2 * i + 1) & 1) for r, i in zip(rows.tolist(), ids.tolist(),
                                                                    strict=True)]
        borrow_l = [bool(cfg[r] >> (2 * i) & 1) for r, i in zip(rows.tolist(), ids.tolist(),
                                                                  strict=True)]
        return np.array(coll_l, bool), np.array(borrow_l, bool)

    def entries(self) -> Entries:
        """The screen's float `Entries`, with the bits calculateUserAccountData reads."""
        rows = np.repeat(np.arange(len(self.users), dtype=np.intp), np.diff(self.row_ptr))
        k = self.reserve.astype(np.intp)
        coll_bit, borrow_bit = self.entry_bits()
        a = as_float(self.a_hi, self.a_lo)
        v = as_float(self.v_hi, self.v_lo)
        c = coll_bit & (a > 0)
        d = borrow_bit & (v > 0)
        stable = sorted(
            row for row, per in self.stable.items()
            if any(p and (self.config[row] >> (2 * self.market.reserves[k].id) & 1)
                   for k, (p, _, _) in per.items())
        )
        return Entries(self.users, self.emode, rows[c], k[c], a[c], rows[d], k[d], v[d],
                       np.array(stable, np.intp))

"""The size of a take that sells inside itself (mirrors no contract function: a search).

A clipperCall take (MakerKeeper.takeAndSell) pays Clipper from its own sale on the exit
pair, so it needs none of the account's DAI: the strategy chooses its size here and offers
it to ranking at a nominal size of 1 (the engine sizes a candidate within the account's
balance of its debt token, which such a take never touches). Its surplus (the sale's DAI
over what the take owes) is concave in the size over the partial takes Clipper allows
(those leaving at least `chost`): a constant price per gem bought, a pool output that
grows ever slower. The whole tab, the other size Clipper allows, is valued on its own.
"""

from __future__ import annotations

from collections.abc import Callable

from strategies.maker.math import RAY


def best_size(value: Callable[[int], int], hi: int) -> tuple[int, int]:
    """(size, value) of the best size in [1, hi]: an integer ternary search on a concave
    `value`, compared with `hi`; (0, 0) when no size is worth anything."""
    if hi < 1:
        return 0, 0
    lo, top = 1, hi
    while top - lo > 2:
        third = (top - lo) // 3
        left, right = lo + third, top - third
        if value(left) < value(right):
            lo = left + 1
        else:
            top = right - 1 if value(left) > value(right) else right
    tried = {*range(lo, top + 1), hi}
    size = max(sorted(tried), key=value)
    worth = value(size)
    return (size, worth) if worth > 0 else (0, 0)


MAX_AMT = 2**256 - 1


def take_amt(repay: int, tab: int, price: int) -> int:
    """Clipper.take's `amt` [wad] for paying `repay` DAI [wad] at `price` [ray]: what that
    buys, or, for the whole tab, every gem (take buys min(lot, amt) and owes at most tab;
    the DAI's worth rounded down would owe a hair under tab, which take turns into the
    partial leaving chost)."""
    return MAX_AMT if repay * RAY >= tab else repay * RAY // price

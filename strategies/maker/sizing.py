"""The size of a take that sells inside itself (mirrors no contract function: a search).

A clipperCall take (MakerKeeper.takeAndSell) pays Clipper from its own sale on the exit
pair, so it needs none of the account's DAI: the strategy chooses its size here and offers
it to ranking at a nominal size of 1 (the engine sizes a candidate within the account's
balance of its debt token, which such a take never touches). Its surplus (the sale's DAI
over what the take owes) is concave in the size between Clipper's `chost` steps: a
constant price per gem bought, a pool output that grows ever slower.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


def best_size(value: Callable[[int], int], hi: int, also: Iterable[int] = ()) -> tuple[int, int]:
    """(size, value) of the best size in [1, hi]: an integer ternary search on a concave
    `value`, compared with `hi` and the sizes `also` (where Clipper's chost rule makes a
    step); (0, 0) when no size is worth anything."""
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
    tried = {*range(lo, top + 1), hi, *(s for s in also if 1 <= s <= hi)}
    size = max(sorted(tried), key=value)
    worth = value(size)
    return (size, worth) if worth > 0 else (0, 0)

"""The size search of ranking: the argmax of an integer-concave function in few evaluations.

Swap output is concave in size, so `search_max` first asks whether the function still rises
over the top sliver of the range (f(upper) > f(upper - upper >> TOP_SLIVER_SHIFT)): a concave
function that does peaks within that sliver, and the upper bound is taken after two
evaluations (in a crash most liquidations are capped by the close factor, not by the pool's
depth; the full search took 40-80 evaluations each, a quarter of the daemon's CPU in the race
benchmark, ahead of the later waves' sends). What the top can leave below the peak is less
than what resizing by the sliver gains. Otherwise it evaluates the upper bound and a geometric
ladder below it (upper/2 … upper/1024), then narrows the bracket around the best rung by
golden-section search on integers, and finishes exhaustively once the bracket is a few units
wide, within a budget of evaluations (`MAX_EVALUATIONS` per candidate in ranking).
"""

from __future__ import annotations

from collections.abc import Callable

MAX_EVALUATIONS = 80
# The top sliver: 1/65536 of the range. A unit or a few are not enough: repaying one unit
# less can be worth as much (every amount is rounded down along the way).
TOP_SLIVER_SHIFT = 16
LADDER_STEPS = 10  # max_repay >> 1 … max_repay >> 10
_EXHAUSTIVE_WIDTH = 3  # brackets this narrow are evaluated point by point
# 1/phi as an exact ratio, for integer golden-section steps.
_INV_PHI_NUM, _INV_PHI_DEN = 618_033_988_749, 1_000_000_000_000


def search_max(
    f: Callable[[int], int], upper: int, *, budget: int = MAX_EVALUATIONS
) -> tuple[int, int]:
    """(argmax, evaluations) of an integer-concave `f` on [1, upper] with at most `budget` calls.

    `upper` when f rises over the top sliver (module docstring); else evaluates `upper` and
    the ladder upper >> 1 … upper >> LADDER_STEPS, brackets the best rung by its neighbours,
    then golden-section search; the best point ever seen wins.
    """
    if upper < 1:
        raise ValueError("upper must be at least 1")
    if budget < LADDER_STEPS + 1 + _EXHAUSTIVE_WIDTH + 1:
        raise ValueError(f"budget must be at least {LADDER_STEPS + _EXHAUSTIVE_WIDTH + 2}")
    seen: dict[int, int] = {}

    def ev(x: int) -> int:
        if x not in seen:
            seen[x] = f(x)
        return seen[x]

    sliver, probes = upper >> TOP_SLIVER_SHIFT, 0
    if sliver > 0:
        top, probes = ev(upper), 1
        if top > f(upper - sliver):  # kept out of `seen`: a full search goes on as without
            return upper, 2
    ladder = sorted({upper >> k for k in range(LADDER_STEPS + 1)} - {0})
    for x in ladder:
        ev(x)
    i = max(range(len(ladder)), key=lambda j: (seen[ladder[j]], -ladder[j]))
    lo = ladder[i - 1] if i > 0 else 1
    hi = ladder[i + 1] if i + 1 < len(ladder) else upper
    reserve = _EXHAUSTIVE_WIDTH + 1

    def inner(lo: int, hi: int) -> tuple[int, int]:
        step = (hi - lo) * _INV_PHI_NUM // _INV_PHI_DEN
        return hi - step, lo + step

    x1, x2 = inner(lo, hi)
    while hi - lo > _EXHAUSTIVE_WIDTH and len(seen) + probes + 2 <= budget - reserve:
        x1, x2 = min(max(x1, lo + 1), hi - 2), max(min(x2, hi - 1), lo + 2)
        if x1 >= x2:
            x1, x2 = inner(lo, hi)
            x1, x2 = min(x1, x2 - 1), max(x2, x1 + 1)
        if ev(x1) >= ev(x2):  # the maximum is in [lo, x2]
            hi, x2 = x2, x1
            x1 = hi - (hi - lo) * _INV_PHI_NUM // _INV_PHI_DEN
        else:  # the maximum is in [x1, hi]
            lo, x1 = x1, x2
            x2 = lo + (hi - lo) * _INV_PHI_NUM // _INV_PHI_DEN
    if hi - lo <= _EXHAUSTIVE_WIDTH:
        for x in range(lo, hi + 1):
            ev(x)
    best = max(seen, key=lambda x: (seen[x], -x))
    return best, len(seen) + probes

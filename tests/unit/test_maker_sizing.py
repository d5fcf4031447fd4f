"""Sizing Maker takes: sizing.best_size (the peak of a concave value, and its edges) and
sizing.take_amt (the whole tab bought whole)."""

from __future__ import annotations

from strategies.maker import math
from strategies.maker.math import RAD, RAY
from strategies.maker.sizing import best_size, take_amt


def test_finds_the_peak_of_a_concave_value() -> None:
    for peak in (1, 2, 3, 17, 500, 999, 1000):

        def value(x: int, p: int = peak) -> int:
            return -((x - p) ** 2) + 10**7

        assert best_size(value, 1000) == (peak, 10**7)


def test_the_upper_end_is_compared() -> None:
    # Concave with a peak at 300, and a jump at the upper end: the end wins.
    def value(x: int) -> int:
        return 5000 if x == 1000 else 1000 - abs(x - 300)

    assert best_size(value, 999) == (300, 1000)
    assert best_size(value, 1000) == (1000, 5000)


def test_nothing_worth_taking() -> None:
    assert best_size(lambda x: -x, 100) == (0, 0)
    assert best_size(lambda x: 5, 0) == (0, 0)
    assert best_size(lambda x: x, 1) == (1, 1)


def test_the_whole_tab_is_bought_whole() -> None:
    """A tab just above chost (a dusty remainder): its DAI's worth of gems, rounded down,
    owes a hair under tab, which Clipper.take turns into the partial leaving chost; the
    strategy's amt for the whole tab buys it all."""
    chost = 105 * RAD
    tab, lot, price = chost + 10**30, 10**18, 1_393 * RAY + 123_456_789
    whole = -(-tab // RAY)
    floor = math.take_amounts(tab, lot, whole * RAY // price, price, chost)
    assert floor is not None and floor[1] == tab - chost  # the old sizing's tiny take
    amounts = math.take_amounts(tab, lot, take_amt(whole, tab, price), price, chost)
    assert amounts is not None and amounts[1] == tab and amounts[0] == tab // price
    assert take_amt(whole - 1, tab, price) == (whole - 1) * RAY // price

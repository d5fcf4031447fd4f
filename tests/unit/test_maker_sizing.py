"""strategies/maker/sizing.best_size: the peak of a concave value, its steps and edges."""

from __future__ import annotations

from strategies.maker.sizing import best_size


def test_finds_the_peak_of_a_concave_value() -> None:
    for peak in (1, 2, 3, 17, 500, 999, 1000):

        def value(x: int, p: int = peak) -> int:
            return -((x - p) ** 2) + 10**7

        assert best_size(value, 1000) == (peak, 10**7)


def test_a_step_outside_the_concave_part_is_compared() -> None:
    # Concave up to 600, then a jump at 800 (a chost step): the step wins.
    def value(x: int) -> int:
        return 5000 if x == 800 else 1000 - abs(x - 300)

    assert best_size(value, 1000) == (300, 1000)
    assert best_size(value, 1000, also=[800]) == (800, 5000)


def test_nothing_worth_taking() -> None:
    assert best_size(lambda x: -x, 100) == (0, 0)
    assert best_size(lambda x: 5, 0) == (0, 0)
    assert best_size(lambda x: x, 1) == (1, 1)

"""Every test module's basename is unique: pytest imports them by basename (no packages
under tests/unit and tests/integration), and a second module of one name stops a clean run
at collection ("import file mismatch"), as it did twice in a fresh clone's CI."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_basenames_are_unique() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []

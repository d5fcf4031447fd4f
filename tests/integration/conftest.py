"""Fixtures shared by integration test modules (the devnet's own are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keeper.execution.journal import Journal


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """An empty send journal in the test's own folder, closed after the test."""
    opened = Journal(tmp_path / "journal.sqlite")
    try:
        yield opened
    finally:
        opened.close()

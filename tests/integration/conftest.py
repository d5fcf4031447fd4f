"""Fixtures shared by integration test modules (the devnet's own are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keeper.execution.journal import Journal
from tests.conftest import Devnet, rolled_back
from tests.integration.maker_devnet import maker_devnet


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """An empty send journal in the test's own folder, closed after the test."""
    opened = Journal(tmp_path / "journal.sqlite")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module")
def maker_session() -> Iterator[Devnet]:
    """The Maker devnet profile, one anvil per test module that asks for `maker`."""
    with maker_devnet() as devnet:
        yield devnet


@pytest.fixture
def maker(maker_session: Devnet) -> Iterator[Devnet]:
    """The module's Maker devnet, rolled back after the test."""
    with rolled_back(maker_session):
        yield maker_session

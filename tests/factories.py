"""Typed values for unit tests: a `Candidate` with plain defaults, for the `Opportunity`
values that tests build by hand (ranking builds them from candidates in the product)."""

from __future__ import annotations

from dataclasses import replace

from keeper.types import Candidate

ZERO = "0x" + "00" * 20


def candidate(**changes: object) -> Candidate:
    """A candidate that seizes one collateral unit per debt unit repaid."""
    base = Candidate(
        strategy="aave_v3", account=ZERO, collateral=ZERO, debt=ZERO, max_repay=10**18,
        health_factor=9 * 10**17, key="test", seize=lambda repay: repay, gas_limit=100_000,
        spender=ZERO,
    )
    return replace(base, **changes)  # type: ignore[arg-type]

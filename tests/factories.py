"""Typed values for unit tests: a `Candidate` with plain defaults, for the `Opportunity`
values that tests build by hand (ranking builds them from candidates in the product)."""

from __future__ import annotations

from collections.abc import Callable

from keeper.types import Candidate

ZERO = "0x" + "00" * 20


def candidate(fee: Callable[[int], int] | None = None) -> Candidate:
    """A candidate that seizes one collateral unit per debt unit repaid (`fee`: funded by a
    flash loan with that fee, as the dispatcher's sizing marks it)."""
    return Candidate(
        strategy="aave_v3", account=ZERO, collateral=ZERO, debt=ZERO, max_repay=10**18,
        health_factor=9 * 10**17, key="test", seize=lambda repay: repay, gas_limit=100_000,
        spender=ZERO, fee=fee,
    )

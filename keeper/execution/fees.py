"""EIP-1559 fee pricing: first offer, replacement bumps and the next block's base fee.

`next_base_fee` mirrors the base fee rule of EIP-1559 (go-ethereum
`consensus/misc/eip1559.CalcBaseFee`): elasticity multiplier 2, change
denominator 8, integer division in the same order, and an increase of at
least 1 wei when a block is over target.

`FeePolicy` never offers more than its `max_fee_per_gas` cap. A replacement
(`bump`) raises both fields by more than 12.5 %, the strictest replacement
rule among common clients (geth asks 10 %), so no node answers "replacement
transaction underpriced"; it is also capped so that the most the transaction
could cost (`max_fee_per_gas * gas_limit`) never exceeds the profit it is for.
"""

from __future__ import annotations

from dataclasses import dataclass

ELASTICITY_MULTIPLIER = 2
BASE_FEE_MAX_CHANGE_DENOMINATOR = 8
# A replacement must offer more than old * 9 / 8 (12.5 %) on both fee fields.
BUMP_NUMERATOR = 9
BUMP_DENOMINATOR = 8

Fees = tuple[int, int]
"""(max_fee_per_gas, max_priority_fee_per_gas), in wei."""


def next_base_fee(parent_base_fee: int, gas_used: int, gas_limit: int) -> int:
    """The base fee of the block after a parent with this base fee, gas used and gas limit.

    Mirrors EIP-1559's `expected_base_fee_per_gas` (go-ethereum `CalcBaseFee`
    for a non-fork block).
    """
    if parent_base_fee < 0 or gas_used < 0 or gas_limit < 0:
        raise ValueError("base fee, gas used and gas limit must not be negative")
    gas_target = gas_limit // ELASTICITY_MULTIPLIER
    if gas_target == 0:
        raise ValueError(f"gas limit {gas_limit} gives a gas target of 0")
    if gas_used == gas_target:
        return parent_base_fee
    if gas_used > gas_target:
        delta = max(
            parent_base_fee
            * (gas_used - gas_target)
            // gas_target
            // BASE_FEE_MAX_CHANGE_DENOMINATOR,
            1,
        )
        return parent_base_fee + delta
    delta = (
        parent_base_fee * (gas_target - gas_used) // gas_target // BASE_FEE_MAX_CHANGE_DENOMINATOR
    )
    return parent_base_fee - delta


def min_replacement(previous: int) -> int:
    """The least fee that beats `previous` by more than 12.5 %: ceil(previous * 9/8) + 1."""
    return -(-previous * BUMP_NUMERATOR // BUMP_DENOMINATOR) + 1


@dataclass(frozen=True, slots=True)
class FeePolicy:
    """The keeper's fee limits: a hard cap on max fee per gas and the priority fee (tip) it pays."""

    max_fee_per_gas: int
    priority_fee: int

    def __post_init__(self) -> None:
        if self.max_fee_per_gas <= 0:
            raise ValueError(f"max_fee_per_gas must be positive, got {self.max_fee_per_gas}")
        if self.priority_fee < 0:
            raise ValueError(f"priority_fee must not be negative, got {self.priority_fee}")

    def fees(self, next_base_fee: int) -> Fees | None:
        """The first offer at this base fee, or None if the base fee alone is above the cap.

        max fee = min(cap, 2 * base fee + tip), so the offer survives about six
        full blocks of base fee growth; tip = min(tip, cap).
        """
        if next_base_fee < 0:
            raise ValueError(f"base fee must not be negative, got {next_base_fee}")
        cap = self.max_fee_per_gas
        if next_base_fee > cap:
            return None
        return min(cap, 2 * next_base_fee + self.priority_fee), min(self.priority_fee, cap)

    def bump(
        self, previous: Fees, next_base_fee: int, profit_cap_wei: int, gas_limit: int
    ) -> Fees | None:
        """Fees for a replacement of a transaction sent with `previous`, or None if none is valid.

        Both fields rise to at least `min_replacement` of their old value; the
        tip rises to the policy's tip if that is higher, and the max fee to
        2 * base fee + tip if that is higher. The max fee is then capped by the
        policy cap and by `profit_cap_wei // gas_limit`. None when the capped
        max fee is below the required bump or below `next_base_fee` (the
        replacement could not be included), or when the tip cannot be bumped
        without exceeding the max fee.
        """
        old_max, old_tip = previous
        if old_max < 0 or old_tip < 0 or next_base_fee < 0:
            raise ValueError("fees and base fee must not be negative")
        if gas_limit <= 0:
            raise ValueError(f"gas_limit must be positive, got {gas_limit}")
        ceiling = min(self.max_fee_per_gas, max(profit_cap_wei, 0) // gas_limit)
        need_max = min_replacement(old_max)
        need_tip = min_replacement(old_tip)
        tip = max(need_tip, self.priority_fee)
        max_fee = min(max(need_max, 2 * next_base_fee + tip), ceiling)
        if max_fee < need_max or max_fee < next_base_fee:
            return None
        tip = min(tip, max_fee)
        if tip < need_tip:
            return None
        return max_fee, tip

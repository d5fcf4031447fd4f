"""keeper.execution.intents.GasBook: flash gas learned from receipts net of the swaps' own
gas (ranking adds the gas of each exit it values, issue 17), and a batch's saving."""

from __future__ import annotations

from keeper.execution.flash_route import FLASH_GAS_OVERHEAD
from keeper.execution.intents import GasBook
from keeper.types import Opportunity, Outcome, SwapLeg
from tests.factories import candidate

EXIT = SwapLeg("0x" + "11" * 20, "0xa", "0xb", 10, 9, venue="uniswap_v3", gas=160_000)
SALE = SwapLeg("0x" + "22" * 20, "0xb", "0xc", 3, 2, gas=80_000)


def opportunity(key: str, gas_limit: int) -> Opportunity:
    c = candidate(fee=lambda repay: 0)
    return Opportunity(
        strategy=c.strategy, key=key, account=c.account, collateral=c.collateral, debt=c.debt,
        debt_to_cover=1, collateral_received=1, gross_value=0, slippage=0, gas_limit=gas_limit,
        gas_cost=0, net_profit=0, quote_token="0xc", health_factor=c.health_factor, block=1,
        candidate=c, swap=EXIT, profit_swap=SALE)


def test_a_receipt_teaches_the_gas_net_of_its_swaps() -> None:
    book = GasBook()
    assert book.gas_for("aave_v3", 300_000) == 300_000 + FLASH_GAS_OVERHEAD  # a first guess
    book.learn((opportunity("a", 800_000),), Outcome("a", "confirmed", gas_used=700_000))
    # 700,000 used, of which the V3 exit's 160,000 and the sale's 80,000: ranking adds
    # those of whichever exit it values next.
    assert book.gas_for("aave_v3", 300_000) == 460_000
    book.learn((opportunity("b", 800_000),), Outcome("b", "reverted", gas_used=900_000))
    assert book.gas_for("aave_v3", 300_000) == 460_000  # only confirmed receipts teach


def test_a_batch_saving_is_against_the_members_ranked_gas_swaps_included() -> None:
    book = GasBook()
    batch = (opportunity("a", 700_000), opportunity("b", 700_000), opportunity("c", 700_000))
    book.learn(batch, Outcome("a", "confirmed", gas_used=1_500_000))
    assert book.batch_saving == (3 * 700_000 - 1_500_000) // 2


def test_a_batch_that_used_little_teaches_at_most_half_its_smallest_members_gas() -> None:
    """Members skipped on chain (taken before it) make a batch use far less than any full
    one: the saving it teaches is capped, so no later batch is priced at zero gas."""
    book = GasBook()
    batch = (opportunity("a", 700_000), opportunity("b", 400_000), opportunity("c", 700_000))
    book.learn(batch, Outcome("a", "confirmed", gas_used=200_000))
    assert book.batch_saving == 200_000

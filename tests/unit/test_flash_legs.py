"""The strategies' flash legs: what each protocol hands the flash executor (no chain).

Each strategy encodes its own `FlashLeg` (keeper/execution knows no protocol):
its protocol number must be the contract's `Protocol` enum value, its fields
what that protocol's liquidate call takes, and its own checks refuse what the
protocol or the plan would reject.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from eth_abi.abi import decode

from keeper.deploy_executor import source_dir
from keeper.execution.flash import PLAN_TYPE, FlashPlan, Funding, encode_execute
from keeper.types import FlashLeg
from strategies.aave_v3.flash_leg import AAVE_V3, NO_MARKET, aave_flash_leg
from strategies.morpho_blue.flash_leg import MORPHO_BLUE, MorphoFlashLegError, morpho_flash_leg
from strategies.morpho_blue.math import MarketParams

WETH = "0x" + "11" * 20
USDC = "0x" + "22" * 20
DAI = "0x" + "33" * 20
BORROWER = "0x" + "44" * 20
WETH_USDC = "0x" + "55" * 20
MARKET = MarketParams(USDC, WETH, "0x" + "77" * 20, "0x" + "88" * 20, 86 * 10**16)


def morpho(
    *, debt: str = USDC, collateral: str = WETH, seized_assets: int = 0,
    repaid_shares: int = 10**12,
) -> FlashLeg:
    return morpho_flash_leg(
        market=MARKET, debt=debt, collateral=collateral, borrower=BORROWER,
        seized_assets=seized_assets, repaid_shares=repaid_shares, max_repay=1_000 * 10**6,
        swap_pairs=[WETH_USDC],
    )


def test_protocol_numbers_are_the_contracts_enum() -> None:
    source = (source_dir() / "FlashLiquidator.sol").read_text()
    match = re.search(r"enum Protocol \{([^}]*)\}", source)
    assert match is not None
    members = [m.strip() for m in match.group(1).split(",")]
    assert members.index("AaveV3") == AAVE_V3
    assert members.index("MorphoBlue") == MORPHO_BLUE


def test_aave_leg_is_a_liquidation_call() -> None:
    leg = aave_flash_leg(collateral=WETH, borrower=BORROWER, debt_to_cover=5_000,
                         swap_pairs=[WETH_USDC], min_out=4_000)
    assert (leg.protocol, leg.amount, leg.repaid_shares, leg.max_repay) == (AAVE_V3, 5_000, 0,
                                                                            5_000)
    assert leg.market == NO_MARKET and leg.swap_pairs == (WETH_USDC,) and leg.min_out == 4_000
    capped = aave_flash_leg(collateral=WETH, borrower=BORROWER, debt_to_cover=5_000,
                            swap_pairs=[WETH_USDC], max_repay=6_000)
    assert capped.max_repay == 6_000


def test_morpho_leg_carries_its_market_params() -> None:
    by_shares = morpho()
    by_assets = morpho(repaid_shares=0, seized_assets=7)
    for leg in (by_shares, by_assets):
        assert leg.protocol == MORPHO_BLUE and leg.collateral == WETH
        assert leg.market == (USDC, WETH, MARKET.oracle, MARKET.irm, MARKET.lltv)
    assert (by_shares.amount, by_shares.repaid_shares) == (0, 10**12)
    assert (by_assets.amount, by_assets.repaid_shares) == (7, 0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"seized_assets": 1}, "exactly one"),
        ({"repaid_shares": 0}, "exactly one"),
        ({"debt": DAI}, "market tokens"),
        ({"collateral": DAI}, "market tokens"),
    ],
)
def test_morpho_legs_morpho_or_the_plan_would_reject_are_refused(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(MorphoFlashLegError, match=message):
        morpho(**overrides)


def test_both_protocols_in_one_plan_encode() -> None:
    aave = aave_flash_leg(collateral=WETH, borrower=BORROWER, debt_to_cover=5_000,
                          swap_pairs=[WETH_USDC])
    plan = FlashPlan(Funding.MORPHO_FLASH_LOAN, USDC, 6_000, (aave, morpho()))
    ((_, _, _, _, liqs, _, _, _),) = decode([PLAN_TYPE], bytes.fromhex(encode_execute(plan)[10:]))
    assert [liq[0] for liq in liqs] == [AAVE_V3, MORPHO_BLUE]

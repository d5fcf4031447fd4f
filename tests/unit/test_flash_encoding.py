"""The flash executor's calldata encoders, fee formulas and error decoding (no chain).

The encoding is checked against web3's own encoding with the compiled ABI
(solcjs from node_modules, served from the compile cache after the first run).
The legs are written out as the strategies encode them (tests/unit/test_flash_legs.py
checks the strategies' own builders): the encoder knows no protocol.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import pytest
from eth_abi.abi import decode, encode
from eth_utils.abi import function_abi_to_4byte_selector
from web3 import Web3

from keeper.deploy_executor import compile_flash_liquidator
from keeper.execution.flash import (
    ERRORS,
    EXECUTE_SELECTOR,
    PLAN_TYPE,
    FlashPlan,
    FlashPlanError,
    Funding,
    aave_flash_premium,
    bid_of,
    decode_error,
    decode_profit,
    encode_execute,
    encode_single,
    flash_fee,
    plan_tuple,
    uniswap_flash_repayment,
)
from keeper.types import FlashLeg

WETH = "0x" + "11" * 20
USDC = "0x" + "22" * 20
BORROWER = "0x" + "44" * 20
WETH_USDC = "0x" + "55" * 20
USDC_DAI = "0x" + "66" * 20
ZERO = "0x" + "00" * 20
ORACLE, IRM = "0x" + "77" * 20, "0x" + "88" * 20
LLTV = 86 * 10**16


AAVE_LEG = FlashLeg(
    protocol=0, collateral=WETH, borrower=BORROWER, amount=5_000 * 10**6, repaid_shares=0,
    max_repay=5_000 * 10**6, market=(ZERO, ZERO, ZERO, ZERO, 0), swap_pairs=(WETH_USDC,),
    min_out=4_000 * 10**6,
)
MORPHO_LEG = FlashLeg(
    protocol=1, collateral=WETH, borrower=BORROWER, amount=0, repaid_shares=10**12,
    max_repay=1_000 * 10**6, market=(USDC, WETH, ORACLE, IRM, LLTV), swap_pairs=(WETH_USDC,),
    min_out=0,
)
PLAN = FlashPlan(
    funding=Funding.MORPHO_FLASH_LOAN, debt_token=USDC, flash_amount=6_000 * 10**6,
    liquidations=(AAVE_LEG, MORPHO_LEG), min_profit=7,
)


def aave_liq(**overrides: Any) -> FlashLeg:
    return replace(AAVE_LEG, **overrides)


def morpho_liq(**overrides: Any) -> FlashLeg:
    return replace(MORPHO_LEG, **overrides)


def batch(**overrides: Any) -> FlashPlan:
    return replace(PLAN, **overrides)


def test_calldata_matches_web3_with_the_compiled_abi() -> None:
    executor = Web3().eth.contract(abi=compile_flash_liquidator().abi)
    for plan in (
        batch(),
        batch(funding=Funding.UNISWAP_V2_FLASH_SWAP, flash_pair=USDC_DAI,
              profit_pairs=(WETH_USDC,)),
        batch(funding=Funding.OWN_BALANCE, flash_amount=0),
    ):
        assert encode_execute(plan) == executor.encode_abi("execute", args=[plan_tuple(plan)])
    abi = compile_flash_liquidator().abi
    (execute,) = [item for item in abi if item.get("name") == "execute"]
    assert "0x" + function_abi_to_4byte_selector(cast(Any, execute)).hex() == EXECUTE_SELECTOR
    abi_errors = {item["name"] for item in abi if item["type"] == "error"}
    assert abi_errors == {name for name, _ in ERRORS.values()}


def test_batch_round_trips_through_the_abi() -> None:
    data = bytes.fromhex(encode_execute(batch())[2:])
    assert data[:4].hex() == EXECUTE_SELECTOR[2:]
    ((funding, debt, amount, flash_pair, liqs, profit_pairs, min_profit, bid_bps),) = decode(
        [PLAN_TYPE], data[4:]
    )
    assert (funding, debt.lower(), amount, min_profit, bid_bps) == (1, USDC, 6_000 * 10**6, 7, 0)
    assert flash_pair == "0x" + "00" * 20 and profit_pairs == ()
    aave, morpho = liqs
    assert aave[0] == 0 and aave[3] == aave[5] == 5_000 * 10**6
    assert aave[6] == ("0x" + "00" * 20,) * 4 + (0,)
    assert aave[8] == 4_000 * 10**6
    assert morpho[0] == 1 and (morpho[3], morpho[4]) == (0, 10**12)
    assert [a.lower() for a in morpho[6][:4]] == [USDC, WETH, ORACLE, IRM]
    assert morpho[6][4] == LLTV
    assert [p.lower() for p in morpho[7]] == [WETH_USDC]


def test_single_is_a_plan_of_one() -> None:
    single = encode_single(aave_liq(), funding=Funding.AAVE_FLASH_LOAN, debt_token=USDC,
                           flash_amount=5_000 * 10**6)
    plan = FlashPlan(Funding.AAVE_FLASH_LOAN, USDC, 5_000 * 10**6, (aave_liq(),))
    assert single == encode_execute(plan)


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (batch(liquidations=()), "at least one"),
        (batch(liquidations=(aave_liq(collateral=USDC),)), "same token"),
        (batch(liquidations=(aave_liq(swap_pairs=()),)), "swap_pairs is empty"),
        (batch(liquidations=(aave_liq(protocol=256),)), "not a uint8"),
        (batch(liquidations=(aave_liq(protocol=-1),)), "not a uint8"),
        (batch(liquidations=(morpho_liq(market=(USDC, WETH, "0x12", IRM, LLTV)),)),
         r"market\[2\]: not an address"),
        (batch(liquidations=(morpho_liq(market=(USDC, WETH, ORACLE, IRM, 2**256)),)),
         r"market\[4\]: .* uint256"),
        (batch(liquidations=(morpho_liq(market=(USDC, WETH, ORACLE, IRM)),)), "not 5"),
        (batch(liquidations=(morpho_liq(amount=-1),)), "amount: -1 is not a uint256"),
        (batch(funding=Funding.UNISWAP_V2_FLASH_SWAP), "needs flash_pair"),
        (batch(funding=Funding.UNISWAP_V2_FLASH_SWAP, flash_pair=WETH_USDC), "locked"),
        (batch(funding=Funding.UNISWAP_V3_FLASH), "needs flash_pair"),
        (batch(funding=Funding.UNISWAP_V3_FLASH, flash_pair=WETH_USDC), "locked"),
        (batch(flash_pair=USDC_DAI), "only for the Uniswap"),
        (batch(flash_amount=0), "flash_amount > 0"),
        (batch(min_profit=-1), "uint256"),
        (batch(bid_bps=10_001), "bid_bps"),
        (batch(bid_bps=-1), "bid_bps"),
        (batch(liquidations=(aave_liq(borrower="0x1234"),)), "not an address"),
    ],
)
def test_plans_the_contract_would_reject_are_refused(plan: FlashPlan, message: str) -> None:
    with pytest.raises(FlashPlanError, match=message):
        encode_execute(plan)


@pytest.mark.parametrize("amount", [1, 996, 997, 10**6, 123_456_789_012, 10**30 + 7])
def test_uniswap_flash_repayment_is_the_least_the_pair_accepts(amount: int) -> None:
    repaid = uniswap_flash_repayment(amount)
    # UniswapV2Pair.swap's K check, with only this token moved: 997 * in >= 1000 * out.
    assert 997 * repaid >= 1000 * amount
    assert 997 * (repaid - 1) < 1000 * amount


def test_flash_fees() -> None:
    assert aave_flash_premium(10_000 * 10**6, 9) == 9 * 10**6
    assert aave_flash_premium(5_555, 9) == 5  # percentMul rounds half up: 4.9995 -> 5
    assert flash_fee(batch()) == 0
    assert flash_fee(batch(funding=Funding.OWN_BALANCE)) == 0
    assert flash_fee(batch(funding=Funding.AAVE_FLASH_LOAN), aave_premium_bps=9) == 5_400_000
    uni = batch(funding=Funding.UNISWAP_V2_FLASH_SWAP, flash_pair=USDC_DAI)
    assert flash_fee(uni) == uniswap_flash_repayment(6_000 * 10**6) - 6_000 * 10**6


def test_return_and_revert_data_decode() -> None:
    assert decode_profit("0x" + encode(["uint256"], [12345]).hex()) == 12345
    selector = next(s for s, (name, _) in ERRORS.items() if name == "MinOut")
    data = selector + encode(["uint256", "uint256", "uint256"], [2, 10, 11]).hex()
    assert decode_error(data) == ("MinOut", (2, 10, 11))
    not_owner = next(s for s, (name, _) in ERRORS.items() if name == "NotOwner")
    assert decode_error(not_owner) == ("NotOwner", ())
    assert decode_error("0x08c379a0" + "00" * 64) is None  # Error(string) is not ours


def test_bid_is_the_share_of_the_surplus_over_the_minimum() -> None:
    assert bid_of(1_000, 400, 9_500) == 570  # (1000 - 400) * 0.95
    assert bid_of(1_000, 400, 0) == 0 and bid_of(400, 400, 9_500) == 0
    assert bid_of(399, 400, 9_500) == 0  # the contract reverts ProfitTooLow first
    assert bid_of(1_001, 0, 3_333) == 333  # rounded down, as Solidity's division
    data = bytes.fromhex(encode_execute(batch(bid_bps=9_500))[2:])
    assert decode([PLAN_TYPE], data[4:])[0][7] == 9_500

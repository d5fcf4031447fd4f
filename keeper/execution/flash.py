"""The flash-liquidation executor contract's calldata: plans, fees, return and revert data.

`contracts/executor/FlashLiquidator.sol` liquidates Aave V3 and Morpho Blue
positions without holding the debt asset. One `execute(Plan)` call is one
plan: one debt token, one funding source, and N liquidations of that debt
token, carried out inside one flash loan:

- **Funding** (`Funding`): a Morpho Blue flash loan (free), an Aave V3
  `flashLoanSimple` (premium `FLASHLOAN_PREMIUM_TOTAL`), a Uniswap V2 flash
  swap repaid in the same token (0.3 %), a Uniswap V3 pool's `flash` (its fee
  tier, rounded up), or the contract's own balance.
- **Action** per `Liquidation` (a `keeper.types.FlashLeg`, encoded by its
  strategy: Aave `liquidationCall(..., receiveAToken=false)` or Morpho
  `liquidate(market, borrower, seizedAssets, repaidShares, "")`); the protocol
  is approved exactly `max_repay` of the debt token and the allowance is reset
  afterwards.
- **Exit**: all the collateral seized is sold straight through the listed
  Uniswap V2 pairs and V3 pools (no router) into the debt token, with a per-liquidation
  `min_out`; the lender is repaid; the surplus (optionally sold along
  `profit_pairs` into another token) must reach `min_profit`; with `bid_bps`
  the contract pays `block.coinbase` (surplus - min_profit) * bid_bps / 10,000
  in ether out of it (a builder's bid: `bid_of`), and sends the rest to the
  owner. `execute` returns what the owner got, so an `eth_call` of the same
  transaction is the simulation.

The encoders here are pure (no I/O) and know no protocol: they pack the legs
the strategies encoded and refuse what the contract would reject whatever the
protocol (bad addresses or uints, collateral equal to the debt token, nothing
to sell along, the lending pair on a swap path). Building and deploying the
contract is `keeper.deploy_executor`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak

from keeper.errors import FatalError
from keeper.types import FlashLeg

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
BPS = 10_000
BID_PAID_TOPIC = "0x" + keccak(text="BidPaid(address,address,uint256)").hex()

MARKET_TYPE = "(address,address,address,address,uint256)"
LIQUIDATION_TYPE = (
    f"(uint8,address,address,uint256,uint256,uint256,{MARKET_TYPE},address[],uint256)"
)
PLAN_TYPE = f"(uint8,address,uint256,address,{LIQUIDATION_TYPE}[],address[],uint256,uint256)"
EXECUTE_SIGNATURE = f"execute({PLAN_TYPE})"
EXECUTE_SELECTOR = "0x" + keccak(text=EXECUTE_SIGNATURE)[:4].hex()

# Custom errors the contract reverts with: selector -> (name, argument types).
ERRORS: dict[str, tuple[str, tuple[str, ...]]] = {
    "0x" + keccak(text=f"{name}({','.join(args)})")[:4].hex(): (name, args)
    for name, args in (
        ("NotOwner", ()),
        ("NotPendingOwner", ()),
        ("ZeroAddress", ()),
        ("UnexpectedCallback", ()),
        ("BadInitiator", ()),
        ("CallbackNotCalled", ()),
        ("ProtocolNotSet", ()),
        ("BadPlan", ()),
        ("MinOut", ("uint256", "uint256", "uint256")),
        ("ProfitTooLow", ("uint256", "uint256")),
        ("Loss", ("uint256", "uint256")),
        ("TokenCallFailed", ("address",)),
        ("BidUnfunded", ("uint256", "uint256")),
        ("BidFailed", ()),
    )
}


class FlashPlanError(FatalError):
    """A plan the contract would reject."""


class Funding(IntEnum):
    """Where the debt token comes from (the contract's `Funding` enum)."""

    OWN_BALANCE = 0
    MORPHO_FLASH_LOAN = 1
    AAVE_FLASH_LOAN = 2
    UNISWAP_V2_FLASH_SWAP = 3
    UNISWAP_V3_FLASH = 4


# The fundings lent by a pool (`FlashPlan.flash_pair`), which is locked while it lends.
POOL_FUNDING = frozenset({Funding.UNISWAP_V2_FLASH_SWAP, Funding.UNISWAP_V3_FLASH})


@dataclass(frozen=True, slots=True)
class FlashPlan:
    """One `execute` call: funding, the debt token, the liquidations and the profit guard.

    `flash_amount` of `debt_token` is borrowed (ignored for OWN_BALANCE);
    `flash_pair` is the Uniswap V2 pair (UNISWAP_V2_FLASH_SWAP) or V3 pool
    (UNISWAP_V3_FLASH) lending it (it must not appear on any liquidation's swap
    path: the pool is locked during the callback). The profit is the surplus of
    `debt_token`, or, with `profit_pairs`, what selling that surplus along them returns.
    """

    funding: Funding
    debt_token: str
    flash_amount: int
    liquidations: tuple[FlashLeg, ...]
    min_profit: int = 0
    flash_pair: str | None = None
    profit_pairs: tuple[str, ...] = ()
    bid_bps: int = 0  # share of the surplus over min_profit paid to block.coinbase


# ---------------------------------------------------------------------------- encoding


def _address(value: str, what: str) -> str:
    if not is_address(value):
        raise FlashPlanError(f"{what}: not an address: {value!r}")
    return to_checksum_address(value)


def _uint(value: int, what: str) -> int:
    if not 0 <= value < 2**256:
        raise FlashPlanError(f"{what}: {value} is not a uint256")
    return value


def _liquidation_tuple(index: int, leg: FlashLeg, debt: str) -> tuple[Any, ...]:
    what = f"liquidations[{index}]"
    collateral = _address(leg.collateral, f"{what}.collateral")
    if collateral.lower() == debt.lower():
        raise FlashPlanError(f"{what}: collateral and debt are the same token")
    if not leg.swap_pairs:
        raise FlashPlanError(f"{what}: swap_pairs is empty (the collateral must be sold)")
    if not 0 <= leg.protocol < 2**8:
        raise FlashPlanError(f"{what}: protocol {leg.protocol} is not a uint8")
    if len(leg.market) != 5:
        raise FlashPlanError(f"{what}: market has {len(leg.market)} fields, not 5")
    *addresses, lltv = leg.market
    market = (
        *(_address(a, f"{what}.market[{i}]") for i, a in enumerate(addresses)),
        _uint(lltv, f"{what}.market[4]"),
    )
    return (
        leg.protocol,
        collateral,
        _address(leg.borrower, f"{what}.borrower"),
        _uint(leg.amount, f"{what}.amount"),
        _uint(leg.repaid_shares, f"{what}.repaid_shares"),
        _uint(leg.max_repay, f"{what}.max_repay"),
        market,
        [_address(p, f"{what}.swap_pairs") for p in leg.swap_pairs],
        _uint(leg.min_out, f"{what}.min_out"),
    )


def plan_tuple(plan: FlashPlan) -> tuple[Any, ...]:
    """The `Plan` struct as the ABI tuple, after checking what the contract would reject."""
    if not plan.liquidations:
        raise FlashPlanError("a plan needs at least one liquidation")
    debt = _address(plan.debt_token, "debt_token")
    flash_pair = ZERO_ADDRESS
    if plan.funding in POOL_FUNDING:
        if plan.flash_pair is None:
            raise FlashPlanError(f"{plan.funding.name} needs flash_pair")
        flash_pair = _address(plan.flash_pair, "flash_pair")
        for liq in plan.liquidations:
            if flash_pair.lower() in {p.lower() for p in liq.swap_pairs}:
                raise FlashPlanError("flash_pair is locked during the callback: not on a swap path")
    elif plan.flash_pair is not None:
        raise FlashPlanError("flash_pair is only for the Uniswap V2 flash swap or V3 flash")
    if plan.funding != Funding.OWN_BALANCE and plan.flash_amount <= 0:
        raise FlashPlanError("a flash-funded plan needs flash_amount > 0")
    if not 0 <= plan.bid_bps <= BPS:
        raise FlashPlanError(f"bid_bps {plan.bid_bps} is not within [0, {BPS}]")
    return (
        int(plan.funding),
        debt,
        _uint(plan.flash_amount, "flash_amount"),
        flash_pair,
        [_liquidation_tuple(i, liq, debt) for i, liq in enumerate(plan.liquidations)],
        [_address(p, "profit_pairs") for p in plan.profit_pairs],
        _uint(plan.min_profit, "min_profit"),
        plan.bid_bps,
    )


def encode_execute(plan: FlashPlan) -> str:
    """The calldata (0x-hex) of `execute(plan)`: a single liquidation or a batch."""
    return EXECUTE_SELECTOR + encode([PLAN_TYPE], [plan_tuple(plan)]).hex()


def encode_single(
    liquidation: FlashLeg,
    *,
    funding: Funding,
    debt_token: str,
    flash_amount: int,
    min_profit: int = 0,
    flash_pair: str | None = None,
    profit_pairs: Sequence[str] = (),
    bid_bps: int = 0,
) -> str:
    """The calldata of a plan with one liquidation."""
    return encode_execute(
        FlashPlan(
            funding=funding,
            debt_token=debt_token,
            flash_amount=flash_amount,
            liquidations=(liquidation,),
            min_profit=min_profit,
            flash_pair=flash_pair,
            profit_pairs=tuple(profit_pairs),
            bid_bps=bid_bps,
        )
    )


def decode_profit(returned: str | bytes) -> int:
    """The profit `execute` returns (from an eth_call)."""
    raw = bytes.fromhex(returned.removeprefix("0x")) if isinstance(returned, str) else returned
    (profit,) = decode(["uint256"], raw)
    return int(profit)


def bid_of(profit: int, min_profit: int, bid_bps: int) -> int:
    """The bid `execute` pays block.coinbase out of a surplus of `profit`
    (FlashLiquidator.execute, this repository: (profit - minProfit) * bidBps / 10,000)."""
    return (profit - min_profit) * bid_bps // BPS if profit > min_profit else 0


def bid_paid(logs: Sequence[dict[str, Any]], executor: str) -> int:
    """The ether `executor` paid block.coinbase in a receipt's `logs` (its BidPaid events)."""
    total = 0
    for entry in logs:
        topics = [t if isinstance(t, str) else "0x" + bytes(t).hex() for t in entry["topics"]]
        if str(entry["address"]).lower() == executor.lower() and topics and \
                topics[0].lower() == BID_PAID_TOPIC:
            data = entry["data"]
            raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else bytes(data)
            total += int.from_bytes(raw[:32], "big")
    return total


def decode_error(revert_data: str | bytes) -> tuple[str, tuple[Any, ...]] | None:
    """The contract's custom error (name, arguments) in revert data, or None if it is not one."""
    raw = (
        bytes.fromhex(revert_data.removeprefix("0x"))
        if isinstance(revert_data, str)
        else revert_data
    )
    known = ERRORS.get("0x" + raw[:4].hex())
    if known is None:
        return None
    name, types = known
    return name, tuple(decode(list(types), raw[4:])) if types else ()


# ---------------------------------------------------------------------------- fees


def uniswap_flash_repayment(amount: int) -> int:
    """What a Uniswap V2 flash swap of `amount` costs back in the same token (0.3 % fee, ceil)."""
    return (amount * 1000 + 996) // 997


def aave_flash_premium(amount: int, premium_bps: int) -> int:
    """Aave V3's flash premium: `amount.percentMul(FLASHLOAN_PREMIUM_TOTAL)` (half up)."""
    return (amount * premium_bps + 5_000) // 10_000


def uniswap_v3_flash_fee(amount: int, fee_pips: int) -> int:
    """UniswapV3Pool.flash's fee (v3-core 1.0.1): FullMath.mulDivRoundingUp(amount, fee, 1e6)."""
    return -(-amount * fee_pips // 1_000_000)


def flash_fee(plan: FlashPlan, *, aave_premium_bps: int = 0, v3_fee_pips: int = 0) -> int:
    """The funding cost of `plan` in its debt token (Morpho and own balance: free;
    `v3_fee_pips`: the lending V3 pool's fee tier)."""
    if plan.funding == Funding.UNISWAP_V3_FLASH:
        return uniswap_v3_flash_fee(plan.flash_amount, v3_fee_pips)
    if plan.funding == Funding.AAVE_FLASH_LOAN:
        return aave_flash_premium(plan.flash_amount, aave_premium_bps)
    if plan.funding == Funding.UNISWAP_V2_FLASH_SWAP:
        return uniswap_flash_repayment(plan.flash_amount) - plan.flash_amount
    return 0

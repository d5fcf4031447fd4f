"""The flash-liquidation executor contract: its build, its deploy, and its calldata.

`contracts/executor/FlashLiquidator.sol` liquidates Aave V3 and Morpho Blue
positions without holding the debt asset. One `execute(Plan)` call is one
plan: one debt token, one funding source, and N liquidations of that debt
token, carried out inside one flash loan:

- **Funding** (`Funding`): a Morpho Blue flash loan (free), an Aave V3
  `flashLoanSimple` (premium `FLASHLOAN_PREMIUM_TOTAL`), a Uniswap V2 flash
  swap repaid in the same token (0.3 %), or the contract's own balance.
- **Action** per `Liquidation`: Aave `liquidationCall(..., receiveAToken=false)`
  or Morpho `liquidate(market, borrower, seizedAssets, repaidShares, "")`; the
  protocol is approved exactly `max_repay` of the debt token and the
  allowance is reset afterwards.
- **Exit**: all the collateral seized is sold straight through the listed
  Uniswap V2 pairs (no router) into the debt token, with a per-liquidation
  `min_out`; the lender is repaid; the surplus (optionally sold along
  `profit_pairs` into another token) must reach `min_profit`, and is sent to
  the owner. `execute` returns it, so an `eth_call` of the same transaction
  is the simulation.

The encoders here are pure (no I/O) so strategies and ranking can build
intents from them; `deploy_flash_liquidator` is the only function that talks
to a node (set-up code: synchronous web3, as `keeper deploy-executor` uses).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from eth_abi.abi import decode, encode
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexStr
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import TimeExhausted

from keeper.devnet.artifacts import Artifact, compile_solidity
from keeper.errors import FatalError
from keeper.paths import project_root

CONTRACT_NAME = "FlashLiquidator"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
DEPLOY_GAS_MARGIN_PERCENT = 120
RECEIPT_TIMEOUT = 120.0

MARKET_TYPE = "(address,address,address,address,uint256)"
LIQUIDATION_TYPE = (
    f"(uint8,address,address,uint256,uint256,uint256,{MARKET_TYPE},address[],uint256)"
)
PLAN_TYPE = f"(uint8,address,uint256,address,{LIQUIDATION_TYPE}[],address[],uint256)"
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
    )
}


class FlashPlanError(FatalError):
    """A plan the contract would reject (or a failed executor deploy)."""


class Funding(IntEnum):
    """Where the debt token comes from (the contract's `Funding` enum)."""

    OWN_BALANCE = 0
    MORPHO_FLASH_LOAN = 1
    AAVE_FLASH_LOAN = 2
    UNISWAP_V2_FLASH_SWAP = 3


class Protocol(IntEnum):
    """Which lending protocol a liquidation targets (the contract's `Protocol` enum)."""

    AAVE_V3 = 0
    MORPHO_BLUE = 1


@dataclass(frozen=True, slots=True)
class MorphoMarket:
    """Morpho Blue's `MarketParams`, field for field."""

    loan_token: str
    collateral_token: str
    oracle: str
    irm: str
    lltv: int


@dataclass(frozen=True, slots=True)
class Liquidation:
    """One liquidation in a plan, and how its seized collateral is sold.

    `amount` is Aave's `debtToCover`, or Morpho's `seizedAssets` (then
    `repaid_shares` is 0; or the other way round). `max_repay` bounds the debt
    token the protocol may pull (the exact approval). `swap_pairs` are the
    Uniswap V2 pairs from the collateral to the plan's debt token, and
    `min_out` the least debt token that swap must return.
    Build them with `aave_liquidation` / `morpho_liquidation`.
    """

    protocol: Protocol
    collateral: str
    borrower: str
    amount: int
    max_repay: int
    swap_pairs: tuple[str, ...]
    min_out: int = 0
    repaid_shares: int = 0
    market: MorphoMarket | None = None


@dataclass(frozen=True, slots=True)
class FlashPlan:
    """One `execute` call: funding, the debt token, the liquidations and the profit guard.

    `flash_amount` of `debt_token` is borrowed (ignored for OWN_BALANCE);
    `flash_pair` is the Uniswap V2 pair lending it for UNISWAP_V2_FLASH_SWAP
    (it must not appear on any swap path: the pair is locked during the
    callback). The profit is the surplus of `debt_token`, or, with
    `profit_pairs`, what selling that surplus along them returns.
    """

    funding: Funding
    debt_token: str
    flash_amount: int
    liquidations: tuple[Liquidation, ...]
    min_profit: int = 0
    flash_pair: str | None = None
    profit_pairs: tuple[str, ...] = ()


def aave_liquidation(
    *,
    collateral: str,
    borrower: str,
    debt_to_cover: int,
    swap_pairs: Sequence[str],
    min_out: int = 0,
    max_repay: int | None = None,
) -> Liquidation:
    """An Aave V3 `liquidationCall`; `max_repay` defaults to `debt_to_cover`."""
    return Liquidation(
        protocol=Protocol.AAVE_V3,
        collateral=collateral,
        borrower=borrower,
        amount=debt_to_cover,
        max_repay=debt_to_cover if max_repay is None else max_repay,
        swap_pairs=tuple(swap_pairs),
        min_out=min_out,
    )


def morpho_liquidation(
    *,
    market: MorphoMarket,
    borrower: str,
    max_repay: int,
    swap_pairs: Sequence[str],
    seized_assets: int = 0,
    repaid_shares: int = 0,
    min_out: int = 0,
) -> Liquidation:
    """A Morpho Blue `liquidate` by seized assets or by repaid shares (exactly one non-zero)."""
    return Liquidation(
        protocol=Protocol.MORPHO_BLUE,
        collateral=market.collateral_token,
        borrower=borrower,
        amount=seized_assets,
        max_repay=max_repay,
        swap_pairs=tuple(swap_pairs),
        min_out=min_out,
        repaid_shares=repaid_shares,
        market=market,
    )


# ---------------------------------------------------------------------------- encoding


def _address(value: str, what: str) -> str:
    if not is_address(value):
        raise FlashPlanError(f"{what}: not an address: {value!r}")
    return to_checksum_address(value)


def _uint(value: int, what: str) -> int:
    if not 0 <= value < 2**256:
        raise FlashPlanError(f"{what}: {value} is not a uint256")
    return value


def _liquidation_tuple(index: int, liq: Liquidation, debt: str) -> tuple[Any, ...]:
    what = f"liquidations[{index}]"
    collateral = _address(liq.collateral, f"{what}.collateral")
    if collateral.lower() == debt.lower():
        raise FlashPlanError(f"{what}: collateral and debt are the same token")
    if not liq.swap_pairs:
        raise FlashPlanError(f"{what}: swap_pairs is empty (the collateral must be sold)")
    if liq.protocol == Protocol.AAVE_V3:
        if liq.market is not None or liq.repaid_shares:
            raise FlashPlanError(f"{what}: an Aave liquidation has no market nor repaid_shares")
        market: tuple[Any, ...] = (ZERO_ADDRESS, ZERO_ADDRESS, ZERO_ADDRESS, ZERO_ADDRESS, 0)
    else:
        m = liq.market
        if m is None:
            raise FlashPlanError(f"{what}: a Morpho liquidation needs its market")
        if m.loan_token.lower() != debt.lower() or m.collateral_token.lower() != collateral.lower():
            raise FlashPlanError(f"{what}: market tokens do not match the plan's debt/collateral")
        if (liq.amount == 0) == (liq.repaid_shares == 0):
            raise FlashPlanError(f"{what}: exactly one of seized_assets, repaid_shares must be set")
        market = (
            _address(m.loan_token, f"{what}.market.loan_token"),
            _address(m.collateral_token, f"{what}.market.collateral_token"),
            _address(m.oracle, f"{what}.market.oracle"),
            _address(m.irm, f"{what}.market.irm"),
            _uint(m.lltv, f"{what}.market.lltv"),
        )
    return (
        int(liq.protocol),
        collateral,
        _address(liq.borrower, f"{what}.borrower"),
        _uint(liq.amount, f"{what}.amount"),
        _uint(liq.repaid_shares, f"{what}.repaid_shares"),
        _uint(liq.max_repay, f"{what}.max_repay"),
        market,
        [_address(p, f"{what}.swap_pairs") for p in liq.swap_pairs],
        _uint(liq.min_out, f"{what}.min_out"),
    )


def plan_tuple(plan: FlashPlan) -> tuple[Any, ...]:
    """The `Plan` struct as the ABI tuple, after checking what the contract would reject."""
    if not plan.liquidations:
        raise FlashPlanError("a plan needs at least one liquidation")
    debt = _address(plan.debt_token, "debt_token")
    flash_pair = ZERO_ADDRESS
    if plan.funding == Funding.UNISWAP_V2_FLASH_SWAP:
        if plan.flash_pair is None:
            raise FlashPlanError("a Uniswap V2 flash swap needs flash_pair")
        flash_pair = _address(plan.flash_pair, "flash_pair")
        for liq in plan.liquidations:
            if flash_pair.lower() in {p.lower() for p in liq.swap_pairs}:
                raise FlashPlanError("flash_pair is locked during the callback: not on a swap path")
    elif plan.flash_pair is not None:
        raise FlashPlanError("flash_pair is only for the Uniswap V2 flash swap")
    if plan.funding != Funding.OWN_BALANCE and plan.flash_amount <= 0:
        raise FlashPlanError("a flash-funded plan needs flash_amount > 0")
    return (
        int(plan.funding),
        debt,
        _uint(plan.flash_amount, "flash_amount"),
        flash_pair,
        [_liquidation_tuple(i, liq, debt) for i, liq in enumerate(plan.liquidations)],
        [_address(p, "profit_pairs") for p in plan.profit_pairs],
        _uint(plan.min_profit, "min_profit"),
    )


def encode_execute(plan: FlashPlan) -> str:
    """The calldata (0x-hex) of `execute(plan)`: a single liquidation or a batch."""
    return EXECUTE_SELECTOR + encode([PLAN_TYPE], [plan_tuple(plan)]).hex()


def encode_single(
    liquidation: Liquidation,
    *,
    funding: Funding,
    debt_token: str,
    flash_amount: int,
    min_profit: int = 0,
    flash_pair: str | None = None,
    profit_pairs: Sequence[str] = (),
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
        )
    )


def decode_profit(returned: str | bytes) -> int:
    """The profit `execute` returns (from an eth_call)."""
    raw = bytes.fromhex(returned.removeprefix("0x")) if isinstance(returned, str) else returned
    (profit,) = decode(["uint256"], raw)
    return int(profit)


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


def flash_fee(plan: FlashPlan, *, aave_premium_bps: int = 0) -> int:
    """The funding cost of `plan` in its debt token (Morpho and own balance: free)."""
    if plan.funding == Funding.AAVE_FLASH_LOAN:
        return aave_flash_premium(plan.flash_amount, aave_premium_bps)
    if plan.funding == Funding.UNISWAP_V2_FLASH_SWAP:
        return uniswap_flash_repayment(plan.flash_amount) - plan.flash_amount
    return 0


# ---------------------------------------------------------------------------- build & deploy


def source_dir() -> Path:
    """`contracts/executor`: FlashLiquidator.sol and the interfaces it imports."""
    return project_root() / "contracts" / "executor"


def sources() -> dict[str, Path]:
    """The executor's Solidity sources by source-unit name."""
    return {p.name: p for p in sorted(source_dir().glob("*.sol"))}


def compile_executor() -> Artifact:
    """Compile FlashLiquidator with the pinned solcjs (served from `.cache/solc` when cached)."""
    return compile_solidity(sources(), roots=[source_dir()])[CONTRACT_NAME]


@functools.cache
def compile_flash_liquidator() -> Artifact:
    """FlashLiquidator's ABI and creation code (compiled once per process; see compile_executor)."""
    return compile_executor()


@dataclass(frozen=True, slots=True)
class Deployed:
    """A deployed executor."""

    address: ChecksumAddress
    tx_hash: str
    block: int
    gas_used: int


def deploy_flash_liquidator(
    w3: Web3,
    owner: str,
    sender: LocalAccount,
    *,
    aave_pool: str | None,
    morpho: str | None,
    max_fee_per_gas: int,
    priority_fee: int,
    artifact: Artifact | None = None,
) -> Deployed:
    """Deploy FlashLiquidator(owner, aave_pool, morpho), signed by `sender`, and wait for it.

    A protocol left None is disabled in that deployment (its actions revert).
    """
    built = artifact or compile_flash_liquidator()
    args = (
        _address(owner, "owner"),
        _address(aave_pool or ZERO_ADDRESS, "aave_pool"),
        _address(morpho or ZERO_ADDRESS, "morpho"),
    )
    factory = w3.eth.contract(abi=built.abi, bytecode=built.linked({}))
    base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas", 0))
    max_fee = min(2 * base_fee + priority_fee, max_fee_per_gas)
    if max_fee < base_fee:
        raise FlashPlanError(
            f"deploy: base fee {base_fee} wei is above the max fee per gas {max_fee_per_gas} wei"
        )
    tx: dict[str, Any] = {
        "from": sender.address,
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
        "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": min(priority_fee, max_fee),
        "value": 0,
    }
    estimate = factory.constructor(*args).estimate_gas({"from": sender.address})
    tx["gas"] = estimate * DEPLOY_GAS_MARGIN_PERCENT // 100
    built_tx = factory.constructor(*args).build_transaction(tx)
    signed = sender.sign_transaction(built_tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    try:
        receipt = w3.eth.wait_for_transaction_receipt(
            tx_hash, timeout=RECEIPT_TIMEOUT, poll_latency=0.05
        )
    except TimeExhausted:
        raise FlashPlanError(
            f"deploy: no receipt for {Web3.to_hex(tx_hash)} after {RECEIPT_TIMEOUT:.0f} s"
        ) from None
    address = receipt.get("contractAddress")
    if receipt["status"] != 1 or address is None:
        raise FlashPlanError(f"deploy: transaction {Web3.to_hex(tx_hash)} reverted")
    return Deployed(
        address=Web3.to_checksum_address(address),
        tx_hash=Web3.to_hex(tx_hash),
        block=int(receipt["blockNumber"]),
        gas_used=int(receipt["gasUsed"]),
    )


def deployed_creation_code(w3: Web3, tx_hash: str) -> bytes:
    """The creation code a deploy transaction carried (its input minus constructor args)."""
    tx = w3.eth.get_transaction(HexStr(tx_hash))
    data = bytes(tx["input"])
    return data[: len(data) - 3 * 32]  # three static constructor arguments

"""Aave V3 (@aave/core-v3 1.19.3) log topics and decoders, pure (eth_abi, no I/O).

Each `TOPIC_*` is keccak256 of the event's canonical signature as declared in the 1.19.3
interfaces (IPool, IScaledBalanceToken, IAToken, IStableDebtToken) and, for prices, the
Chainlink aggregator's `AnswerUpdated`. `decode(event)` turns a raw `Event` into one of the
typed records below, by topic0 (None for a topic it does not know). Addresses are lower-case.

Note that AToken and VariableDebtToken share the `Mint`/`Burn` signatures (IScaledBalanceToken),
while StableDebtToken declares its own (`StableMint`/`StableBurn` here): the emitting address,
not the topic, says which token a scaled Mint/Burn belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak

from keeper.errors import StrategyError
from keeper.types import Event


def topic(signature: str) -> str:
    """topic0 of an event signature: 0x-hex keccak256."""
    return "0x" + keccak(text=signature).hex()


SUPPLY_SIG = "Supply(address,address,address,uint256,uint16)"
WITHDRAW_SIG = "Withdraw(address,address,address,uint256)"
BORROW_SIG = "Borrow(address,address,address,uint256,uint8,uint256,uint16)"
REPAY_SIG = "Repay(address,address,address,uint256,bool)"
LIQUIDATION_CALL_SIG = "LiquidationCall(address,address,address,uint256,uint256,address,bool)"
RESERVE_DATA_UPDATED_SIG = "ReserveDataUpdated(address,uint256,uint256,uint256,uint256,uint256)"
COLLATERAL_ENABLED_SIG = "ReserveUsedAsCollateralEnabled(address,address)"
COLLATERAL_DISABLED_SIG = "ReserveUsedAsCollateralDisabled(address,address)"
USER_EMODE_SET_SIG = "UserEModeSet(address,uint8)"
MINT_SIG = "Mint(address,address,uint256,uint256,uint256)"
BURN_SIG = "Burn(address,address,uint256,uint256,uint256)"
BALANCE_TRANSFER_SIG = "BalanceTransfer(address,address,uint256,uint256)"
STABLE_MINT_SIG = "Mint(address,address,uint256,uint256,uint256,uint256,uint256,uint256)"
STABLE_BURN_SIG = "Burn(address,uint256,uint256,uint256,uint256,uint256)"
ANSWER_UPDATED_SIG = "AnswerUpdated(int256,uint256,uint256)"

TOPIC_SUPPLY = topic(SUPPLY_SIG)
TOPIC_WITHDRAW = topic(WITHDRAW_SIG)
TOPIC_BORROW = topic(BORROW_SIG)
TOPIC_REPAY = topic(REPAY_SIG)
TOPIC_LIQUIDATION_CALL = topic(LIQUIDATION_CALL_SIG)
TOPIC_RESERVE_DATA_UPDATED = topic(RESERVE_DATA_UPDATED_SIG)
TOPIC_COLLATERAL_ENABLED = topic(COLLATERAL_ENABLED_SIG)
TOPIC_COLLATERAL_DISABLED = topic(COLLATERAL_DISABLED_SIG)
TOPIC_USER_EMODE_SET = topic(USER_EMODE_SET_SIG)
TOPIC_MINT = topic(MINT_SIG)
TOPIC_BURN = topic(BURN_SIG)
TOPIC_BALANCE_TRANSFER = topic(BALANCE_TRANSFER_SIG)
TOPIC_STABLE_MINT = topic(STABLE_MINT_SIG)
TOPIC_STABLE_BURN = topic(STABLE_BURN_SIG)
TOPIC_ANSWER_UPDATED = topic(ANSWER_UPDATED_SIG)

POOL_TOPICS = (
    TOPIC_SUPPLY, TOPIC_WITHDRAW, TOPIC_BORROW, TOPIC_REPAY, TOPIC_LIQUIDATION_CALL,
    TOPIC_RESERVE_DATA_UPDATED, TOPIC_COLLATERAL_ENABLED, TOPIC_COLLATERAL_DISABLED,
    TOPIC_USER_EMODE_SET,
)
TOKEN_TOPICS = (
    TOPIC_MINT, TOPIC_BURN, TOPIC_BALANCE_TRANSFER, TOPIC_STABLE_MINT, TOPIC_STABLE_BURN,
)


class EventDecodeError(StrategyError):
    """A log with a known topic0 whose topics/data do not fit the event's ABI."""


@dataclass(frozen=True, slots=True)
class Supply:
    reserve: str
    user: str
    on_behalf_of: str
    amount: int
    referral_code: int


@dataclass(frozen=True, slots=True)
class Withdraw:
    reserve: str
    user: str
    to: str
    amount: int


@dataclass(frozen=True, slots=True)
class Borrow:
    reserve: str
    user: str
    on_behalf_of: str
    amount: int
    interest_rate_mode: int  # 1 stable, 2 variable
    borrow_rate: int
    referral_code: int


@dataclass(frozen=True, slots=True)
class Repay:
    reserve: str
    user: str
    repayer: str
    amount: int
    use_atokens: bool


@dataclass(frozen=True, slots=True)
class LiquidationCall:
    collateral_asset: str
    debt_asset: str
    user: str
    debt_to_cover: int
    liquidated_collateral_amount: int
    liquidator: str
    receive_atoken: bool


@dataclass(frozen=True, slots=True)
class ReserveDataUpdated:
    reserve: str
    liquidity_rate: int
    stable_borrow_rate: int
    variable_borrow_rate: int
    liquidity_index: int
    variable_borrow_index: int


@dataclass(frozen=True, slots=True)
class CollateralEnabled:
    reserve: str
    user: str


@dataclass(frozen=True, slots=True)
class CollateralDisabled:
    reserve: str
    user: str


@dataclass(frozen=True, slots=True)
class UserEModeSet:
    user: str
    category_id: int


@dataclass(frozen=True, slots=True)
class Mint:
    """IScaledBalanceToken.Mint (AToken / VariableDebtToken)."""

    caller: str
    on_behalf_of: str
    value: int
    balance_increase: int
    index: int


@dataclass(frozen=True, slots=True)
class Burn:
    """IScaledBalanceToken.Burn (AToken / VariableDebtToken)."""

    from_: str
    target: str
    value: int
    balance_increase: int
    index: int


@dataclass(frozen=True, slots=True)
class BalanceTransfer:
    """IAToken.BalanceTransfer; `value` is the SCALED amount in 1.19.3 (amount.rayDiv(index))."""

    from_: str
    to: str
    value: int
    index: int


@dataclass(frozen=True, slots=True)
class StableMint:
    """IStableDebtToken.Mint."""

    user: str
    on_behalf_of: str
    amount: int
    current_balance: int
    balance_increase: int
    new_rate: int
    avg_stable_rate: int
    new_total_supply: int


@dataclass(frozen=True, slots=True)
class StableBurn:
    """IStableDebtToken.Burn."""

    from_: str
    amount: int
    current_balance: int
    balance_increase: int
    avg_stable_rate: int
    new_total_supply: int


@dataclass(frozen=True, slots=True)
class AnswerUpdated:
    """Chainlink aggregator AnswerUpdated (the price sources of the AaveOracle)."""

    current: int
    round_id: int
    updated_at: int


AaveEvent = (
    Supply | Withdraw | Borrow | Repay | LiquidationCall | ReserveDataUpdated | CollateralEnabled
    | CollateralDisabled | UserEModeSet | Mint | Burn | BalanceTransfer | StableMint | StableBurn
    | AnswerUpdated
)


def _word(topic_hex: str, kind: str) -> Any:
    return abi_decode([kind], bytes.fromhex(topic_hex.removeprefix("0x")))[0]


def _addr(value: Any) -> str:
    return str(value).lower()


# topic0 -> (record type, indexed ABI types, data ABI types, the record's fields in order)
_SPECS: dict[str, tuple[type[Any], tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    # field layout: "t<i>" is the i-th indexed topic, "d<i>" the i-th data word
    TOPIC_SUPPLY: (Supply, ("address", "address", "uint16"), ("address", "uint256"),
                   ("t0", "d0", "t1", "d1", "t2")),
    TOPIC_WITHDRAW: (Withdraw, ("address", "address", "address"), ("uint256",),
                     ("t0", "t1", "t2", "d0")),
    TOPIC_BORROW: (Borrow, ("address", "address", "uint16"),
                   ("address", "uint256", "uint8", "uint256"),
                   ("t0", "d0", "t1", "d1", "d2", "d3", "t2")),
    TOPIC_REPAY: (Repay, ("address", "address", "address"), ("uint256", "bool"),
                  ("t0", "t1", "t2", "d0", "d1")),
    TOPIC_LIQUIDATION_CALL: (LiquidationCall, ("address", "address", "address"),
                             ("uint256", "uint256", "address", "bool"),
                             ("t0", "t1", "t2", "d0", "d1", "d2", "d3")),
    TOPIC_RESERVE_DATA_UPDATED: (ReserveDataUpdated, ("address",), ("uint256",) * 5,
                                 ("t0", "d0", "d1", "d2", "d3", "d4")),
    TOPIC_COLLATERAL_ENABLED: (CollateralEnabled, ("address", "address"), (), ("t0", "t1")),
    TOPIC_COLLATERAL_DISABLED: (CollateralDisabled, ("address", "address"), (), ("t0", "t1")),
    TOPIC_USER_EMODE_SET: (UserEModeSet, ("address",), ("uint8",), ("t0", "d0")),
    TOPIC_MINT: (Mint, ("address", "address"), ("uint256",) * 3, ("t0", "t1", "d0", "d1", "d2")),
    TOPIC_BURN: (Burn, ("address", "address"), ("uint256",) * 3, ("t0", "t1", "d0", "d1", "d2")),
    TOPIC_BALANCE_TRANSFER: (BalanceTransfer, ("address", "address"), ("uint256",) * 2,
                             ("t0", "t1", "d0", "d1")),
    TOPIC_STABLE_MINT: (StableMint, ("address", "address"), ("uint256",) * 6,
                        ("t0", "t1", "d0", "d1", "d2", "d3", "d4", "d5")),
    TOPIC_STABLE_BURN: (StableBurn, ("address",), ("uint256",) * 5,
                        ("t0", "d0", "d1", "d2", "d3", "d4")),
    TOPIC_ANSWER_UPDATED: (AnswerUpdated, ("int256", "uint256"), ("uint256",), ("t0", "t1", "d0")),
}


def decode(event: Event) -> AaveEvent | None:
    """The typed record of `event`, or None if its topic0 is not one of the events above."""
    spec = _SPECS.get(event.topic0.lower())
    if spec is None:
        return None
    record, indexed, data_types, layout = spec
    if len(event.topics) != len(indexed) + 1:
        raise EventDecodeError(
            f"{record.__name__} log {event.transaction_hash}:{event.log_index} has "
            f"{len(event.topics)} topics, expected {len(indexed) + 1}"
        )
    try:
        topics = [_word(t, k) for t, k in zip(event.topics[1:], indexed, strict=True)]
        data = list(abi_decode(list(data_types), bytes.fromhex(event.data.removeprefix("0x"))))
    except (DecodingError, ValueError) as exc:
        raise EventDecodeError(
            f"{record.__name__} log {event.transaction_hash}:{event.log_index}: {exc}"
        ) from exc
    kinds = {f"t{i}": k for i, k in enumerate(indexed)}
    kinds |= {f"d{i}": k for i, k in enumerate(data_types)}
    values: list[Any] = []
    for slot in layout:
        value = topics[int(slot[1:])] if slot[0] == "t" else data[int(slot[1:])]
        values.append(_addr(value) if kinds[slot] == "address" else value)
    return cast(AaveEvent, record(*values))

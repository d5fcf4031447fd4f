"""Morpho Blue (1.0.0, EventsLib) log topics and decoders, pure (eth_abi, no I/O).

Each `TOPIC_*` is keccak256 of the event's canonical signature as declared in EventsLib
(`Id` is bytes32, `MarketParams` the tuple (address,address,address,address,uint256)); the
feeds' Chainlink-style `AnswerUpdated` is decoded too. `decode(event)` turns a raw `Event`
into one of the typed records below by topic0, or None for a topic it does not know.
Market ids are 0x-hex lower-case; addresses are lower-case. FlashLoan and the authorization
events change no position and are not decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak

from keeper.errors import StrategyError
from keeper.types import Event
from strategies.morpho_blue.math import MarketParams


def topic(signature: str) -> str:
    """topic0 of an event signature: 0x-hex keccak256."""
    return "0x" + keccak(text=signature).hex()


_PARAMS = "(address,address,address,address,uint256)"
CREATE_MARKET_SIG = f"CreateMarket(bytes32,{_PARAMS})"
SET_FEE_SIG = "SetFee(bytes32,uint256)"
SUPPLY_SIG = "Supply(bytes32,address,address,uint256,uint256)"
WITHDRAW_SIG = "Withdraw(bytes32,address,address,address,uint256,uint256)"
BORROW_SIG = "Borrow(bytes32,address,address,address,uint256,uint256)"
REPAY_SIG = "Repay(bytes32,address,address,uint256,uint256)"
SUPPLY_COLLATERAL_SIG = "SupplyCollateral(bytes32,address,address,uint256)"
WITHDRAW_COLLATERAL_SIG = "WithdrawCollateral(bytes32,address,address,address,uint256)"
LIQUIDATE_SIG = "Liquidate(bytes32,address,address,uint256,uint256,uint256,uint256,uint256)"
ACCRUE_INTEREST_SIG = "AccrueInterest(bytes32,uint256,uint256,uint256)"
ANSWER_UPDATED_SIG = "AnswerUpdated(int256,uint256,uint256)"

TOPIC_CREATE_MARKET = topic(CREATE_MARKET_SIG)
TOPIC_SET_FEE = topic(SET_FEE_SIG)
TOPIC_SUPPLY = topic(SUPPLY_SIG)
TOPIC_WITHDRAW = topic(WITHDRAW_SIG)
TOPIC_BORROW = topic(BORROW_SIG)
TOPIC_REPAY = topic(REPAY_SIG)
TOPIC_SUPPLY_COLLATERAL = topic(SUPPLY_COLLATERAL_SIG)
TOPIC_WITHDRAW_COLLATERAL = topic(WITHDRAW_COLLATERAL_SIG)
TOPIC_LIQUIDATE = topic(LIQUIDATE_SIG)
TOPIC_ACCRUE_INTEREST = topic(ACCRUE_INTEREST_SIG)
TOPIC_ANSWER_UPDATED = topic(ANSWER_UPDATED_SIG)

MORPHO_TOPICS = (
    TOPIC_CREATE_MARKET, TOPIC_SET_FEE, TOPIC_SUPPLY, TOPIC_WITHDRAW, TOPIC_BORROW, TOPIC_REPAY,
    TOPIC_SUPPLY_COLLATERAL, TOPIC_WITHDRAW_COLLATERAL, TOPIC_LIQUIDATE, TOPIC_ACCRUE_INTEREST,
)


class EventDecodeError(StrategyError):
    """A log with a known topic0 whose topics/data do not fit the event's ABI."""


@dataclass(frozen=True, slots=True)
class CreateMarket:
    id: str
    params: MarketParams


@dataclass(frozen=True, slots=True)
class SetFee:
    id: str
    new_fee: int


@dataclass(frozen=True, slots=True)
class Supply:
    id: str
    caller: str
    on_behalf: str
    assets: int
    shares: int


@dataclass(frozen=True, slots=True)
class Withdraw:
    id: str
    caller: str
    on_behalf: str
    receiver: str
    assets: int
    shares: int


@dataclass(frozen=True, slots=True)
class Borrow:
    id: str
    caller: str
    on_behalf: str
    receiver: str
    assets: int
    shares: int


@dataclass(frozen=True, slots=True)
class Repay:
    id: str
    caller: str
    on_behalf: str
    assets: int
    shares: int


@dataclass(frozen=True, slots=True)
class SupplyCollateral:
    id: str
    caller: str
    on_behalf: str
    assets: int


@dataclass(frozen=True, slots=True)
class WithdrawCollateral:
    id: str
    caller: str
    on_behalf: str
    receiver: str
    assets: int


@dataclass(frozen=True, slots=True)
class Liquidate:
    id: str
    caller: str
    borrower: str
    repaid_assets: int
    repaid_shares: int
    seized_assets: int
    bad_debt_assets: int
    bad_debt_shares: int


@dataclass(frozen=True, slots=True)
class AccrueInterest:
    id: str
    prev_borrow_rate: int
    interest: int
    fee_shares: int


@dataclass(frozen=True, slots=True)
class AnswerUpdated:
    """A Chainlink-style feed's AnswerUpdated (what FeedOracle reads as latestRoundData)."""

    current: int
    round_id: int
    updated_at: int


MorphoEvent = (
    CreateMarket | SetFee | Supply | Withdraw | Borrow | Repay | SupplyCollateral
    | WithdrawCollateral | Liquidate | AccrueInterest | AnswerUpdated
)

# topic0 -> (record type, indexed ABI types, data ABI types, the record's fields in order);
# in the layout "t<i>" is the i-th indexed topic and "d<i>" the i-th data word.
_SPECS: dict[str, tuple[type[Any], tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    TOPIC_CREATE_MARKET: (CreateMarket, ("bytes32",), (_PARAMS,), ("t0", "d0")),
    TOPIC_SET_FEE: (SetFee, ("bytes32",), ("uint256",), ("t0", "d0")),
    TOPIC_SUPPLY: (Supply, ("bytes32", "address", "address"), ("uint256", "uint256"),
                   ("t0", "t1", "t2", "d0", "d1")),
    TOPIC_WITHDRAW: (Withdraw, ("bytes32", "address", "address"),
                     ("address", "uint256", "uint256"), ("t0", "d0", "t1", "t2", "d1", "d2")),
    TOPIC_BORROW: (Borrow, ("bytes32", "address", "address"),
                   ("address", "uint256", "uint256"), ("t0", "d0", "t1", "t2", "d1", "d2")),
    TOPIC_REPAY: (Repay, ("bytes32", "address", "address"), ("uint256", "uint256"),
                  ("t0", "t1", "t2", "d0", "d1")),
    TOPIC_SUPPLY_COLLATERAL: (SupplyCollateral, ("bytes32", "address", "address"),
                              ("uint256",), ("t0", "t1", "t2", "d0")),
    TOPIC_WITHDRAW_COLLATERAL: (WithdrawCollateral, ("bytes32", "address", "address"),
                                ("address", "uint256"), ("t0", "d0", "t1", "t2", "d1")),
    TOPIC_LIQUIDATE: (Liquidate, ("bytes32", "address", "address"), ("uint256",) * 5,
                      ("t0", "t1", "t2", "d0", "d1", "d2", "d3", "d4")),
    TOPIC_ACCRUE_INTEREST: (AccrueInterest, ("bytes32",), ("uint256",) * 3,
                            ("t0", "d0", "d1", "d2")),
    TOPIC_ANSWER_UPDATED: (AnswerUpdated, ("int256", "uint256"), ("uint256",),
                           ("t0", "t1", "d0")),
}


def _value(kind: str, value: Any) -> Any:
    if kind == "address":
        return str(value).lower()
    if kind == "bytes32":
        return "0x" + bytes(value).hex()
    if kind == _PARAMS:
        loan, collateral, oracle, irm, lltv = value
        return MarketParams(
            str(loan).lower(), str(collateral).lower(), str(oracle).lower(), str(irm).lower(),
            int(lltv),
        )
    return value


def decode(event: Event) -> MorphoEvent | None:
    """The typed record of `event`, or None if its topic0 is not one of the events above."""
    spec = _SPECS.get(event.topic0.lower())
    if spec is None:
        return None
    record, indexed, data_types, layout = spec
    where = f"{record.__name__} log {event.transaction_hash}:{event.log_index}"
    if len(event.topics) != len(indexed) + 1:
        raise EventDecodeError(
            f"{where} has {len(event.topics)} topics, expected {len(indexed) + 1}"
        )
    try:
        topics = [
            abi_decode([k], bytes.fromhex(t.removeprefix("0x")))[0]
            for t, k in zip(event.topics[1:], indexed, strict=True)
        ]
        data = list(abi_decode(list(data_types), bytes.fromhex(event.data.removeprefix("0x"))))
    except (DecodingError, ValueError) as exc:
        raise EventDecodeError(f"{where}: {exc}") from exc
    kinds = {f"t{i}": k for i, k in enumerate(indexed)}
    kinds |= {f"d{i}": k for i, k in enumerate(data_types)}
    values = [
        _value(kinds[slot], topics[int(slot[1:])] if slot[0] == "t" else data[int(slot[1:])])
        for slot in layout
    ]
    result: MorphoEvent = record(*values)
    return result

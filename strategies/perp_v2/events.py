"""Perp v2 Curie 2.8.4 log topics and decoders, pure (eth_abi, no I/O).

What moves an account's books, by contract:

- ClearingHouse: `PositionChanged` (the taker balances: size += exchangedPositionSize, open
  notional = the event's openNotional after the change), `LiquidityChanged` (a maker's order
  liquidity per tick range and the base and quote the pool took or gave: the order's
  debts), `PositionLiquidated` and `FundingPaymentSettled` (not needed for the balances:
  their effects are in PositionChanged and PnlRealized; kept for the journal of what
  happened);
- AccountBalance: `PnlRealized` (every change of the owed realized PnL: realized PnL, fees,
  penalties, funding);
- Vault: `Deposited` / `Withdrawn` (the collateral balance; a withdrawal also settles the
  owed realized PnL into it, with no event of its own) and `BadDebtSettled`.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak

from keeper.errors import StrategyError
from keeper.types import Event


def topic(signature: str) -> str:
    """topic0 of an event signature: 0x-hex keccak256."""
    return "0x" + keccak(text=signature).hex()


TOPIC_POSITION_CHANGED = topic(
    "PositionChanged(address,address,int256,int256,uint256,int256,int256,uint256)")
TOPIC_LIQUIDITY_CHANGED = topic(
    "LiquidityChanged(address,address,address,int24,int24,int256,int256,int128,uint256)")
TOPIC_POSITION_LIQUIDATED = topic(
    "PositionLiquidated(address,address,uint256,uint256,uint256,address)")
TOPIC_FUNDING_SETTLED = topic("FundingPaymentSettled(address,address,int256)")
TOPIC_PNL_REALIZED = topic("PnlRealized(address,int256)")
TOPIC_DEPOSITED = topic("Deposited(address,address,uint256)")
TOPIC_WITHDRAWN = topic("Withdrawn(address,address,uint256)")
TOPIC_BAD_DEBT_SETTLED = topic("BadDebtSettled(address,uint256)")

CLEARING_HOUSE_TOPICS = (TOPIC_POSITION_CHANGED, TOPIC_LIQUIDITY_CHANGED,
                         TOPIC_POSITION_LIQUIDATED, TOPIC_FUNDING_SETTLED)
ACCOUNT_BALANCE_TOPICS = (TOPIC_PNL_REALIZED,)
VAULT_TOPICS = (TOPIC_DEPOSITED, TOPIC_WITHDRAWN, TOPIC_BAD_DEBT_SETTLED)


class EventDecodeError(StrategyError):
    """A log with a known topic0 whose topics/data do not fit the event's ABI."""


@dataclass(frozen=True, slots=True)
class PositionChanged:
    trader: str
    base: str
    exchanged_size: int
    exchanged_notional: int
    fee: int
    open_notional: int
    realized_pnl: int


@dataclass(frozen=True, slots=True)
class LiquidityChanged:
    maker: str
    base: str
    lower: int
    upper: int
    base_amount: int  # signed: added to (+) or removed from (-) the pool, fees excluded
    quote_amount: int
    liquidity: int  # signed change


@dataclass(frozen=True, slots=True)
class PositionLiquidated:
    trader: str
    base: str
    notional: int
    size: int
    fee: int
    liquidator: str


@dataclass(frozen=True, slots=True)
class FundingSettled:
    trader: str
    base: str
    payment: int


@dataclass(frozen=True, slots=True)
class PnlRealized:
    trader: str
    amount: int


@dataclass(frozen=True, slots=True)
class VaultMove:
    """Deposited (+), Withdrawn (-) or BadDebtSettled (+, and the same taken from the
    insurance fund, which the strategy handles)."""

    kind: str  # "deposit", "withdraw", "bad_debt"
    token: str  # the collateral token ("" for bad debt: always the settlement token)
    trader: str
    amount: int


PerpEvent = (PositionChanged | LiquidityChanged | PositionLiquidated | FundingSettled
             | PnlRealized | VaultMove)


def _address(word: str) -> str:
    return "0x" + word[-40:].lower()


def _data(event: Event, types: list[str]) -> tuple[object, ...]:
    try:
        return tuple(abi_decode(types, bytes.fromhex(event.data.removeprefix("0x"))))
    except (DecodingError, ValueError) as exc:
        raise EventDecodeError(f"perp_v2: undecodable log {event.transaction_hash}: {exc}") \
            from None


def _ints(values: tuple[object, ...]) -> list[int]:
    return [int(v) for v in values]  # type: ignore[call-overload]


def decode(event: Event) -> PerpEvent | None:
    """The typed record of a Perp log, or None for a topic this strategy does not use."""
    t = event.topic0
    if len(event.topics) < 2:
        return None
    if t == TOPIC_POSITION_CHANGED:
        size, notional, fee, open_notional, realized, _ = _ints(_data(
            event, ["int256", "int256", "uint256", "int256", "int256", "uint256"]))
        return PositionChanged(_address(event.topics[1]), _address(event.topics[2]), size,
                               notional, fee, open_notional, realized)
    if t == TOPIC_LIQUIDITY_CHANGED:
        lower, upper, base, quote, liquidity, _ = _ints(_data(
            event, ["int24", "int24", "int256", "int256", "int128", "uint256"]))
        return LiquidityChanged(_address(event.topics[1]), _address(event.topics[2]),
                                lower, upper, base, quote, liquidity)
    if t == TOPIC_POSITION_LIQUIDATED:
        raw = _data(event, ["uint256", "uint256", "uint256", "address"])
        notional, size, fee = _ints(raw[:3])
        return PositionLiquidated(_address(event.topics[1]), _address(event.topics[2]),
                                  notional, size, fee, str(raw[3]).lower())
    if t == TOPIC_FUNDING_SETTLED:
        (payment,) = _ints(_data(event, ["int256"]))
        return FundingSettled(_address(event.topics[1]), _address(event.topics[2]), payment)
    if t == TOPIC_PNL_REALIZED:
        (amount,) = _ints(_data(event, ["int256"]))
        return PnlRealized(_address(event.topics[1]), amount)
    if t in (TOPIC_DEPOSITED, TOPIC_WITHDRAWN):
        (amount,) = _ints(_data(event, ["uint256"]))
        kind = "deposit" if t == TOPIC_DEPOSITED else "withdraw"
        return VaultMove(kind, _address(event.topics[1]), _address(event.topics[2]), amount)
    if t == TOPIC_BAD_DEBT_SETTLED:
        (amount,) = _ints(_data(event, ["uint256"]))
        return VaultMove("bad_debt", "", _address(event.topics[1]), amount)
    return None

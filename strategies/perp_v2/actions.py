"""What a Perp v2 candidate does, and its calldata (ClearingHouse and Vault of Curie 2.8.4).

- `liquidate(trader, baseToken)`: as much as ClearingHouse._liquidate allows;
- `cancelAllExcessOrders(maker, baseToken)`: every open order of the maker in that market;
- `closePosition((baseToken, sqrtPriceLimitX96 0, oppositeAmountBound, deadline max, 0))`;
- `Vault.withdraw(settlementToken, amount)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi.abi import encode

from keeper.types import Call
from strategies.perp_v2.reads import selector

MAX_UINT = 2**256 - 1
_LIQUIDATE = selector("liquidate(address,address)")
_CANCEL = selector("cancelAllExcessOrders(address,address)")
_CLOSE = selector("closePosition((address,uint160,uint256,uint256,bytes32))")
_WITHDRAW = selector("withdraw(address,uint256)")


@dataclass(frozen=True)
class PerpAction:
    """What a candidate does (`Candidate.private`)."""

    kind: str  # "liquidate", "cancel", "close" or "withdraw"
    account: str
    base: str  # the market (withdraw: the settlement token)
    bound: int = 0  # close: the oppositeAmountBound (quote, X10_18); withdraw: the amount


def encode_action(action: PerpAction, *, clearing_house: str, vault: str) -> Call:
    """The call that carries out `action`."""
    if action.kind == "withdraw":
        data = _WITHDRAW + encode(["address", "uint256"], [action.base, action.bound]).hex()
        return Call(to=vault, data=data)
    if action.kind == "close":
        data = _CLOSE + encode(["(address,uint160,uint256,uint256,bytes32)"],
                               [(action.base, 0, action.bound, MAX_UINT, b"\0" * 32)]).hex()
    else:
        head = _LIQUIDATE if action.kind == "liquidate" else _CANCEL
        data = head + encode(["address", "address"], [action.account, action.base]).hex()
    return Call(to=clearing_house, data=data)

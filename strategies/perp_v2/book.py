"""The Perp v2 book: every account's Vault balance, owed PnL, taker balances and maker orders,
kept from the logs alone (strategies/perp_v2/events.py says which log moves what).

`state(account, ...)` joins an account's book with what the logs cannot tell (its pending
funding payment, the vAMM pools' prices and, for a maker, its orders' pending fees, read each
block by strategies/perp_v2/reads.py) into the `AccountState` the math mirrors value; a
maker's base and quote come from its orders kept here (strategies/perp_v2/orders.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from strategies.perp_v2 import events as ev
from strategies.perp_v2 import orders as ob
from strategies.perp_v2.math import (
    DUST,
    AccountState,
    MarketPosition,
    dusted,
    format_settlement,
)


@dataclass
class Taker:
    size: int = 0
    open_notional: int = 0


@dataclass
class Account:
    """One account's books (AccountBalance._accountMarketMap, _owedRealizedPnlMap, the
    Vault's settlement-token balance and the OrderBook's open orders by range)."""

    balance: int = 0  # settlement-token units
    owed: int = 0  # X10_18
    takers: dict[str, Taker] = field(default_factory=dict)
    orders: dict[tuple[str, int, int], ob.Order] = field(default_factory=dict)  # by range
    other_collateral: bool = False  # a non-settlement collateral: not mirrored
    closed: dict[str, int] = field(default_factory=dict)  # base -> positions brought to 0
    deposited: int = 0  # settlement-token units deposited, ever (the keeper's margin)

    def order_bases(self) -> set[str]:
        return {base for base, _, _ in self.orders}

    def bases(self) -> set[str]:
        """AccountBalance._baseTokensMap: markets with a balance or an open order."""
        return set(self.takers) | self.order_bases()


class PerpBook:
    """Every account the ClearingHouse, AccountBalance and Vault logs name."""

    def __init__(self, settlement_token: str, decimals: int, insurance_fund: str) -> None:
        self.settlement_token = settlement_token.lower()
        self.decimals = decimals
        self.insurance_fund = insurance_fund.lower()
        self.accounts: dict[str, Account] = {}

    def account(self, address: str) -> Account:
        return self.accounts.setdefault(address.lower(), Account())

    def apply(self, records: Iterable[ev.PerpEvent]) -> set[str]:
        """Apply decoded logs in order; the accounts they touched."""
        touched: set[str] = set()
        for record in records:
            if isinstance(record, ev.PositionChanged):
                self._position(record)
                touched.add(record.trader)
            elif isinstance(record, ev.LiquidityChanged):
                a = self.account(record.maker)
                key = (record.base, record.lower, record.upper)
                order = a.orders.get(key, ob.Order())
                ob.change_liquidity(order, record.liquidity, record.base_amount,
                                    record.quote_amount)
                if order.liquidity:
                    a.orders[key] = order
                elif a.orders.pop(key, None) is not None:  # OrderBook._removeOrder
                    self._deregister(a, record.base)
                touched.add(record.maker)
            elif isinstance(record, ev.PnlRealized):
                self.account(record.trader).owed += record.amount
                touched.add(record.trader)
            elif isinstance(record, ev.VaultMove):
                self._vault(record)
                touched.add(record.trader)
        return touched

    def _position(self, record: ev.PositionChanged) -> None:
        """ClearingHouse._modifyPositionAndRealizePnl / _openPosition on AccountBalance:
        the size moves by the exchanged size; the event carries the open notional after."""
        a = self.account(record.trader)
        taker = a.takers.setdefault(record.base, Taker())
        was_open = dusted(taker.size) != 0
        taker.size += record.exchanged_size
        if was_open and dusted(taker.size) == 0:
            a.closed[record.base] = a.closed.get(record.base, 0) + 1
        taker.open_notional = record.open_notional
        self._deregister(a, record.base)

    @staticmethod
    def _deregister(a: Account, base: str) -> None:
        """AccountBalance._deregisterBaseToken: both balances under dust and no order."""
        taker = a.takers.get(base)
        if taker is None or abs(taker.size) >= DUST or abs(taker.open_notional) >= DUST:
            return
        if any(b == base for b, _, _ in a.orders):
            return
        del a.takers[base]

    def _vault(self, record: ev.VaultMove) -> None:
        a = self.account(record.trader)
        if record.kind == "bad_debt":
            # Vault.settleBadDebt: the trader's balance is made whole from the fund's.
            a.balance += record.amount
            self.account(self.insurance_fund).balance -= record.amount
        elif record.token != self.settlement_token:
            a.other_collateral = True  # not mirrored: the account is left to the chain
        elif record.kind == "deposit":
            a.balance += record.amount
            a.deposited += record.amount
        else:
            # Vault._settleAndDecreaseBalance: the owed realized PnL moves into the balance.
            a.balance += format_settlement(a.owed, self.decimals) - record.amount
            a.owed = 0

    def state(
        self, address: str, pending_funding: int, sqrt_prices: Mapping[str, int],
        pending_fees: Mapping[tuple[str, int, int], int],
    ) -> AccountState:
        """The account as the math values it. `sqrt_prices`: each pool's slot0 sqrtPriceX96
        by base (a market left out counts no maker balances: the keeper's own margin room
        values its taker balances only); `pending_fees`: its orders' pending fees by
        (base, lower, upper)."""
        a = self.accounts[address]
        markets: dict[str, MarketPosition] = {}
        for base in a.bases():
            taker = a.takers.get(base, Taker())
            held = [(lo, up, o) for (b, lo, up), o in a.orders.items() if b == base]
            maker_base = maker_quote = fee = 0
            if held and base in sqrt_prices:
                maker_base, maker_quote = ob.maker_balances(held, sqrt_prices[base])
                fee = sum(pending_fees.get((base, lo, up), 0) for lo, up, _ in held)
            markets[base] = MarketPosition(taker.size, taker.open_notional, maker_base,
                                           maker_quote, fee)
        return AccountState(a.balance, a.owed, pending_funding, markets)

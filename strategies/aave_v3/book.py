"""The event-sourced Aave V3 position book: a market and its accounts, kept from logs alone.

Seeded from a `Market` and the `Account`s read at one block (market.py), `apply` mirrors the
1.19.3 contracts' storage writes from the logs of later blocks, with no I/O:

- reserve indexes/rates from `ReserveDataUpdated` (lastUpdateTimestamp = the block's timestamp);
- scaled aToken / variable-debt balances from Mint/Burn/BalanceTransfer, inverting
  ScaledBalanceTokenBase: `_mintScaled` emits Mint(value = amount + balanceIncrease), so
  scaled += rayDiv(value - balanceIncrease, index); `_burnScaled` emits Burn(value = amount -
  balanceIncrease) or, when balanceIncrease > amount, Mint(value = balanceIncrease - amount),
  so scaled -= rayDiv(amount, index); `_transfer`'s interest Mints have value == balanceIncrease
  (no scaled change); AToken's BalanceTransfer carries the SCALED amount (amount.rayDiv(index));
- stable debt (principal, user rate, timestamp) from StableDebtToken Mint/Burn, mirroring
  StableDebtToken.mint/burn (principal += / -= value; rate = newRate; timestamp = block time,
  or rate = timestamp = 0 when the whole current balance is burned);
- the collateral bit from ReserveUsedAsCollateralEnabled/Disabled, e-mode from UserEModeSet;
- the borrowing bit as BorrowLogic/LiquidationLogic set it: on a debt mint whose previous
  balance was 0 (`isFirstBorrowing`), cleared at Repay when `stableDebt + variableDebt ==
  paybackAmount` and at LiquidationCall when `userTotalDebt == actualDebtToLiquidate` (the
  debt before is taken at the transaction's first debt-token log);
- oracle prices from the sources' AnswerUpdated (AaveOracle returns `latestAnswer` when > 0).

Users first named by a state-changing event start empty: the book must be seeded with every
account that had a position at the seed block. Not mirrored (the owner must re-read): reserve
configuration and oracle source changes, e-mode category prices, reorgs (`removed` logs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from keeper.errors import KeeperError
from keeper.types import BlockRef, Event
from strategies.aave_v3 import events as ev
from strategies.aave_v3 import math
from strategies.aave_v3.market import Account, AccountReserve, Market, Reserve, account_data
from strategies.aave_v3.reserve_config import UserConfig

_ATOKEN, _VDEBT, _SDEBT = "atoken", "vdebt", "sdebt"


class BookError(KeeperError):
    """The logs cannot be applied to the book (a reorg, or a log the book cannot mirror)."""


@dataclass
class _Position:
    """One user's mutable state: the configuration bitmap, e-mode and per-asset balances."""

    config: int
    emode: int
    scaled_atoken: dict[str, int]
    scaled_vdebt: dict[str, int]
    stable_principal: dict[str, int]
    stable_rate: dict[str, int]
    stable_last: dict[str, int]

    @classmethod
    def empty(cls) -> _Position:
        return cls(0, 0, {}, {}, {}, {}, {})

    @classmethod
    def of(cls, account: Account) -> _Position:
        b = account.balances
        return cls(
            account.config.data, account.emode_category,
            {a: r.scaled_atoken_balance for a, r in b.items()},
            {a: r.scaled_variable_debt for a, r in b.items()},
            {a: r.stable_principal for a, r in b.items()},
            {a: r.stable_rate for a, r in b.items()},
            {a: r.stable_last_updated for a, r in b.items()},
        )

    def set_bit(self, bit: int, on: bool) -> None:
        self.config = self.config | (1 << bit) if on else self.config & ~(1 << bit)


class PositionBook:
    """A market's reserves and accounts, updated purely from the market's logs."""

    def __init__(self, market: Market, accounts: Iterable[Account]) -> None:
        self._market = market
        self._reserves: dict[str, Reserve] = {r.asset: r for r in market.reserves}
        self._tokens: dict[str, tuple[str, str]] = {}
        for r in market.reserves:
            self._tokens[r.a_token] = (_ATOKEN, r.asset)
            self._tokens[r.variable_debt_token] = (_VDEBT, r.asset)
            self._tokens[r.stable_debt_token] = (_SDEBT, r.asset)
        self._sources: dict[str, list[str]] = {}
        for r in market.reserves:
            self._sources.setdefault(r.feed, []).append(r.asset)
        self._positions: dict[str, _Position] = {a.user.lower(): _Position.of(a) for a in accounts}
        self._debt_before: dict[tuple[str, str, str], int] = {}
        self._accounts: dict[str, Account] = {}
        self.block: BlockRef | None = None
        self.touched: set[str] = set()
        self.needs_read: set[str] = set()

    # ------------------------------------------------------------------ views

    @property
    def market(self) -> Market:
        """The market as the logs applied so far leave it (reserves and prices updated)."""
        return replace(self._market, reserves=tuple(
            sorted(self._reserves.values(), key=lambda r: r.id)
        ))

    @property
    def users(self) -> list[str]:
        return list(self._positions)

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every contract whose logs the book needs: the pool, the reserves' tokens, the feeds."""
        return (self._market.pool, *self._tokens, *(s for s in self._sources if int(s, 16)))

    def account(self, user: str) -> Account:
        """The user's `Account` (cached until one of its logs changes the position)."""
        user = user.lower()
        cached = self._accounts.get(user)
        if cached is not None:
            return cached
        p = self._positions[user]
        balances = {
            asset: AccountReserve(
                p.scaled_atoken.get(asset, 0), p.scaled_vdebt.get(asset, 0),
                p.stable_principal.get(asset, 0), p.stable_rate.get(asset, 0),
                p.stable_last.get(asset, 0),
            )
            for asset in self._reserves
        }
        account = self._accounts[user] = Account(
            user, UserConfig.decode(p.config), p.emode, balances)
        return account

    def account_data(self, user: str, timestamp: int) -> math.UserAccountData:
        """Pool.getUserAccountData of `user` at `timestamp`, from the book (market.account_data)."""
        return account_data(self.market, self.account(user), timestamp)

    def health(self, user: str, timestamp: int) -> int:
        """The user's health factor (wad) at `timestamp`."""
        return self.account_data(user, timestamp).health_factor

    def drain_touched(self) -> set[str]:
        """The accounts changed since the last call (and forget them)."""
        touched, self.touched = self.touched, set()
        return touched

    # ------------------------------------------------------------------ updates

    def apply(self, events: Sequence[Event], block: BlockRef) -> None:
        """Apply one block's logs (any order; applied by log index). No I/O."""
        for event in sorted(events, key=lambda e: e.log_index):
            if event.removed:
                raise BookError(f"removed log at block {event.block_number}: resync the book")
            if event.block_number != block.number:
                raise BookError(f"log of block {event.block_number} applied as {block.number}")
            self._apply_one(event, block.timestamp)
        self._debt_before.clear()
        self.block = block

    def _position(self, user: str) -> _Position:
        """The user's mutable position; every change goes through here (so drop the cache)."""
        user = user.lower()
        self.touched.add(user)
        self._accounts.pop(user, None)
        position = self._positions.get(user)
        if position is None:
            position = self._positions[user] = _Position.empty()
        return position

    def _apply_one(self, event: Event, now: int) -> None:
        address = event.address.lower()
        if address == self._market.pool:
            self._pool_event(ev.decode(event), event, now)
        elif address in self._tokens:
            kind, asset = self._tokens[address]
            self._token_event(kind, asset, ev.decode(event), event.transaction_hash, now)
        elif address in self._sources:
            record = ev.decode(event)
            if isinstance(record, ev.AnswerUpdated):
                for asset in self._sources[address]:
                    if record.current > 0:
                        self._reserves[asset] = replace(self._reserves[asset], price=record.current)
                    else:  # AaveOracle falls back to the fallback oracle: not mirrored
                        raise BookError(f"non-positive answer on {address}: re-read prices")

    def _pool_event(self, record: ev.AaveEvent | None, event: Event, now: int) -> None:
        match record:
            case ev.ReserveDataUpdated():
                self._reserves[record.reserve] = replace(
                    self._reserves[record.reserve],
                    liquidity_index=record.liquidity_index,
                    current_liquidity_rate=record.liquidity_rate,
                    variable_borrow_index=record.variable_borrow_index,
                    current_variable_borrow_rate=record.variable_borrow_rate,
                    current_stable_borrow_rate=record.stable_borrow_rate,
                    last_update_timestamp=now,
                )
            case ev.CollateralEnabled() | ev.CollateralDisabled():
                bit = 2 * self._reserves[record.reserve].id + 1
                self._position(record.user).set_bit(bit, isinstance(record, ev.CollateralEnabled))
            case ev.UserEModeSet():
                self._position(record.user).emode = record.category_id
            case ev.Repay():
                self._settle(event.transaction_hash, record.user, record.reserve, record.amount)
            case ev.LiquidationCall():
                self._settle(
                    event.transaction_hash, record.user, record.debt_asset, record.debt_to_cover
                )
                self._position(record.liquidator)
            case _:
                pass  # Supply/Withdraw/Borrow: the tokens' logs carry the balance changes

    def _settle(self, tx: str, user: str, asset: str, paid: int) -> None:
        """Clear the borrowing bit if `paid` was the whole debt before (Repay / Liquidation)."""
        before = self._debt_before.get((tx, user, asset))
        if before is None:  # no debt-token log in this transaction: cannot mirror the rule
            self.needs_read.add(user)
            self.touched.add(user)
            return
        if before == paid:
            self._position(user).set_bit(2 * self._reserves[asset].id, False)

    def _snapshot_debt(self, tx: str, user: str, asset: str, p: _Position, now: int) -> None:
        key = (tx, user, asset)
        if key in self._debt_before:
            return
        variable = math.variable_debt_balance(
            p.scaled_vdebt.get(asset, 0), self._reserves[asset].normalized_debt(now)
        )
        stable = math.stable_debt_balance(
            p.stable_principal.get(asset, 0), p.stable_rate.get(asset, 0),
            p.stable_last.get(asset, 0), now,
        )
        self._debt_before[key] = variable + stable

    def _token_event(
        self, kind: str, asset: str, record: ev.AaveEvent | None, tx: str, now: int
    ) -> None:
        borrowing_bit = 2 * self._reserves[asset].id
        match record:
            case ev.Mint():
                p = self._position(record.on_behalf_of)
                balances = p.scaled_atoken if kind == _ATOKEN else p.scaled_vdebt
                if kind == _VDEBT:
                    self._snapshot_debt(tx, record.on_behalf_of, asset, p, now)
                before = balances.get(asset, 0)
                if record.value > record.balance_increase:  # _mintScaled
                    amount = record.value - record.balance_increase
                    balances[asset] = before + math.ray_div(amount, record.index)
                    if kind == _VDEBT and before == 0:  # isFirstBorrowing
                        p.set_bit(borrowing_bit, True)
                elif record.value < record.balance_increase:  # _burnScaled, interest > amount
                    amount = record.balance_increase - record.value
                    balances[asset] = before - math.ray_div(amount, record.index)
            case ev.Burn():
                p = self._position(record.from_)
                balances = p.scaled_atoken if kind == _ATOKEN else p.scaled_vdebt
                if kind == _VDEBT:
                    self._snapshot_debt(tx, record.from_, asset, p, now)
                amount = record.value + record.balance_increase
                balances[asset] = balances.get(asset, 0) - math.ray_div(amount, record.index)
            case ev.BalanceTransfer():  # value is scaled in 1.19.3
                src, dst = self._position(record.from_), self._position(record.to)
                src.scaled_atoken[asset] = src.scaled_atoken.get(asset, 0) - record.value
                dst.scaled_atoken[asset] = dst.scaled_atoken.get(asset, 0) + record.value
            case ev.StableMint():
                p = self._position(record.on_behalf_of)
                self._snapshot_debt(tx, record.on_behalf_of, asset, p, now)
                p.stable_principal[asset] = p.stable_principal.get(asset, 0) + record.amount
                p.stable_rate[asset] = record.new_rate
                p.stable_last[asset] = now
                if record.amount > record.balance_increase and record.current_balance == 0:
                    p.set_bit(borrowing_bit, True)
            case ev.StableBurn():
                p = self._position(record.from_)
                self._snapshot_debt(tx, record.from_, asset, p, now)
                p.stable_principal[asset] = p.stable_principal.get(asset, 0) - record.amount
                if record.amount + record.balance_increase == record.current_balance:
                    p.stable_rate[asset] = 0
                    p.stable_last[asset] = 0
                else:
                    p.stable_last[asset] = now
            case _:
                pass  # Transfer/Approval/Initialized: the scaled events above carry the state


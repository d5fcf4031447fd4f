"""The event-sourced Aave V3 position book: a market and its accounts, kept from logs alone.

Seeded from a `Market` and the `Account`s read at one block (market.py), `apply` mirrors the
1.19.3 contracts' storage writes from the logs of later blocks, with no I/O (on a v3.6 pool,
Mint/Burn are inverted through v3.5's rounding instead: `_scaled_event_v36`):

- reserve indexes/rates from `ReserveDataUpdated` (lastUpdateTimestamp = the block's timestamp);
- scaled aToken / variable-debt balances from Mint/Burn/BalanceTransfer, inverting
  ScaledBalanceTokenBase: `_mintScaled` emits Mint(value = amount + balanceIncrease), so
  scaled += rayDiv(value - balanceIncrease, index); `_burnScaled` emits Burn(value = amount -
  balanceIncrease) or Mint(value = balanceIncrease - amount), so scaled -= rayDiv(amount,
  index); `_transfer`'s interest Mints change nothing; BalanceTransfer's amount is SCALED;
- stable debt from StableDebtToken Mint/Burn (principal += / -= value; rate = newRate;
  timestamp = block time, or rate = timestamp = 0 when the whole balance is burned);
- the collateral bit from ReserveUsedAsCollateralEnabled/Disabled, e-mode from UserEModeSet;
- the borrowing bit as BorrowLogic/LiquidationLogic set it: on a debt mint whose previous
  balance was 0, cleared at Repay when `stableDebt + variableDebt == paybackAmount` and at
  LiquidationCall when `userTotalDebt == actualDebtToLiquidate` (debt before: at the
  transaction's first debt-token log);
- oracle prices from the sources' AnswerUpdated (AaveOracle returns `latestAnswer` when > 0);
  silent sources are re-read by the strategy (prices.py) and set with `reprice`.

Users first named by a state-changing event start empty: the book must be seeded with every
account that had a position at the seed block. Not mirrored (the owner must re-read): reserve
configuration and oracle source changes, e-mode category prices, reorgs (`removed` logs).

Memory (issue 8: a million positions well under 2 GB): a position is a slotted object with
the config word, the e-mode id and ONE dict from asset to a slotted `_Balance` of the five
raw ints, for the reserves where one is non-zero (an absent asset reads as zeros); `Account`s
are built on demand, the ACCOUNT_CACHE most recently used kept (bench_screening.py: 585 MB).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import replace

from keeper.errors import StrategyError
from keeper.types import BlockRef, Event
from strategies.aave_v3 import events as ev
from strategies.aave_v3 import math, math_v36
from strategies.aave_v3.market import Account, AccountReserve, Market, Reserve, account_data
from strategies.aave_v3.reserve_config import UserConfig
from strategies.aave_v3.rules import RuleSet

_ATOKEN, _VDEBT, _SDEBT = "atoken", "vdebt", "sdebt"
_ZERO = AccountReserve(0, 0, 0, 0, 0)  # frozen: shared by every untouched reserve of an Account
ACCOUNT_CACHE = 4096  # Accounts kept (least recently used dropped): the book is the truth


class BookError(StrategyError):
    """The logs cannot be applied to the book (a reorg, or a log the book cannot mirror)."""


class _Balance:
    """One user's raw balances in one reserve (mutable; slotted: ~72 bytes plus the ints)."""

    __slots__ = ("atoken", "last", "principal", "rate", "vdebt")

    def __init__(
        self, atoken: int = 0, vdebt: int = 0, principal: int = 0, rate: int = 0, last: int = 0
    ) -> None:
        self.atoken = atoken
        self.vdebt = vdebt
        self.principal = principal
        self.rate = rate
        self.last = last

    def __bool__(self) -> bool:
        return bool(self.atoken or self.vdebt or self.principal or self.rate or self.last)

    def reserve(self) -> AccountReserve:
        return AccountReserve(self.atoken, self.vdebt, self.principal, self.rate, self.last)


_NONE = _Balance()  # read-only stand-in for an absent entry: every field 0


class _Position:
    """One user's mutable state: the configuration bitmap, e-mode and, per asset the user
    holds anything in, a `_Balance`. An absent asset reads as all zeros (as the 5 dicts'
    `.get(asset, 0)` did), so entries that fall back to all zeros are dropped."""

    __slots__ = ("balances", "config", "emode")

    def __init__(self, config: int = 0, emode: int = 0,
                 balances: dict[str, _Balance] | None = None) -> None:
        self.config = config
        self.emode = emode
        self.balances: dict[str, _Balance] = {} if balances is None else balances

    def get(self, asset: str) -> _Balance:
        """The asset's balances; do not mutate (may be the shared all-zero `_NONE`)."""
        return self.balances.get(asset, _NONE)

    def entry(self, asset: str) -> _Balance:
        """The asset's balances, created (all zero) if absent; `prune` after the change."""
        b = self.balances.get(asset)
        if b is None:
            b = self.balances[asset] = _Balance()
        return b

    def prune(self, asset: str) -> None:
        if not self.balances.get(asset, True):
            del self.balances[asset]

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
        # consumed lazily: a generator of Accounts seeds a big book without holding them all
        self._positions: dict[str, _Position] = {a.user.lower(): self._seed(a) for a in accounts}
        self._debt_before: dict[tuple[str, str, str], int] = {}
        # least recently used first; bounded: a full pass must not pin an Account per user
        self._accounts: OrderedDict[str, Account] = OrderedDict()
        self.block: BlockRef | None = None
        self.touched: set[str] = set()
        self.needs_read: set[str] = set()
        self._v36 = market.rules is RuleSet.V3_6

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

    def account(self, user: str, *, cache: bool = True) -> Account:
        """The user's `Account`, with every reserve (untouched ones all zero).

        Built from the position on demand; with `cache`, kept among the ACCOUNT_CACHE most
        recently used until one of its logs changes the position. A full pass over the book
        (the screen's build) should pass `cache=False`: it would only evict the useful ones.
        """
        user = user.lower()
        cached = self._accounts.get(user)
        if cached is not None:
            self._accounts.move_to_end(user)
            return cached
        p = self._positions[user]
        balances = dict.fromkeys(self._reserves, _ZERO)
        for asset, b in p.balances.items():
            balances[asset] = b.reserve()
        account = Account(user, UserConfig.decode(p.config), p.emode, balances)
        if cache:
            self._accounts[user] = account
            if len(self._accounts) > ACCOUNT_CACHE:
                self._accounts.popitem(last=False)
        return account

    def account_data(self, user: str, timestamp: int) -> math.UserAccountData:
        """Pool.getUserAccountData of `user` at `timestamp`, from the book (market.account_data)."""
        return account_data(self.market, self.account(user), timestamp)

    def health(self, user: str, timestamp: int) -> int:
        """The user's health factor (wad) at `timestamp`."""
        return self.account_data(user, timestamp).health_factor

    def reprice(self, reserves: Iterable[Reserve], sentinel_allows: bool | None = None) -> None:
        """Set reserves and the sentinel's verdict read from the chain (prices.py)."""
        if sentinel_allows is not None:
            self._market = replace(self._market, sentinel_allows=sentinel_allows)
        for r in reserves:
            self._reserves[r.asset] = r
        self._sources = {}
        for r in self._reserves.values():
            self._sources.setdefault(r.feed, []).append(r.asset)

    def drain_touched(self) -> set[str]:
        """The accounts changed since the last call (and forget them)."""
        touched, self.touched = self.touched, set()
        return touched

    # ------------------------------------------------------------------ updates

    def _seed(self, account: Account) -> _Position:
        """The position of a read `Account`: only its non-zero reserves, keyed by the
        reserve's own asset string (one shared object instead of one per user)."""
        balances: dict[str, _Balance] = {}
        for asset, r in account.balances.items():
            reserve = self._reserves.get(asset)
            if reserve is None:
                continue  # not a listed reserve: never read (account() lists the reserves)
            b = _Balance(r.scaled_atoken_balance, r.scaled_variable_debt, r.stable_principal,
                         r.stable_rate, r.stable_last_updated)
            if b:
                balances[reserve.asset] = b
        return _Position(account.config.data, account.emode_category, balances)

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
            position = self._positions[user] = _Position()
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
            case ev.Repay() if not self._v36:  # v3.6: the debt token's burn tells (below)
                self._settle(event.transaction_hash, record.user, record.reserve, record.amount)
            case ev.LiquidationCall():
                if not self._v36:
                    self._settle(event.transaction_hash, record.user, record.debt_asset,
                                 record.debt_to_cover)
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
        b = p.get(asset)
        variable = math.variable_debt_balance(b.vdebt, self._reserves[asset].normalized_debt(now))
        stable = math.stable_debt_balance(b.principal, b.rate, b.last, now)
        self._debt_before[key] = variable + stable

    def _token_event(
        self, kind: str, asset: str, record: ev.AaveEvent | None, tx: str, now: int
    ) -> None:
        borrowing_bit = 2 * self._reserves[asset].id
        if self._v36 and isinstance(record, ev.Mint | ev.Burn):
            self._scaled_event_v36(kind, asset, record, borrowing_bit)
            return
        match record:
            case ev.Mint():
                p = self._position(record.on_behalf_of)
                if kind == _VDEBT:
                    self._snapshot_debt(tx, record.on_behalf_of, asset, p, now)
                if record.value > record.balance_increase:  # _mintScaled
                    b = p.entry(asset)
                    amount = math.ray_div(record.value - record.balance_increase, record.index)
                    if kind == _ATOKEN:
                        b.atoken += amount
                    else:
                        if b.vdebt == 0:  # isFirstBorrowing
                            p.set_bit(borrowing_bit, True)
                        b.vdebt += amount
                    p.prune(asset)
                elif record.value < record.balance_increase:  # _burnScaled, interest > amount
                    b = p.entry(asset)
                    amount = math.ray_div(record.balance_increase - record.value, record.index)
                    if kind == _ATOKEN:
                        b.atoken -= amount
                    else:
                        b.vdebt -= amount
                    p.prune(asset)
            case ev.Burn():
                p = self._position(record.from_)
                if kind == _VDEBT:
                    self._snapshot_debt(tx, record.from_, asset, p, now)
                b = p.entry(asset)
                amount = math.ray_div(record.value + record.balance_increase, record.index)
                if kind == _ATOKEN:
                    b.atoken -= amount
                else:
                    b.vdebt -= amount
                p.prune(asset)
            case ev.BalanceTransfer():  # value is scaled in 1.19.3
                src, dst = self._position(record.from_), self._position(record.to)
                src.entry(asset).atoken -= record.value
                src.prune(asset)  # src may be dst: settle src's entry before dst's
                dst.entry(asset).atoken += record.value
                dst.prune(asset)
            case ev.StableMint():
                p = self._position(record.on_behalf_of)
                self._snapshot_debt(tx, record.on_behalf_of, asset, p, now)
                b = p.entry(asset)
                b.principal += record.amount
                b.rate = record.new_rate
                b.last = now
                p.prune(asset)
                if record.amount > record.balance_increase and record.current_balance == 0:
                    p.set_bit(borrowing_bit, True)
            case ev.StableBurn():
                p = self._position(record.from_)
                self._snapshot_debt(tx, record.from_, asset, p, now)
                b = p.entry(asset)
                b.principal -= record.amount
                if record.amount + record.balance_increase == record.current_balance:
                    b.rate = 0
                    b.last = 0
                else:
                    b.last = now
                p.prune(asset)
            case _:
                pass  # Transfer/Approval/Initialized: the scaled events above carry the state

    def _scaled_event_v36(
        self, kind: str, asset: str, record: ev.Mint | ev.Burn, borrowing_bit: int
    ) -> None:
        """v3.5+ Mint/Burn values are differences of rounded balances (aTokens floor, debt
        ceil): the scaled balance after is the one whose balance is f(before) - increase +/-
        value (math_v36.scaled_from_balance). The borrowing bit follows the scaled debt:
        set by the first mint, cleared when it reaches 0 (noMoreDebt)."""
        user = record.on_behalf_of if isinstance(record, ev.Mint) else record.from_
        p = self._position(user)
        b = p.entry(asset)
        ceil = kind == _VDEBT
        before = b.vdebt if ceil else b.atoken
        balance = (math_v36.variable_debt_balance(before, record.index) if ceil
                   else math_v36.atoken_balance(before, record.index))
        sign = 1 if isinstance(record, ev.Mint) else -1
        after_balance = balance - record.balance_increase + sign * record.value
        try:
            after = math_v36.scaled_from_balance(after_balance, record.index, ceil=ceil)
        except ValueError as exc:
            raise BookError(f"{kind} log of {user} does not fit the book: {exc}") from exc
        if ceil:
            b.vdebt = after
            if before == 0 and after > 0:
                p.set_bit(borrowing_bit, True)
            elif after == 0 and before > 0:
                p.set_bit(borrowing_bit, False)
        else:
            b.atoken = after
        p.prune(asset)


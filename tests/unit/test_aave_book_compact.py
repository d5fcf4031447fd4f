"""The compact `PositionBook` (issue 8) keeps the five-dict book's semantics, bit for bit.

`_Reference` restates the previous storage (per user: config, e-mode and five dicts keyed by
asset, zeros kept) and its update rules; random blocks of hand-encoded logs (supplies,
interest-only mints, burns to exactly zero, borrows and first borrows, repays that clear the
borrowing bit or need a read, transfers including to oneself, stable mints and whole burns,
collateral bits, e-mode, index updates, liquidations naming new users) go to both, and after
every block each account, the user order, the touched set and `needs_read` must be equal.
Also: seeding round-trips exactly, zeros are not stored, and the Account cache is bounded
and never serves an account its logs changed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import pytest
from eth_abi.abi import encode

from benchmarks.synthetic_book import generate, make_market
from keeper.types import BlockRef, Event
from strategies.aave_v3 import book as book_module
from strategies.aave_v3 import events as ev
from strategies.aave_v3 import math
from strategies.aave_v3.book import PositionBook
from strategies.aave_v3.market import Account, AccountReserve, Market, Reserve
from strategies.aave_v3.reserve_config import UserConfig

RAY = math.RAY
T0 = 1_700_000_000


class _Reference:
    """The pre-issue-8 book: five dicts per user, every value kept (zeros too)."""

    def __init__(self, market: Market, accounts: list[Account]) -> None:
        self.pool = market.pool
        self.reserves: dict[str, Reserve] = {r.asset: r for r in market.reserves}
        self.tokens: dict[str, tuple[str, str]] = {}
        for r in market.reserves:
            self.tokens[r.a_token] = ("atoken", r.asset)
            self.tokens[r.variable_debt_token] = ("vdebt", r.asset)
            self.tokens[r.stable_debt_token] = ("sdebt", r.asset)
        self.pos: dict[str, list[object]] = {}
        for a in accounts:
            b = a.balances
            self.pos[a.user.lower()] = [
                a.config.data, a.emode_category,
                {k: r.scaled_atoken_balance for k, r in b.items()},
                {k: r.scaled_variable_debt for k, r in b.items()},
                {k: r.stable_principal for k, r in b.items()},
                {k: r.stable_rate for k, r in b.items()},
                {k: r.stable_last_updated for k, r in b.items()},
            ]
        self.debt_before: dict[tuple[str, str, str], int] = {}
        self.touched: set[str] = set()
        self.needs_read: set[str] = set()

    def p(self, user: str) -> list[object]:
        user = user.lower()
        self.touched.add(user)
        return self.pos.setdefault(user, [0, 0, {}, {}, {}, {}, {}])

    @staticmethod
    def d(p: list[object], i: int) -> dict[str, int]:
        out = p[i]
        assert isinstance(out, dict)
        return out

    def set_bit(self, p: list[object], bit: int, on: bool) -> None:
        c = p[0]
        assert isinstance(c, int)
        p[0] = c | (1 << bit) if on else c & ~(1 << bit)

    def debt(self, user: str, asset: str, now: int) -> int:
        p = self.pos.get(user, [0, 0, {}, {}, {}, {}, {}])
        variable = math.variable_debt_balance(
            self.d(p, 3).get(asset, 0), self.reserves[asset].normalized_debt(now))
        return variable + math.stable_debt_balance(
            self.d(p, 4).get(asset, 0), self.d(p, 5).get(asset, 0), self.d(p, 6).get(asset, 0),
            now)

    def snapshot(self, tx: str, user: str, asset: str, now: int) -> None:
        self.debt_before.setdefault((tx, user, asset), self.debt(user, asset, now))

    def account(self, user: str) -> Account:
        p = self.pos[user]
        balances = {a: AccountReserve(*(self.d(p, i).get(a, 0) for i in range(2, 7)))
                    for a in self.reserves}
        config, emode = p[0], p[1]
        assert isinstance(config, int) and isinstance(emode, int)
        return Account(user, UserConfig.decode(config), emode, balances)

    def apply(self, events: list[Event], block: BlockRef) -> None:
        for e in sorted(events, key=lambda e: e.log_index):
            self.one(e, block.timestamp)
        self.debt_before.clear()

    def settle(self, tx: str, user: str, asset: str, paid: int) -> None:
        before = self.debt_before.get((tx, user, asset))
        if before is None:
            self.needs_read.add(user)
            self.touched.add(user)
        elif before == paid:
            self.set_bit(self.p(user), 2 * self.reserves[asset].id, False)

    def one(self, e: Event, now: int) -> None:
        record, tx = ev.decode(e), e.transaction_hash
        if e.address == self.pool:
            match record:
                case ev.ReserveDataUpdated():
                    self.reserves[record.reserve] = replace(
                        self.reserves[record.reserve], liquidity_index=record.liquidity_index,
                        current_liquidity_rate=record.liquidity_rate,
                        variable_borrow_index=record.variable_borrow_index,
                        current_variable_borrow_rate=record.variable_borrow_rate,
                        current_stable_borrow_rate=record.stable_borrow_rate,
                        last_update_timestamp=now)
                case ev.CollateralEnabled() | ev.CollateralDisabled():
                    self.set_bit(self.p(record.user), 2 * self.reserves[record.reserve].id + 1,
                                 isinstance(record, ev.CollateralEnabled))
                case ev.UserEModeSet():
                    self.p(record.user)[1] = record.category_id
                case ev.Repay():
                    self.settle(tx, record.user, record.reserve, record.amount)
                case ev.LiquidationCall():
                    self.settle(tx, record.user, record.debt_asset, record.debt_to_cover)
                    self.p(record.liquidator)
            return
        kind, asset = self.tokens[e.address]
        bit = 2 * self.reserves[asset].id
        match record:
            case ev.Mint():
                p = self.p(record.on_behalf_of)
                bal = self.d(p, 2 if kind == "atoken" else 3)
                if kind == "vdebt":
                    self.snapshot(tx, record.on_behalf_of, asset, now)
                before = bal.get(asset, 0)
                if record.value > record.balance_increase:
                    bal[asset] = before + math.ray_div(
                        record.value - record.balance_increase, record.index)
                    if kind == "vdebt" and before == 0:
                        self.set_bit(p, bit, True)
                elif record.value < record.balance_increase:
                    bal[asset] = before - math.ray_div(
                        record.balance_increase - record.value, record.index)
            case ev.Burn():
                p = self.p(record.from_)
                bal = self.d(p, 2 if kind == "atoken" else 3)
                if kind == "vdebt":
                    self.snapshot(tx, record.from_, asset, now)
                bal[asset] = bal.get(asset, 0) - math.ray_div(
                    record.value + record.balance_increase, record.index)
            case ev.BalanceTransfer():
                src, dst = self.d(self.p(record.from_), 2), self.d(self.p(record.to), 2)
                src[asset] = src.get(asset, 0) - record.value
                dst[asset] = dst.get(asset, 0) + record.value
            case ev.StableMint():
                p = self.p(record.on_behalf_of)
                self.snapshot(tx, record.on_behalf_of, asset, now)
                self.d(p, 4)[asset] = self.d(p, 4).get(asset, 0) + record.amount
                self.d(p, 5)[asset] = record.new_rate
                self.d(p, 6)[asset] = now
                if record.amount > record.balance_increase and record.current_balance == 0:
                    self.set_bit(p, bit, True)
            case ev.StableBurn():
                p = self.p(record.from_)
                self.snapshot(tx, record.from_, asset, now)
                self.d(p, 4)[asset] = self.d(p, 4).get(asset, 0) - record.amount
                if record.amount + record.balance_increase == record.current_balance:
                    self.d(p, 5)[asset] = 0
                    self.d(p, 6)[asset] = 0
                else:
                    self.d(p, 6)[asset] = now


def _word(kind: str, value: object) -> str:
    return "0x" + encode([kind], [value]).hex()


class _Blocks:
    """Random blocks of encoded logs for `market`'s pool and tokens. Each transaction is
    applied to the reference as it is made, so amounts never exceed what a user holds."""

    def __init__(self, market: Market, users: list[str], seed: int) -> None:
        self.market = market
        self.rng = random.Random(seed)
        self.users = users
        self.fresh = [f"0x{0xD0:02x}{i:038x}" for i in range(40)]  # not in the seed
        self.logs: list[Event] = []
        self.block = 0
        self.tx = ""

    def log(self, address: str, sig: str, indexed: Sequence[tuple[str, object]],
            data: Sequence[tuple[str, object]]) -> None:
        topics = (ev.topic(sig), *(_word(k, v) for k, v in indexed))
        payload = "0x" + encode([k for k, _ in data], [v for _, v in data]).hex()
        self.logs.append(Event(address, topics, payload, self.block, "0x" + "00" * 32, self.tx,
                               0, len(self.logs)))

    def user(self) -> str:
        pool = self.fresh if self.rng.random() < 0.15 else self.users
        return self.rng.choice(pool)

    def index(self) -> int:
        # RAY makes ray_div exact, so burns can empty a balance to exactly zero
        return RAY if self.rng.random() < 0.4 else RAY + self.rng.randrange(RAY // 5)

    def amount(self) -> int:
        return self.rng.choice([0, 1, self.rng.randrange(10**6), self.rng.randrange(10**24)])

    def upto(self, held: int, index: int) -> int:
        """An unscaled amount whose rayDiv by `index` is at most `held`: all of it or less."""
        top = held if index == RAY else max(0, held * index // RAY - 1)
        return top if self.rng.random() < 0.5 else self.rng.randrange(top + 1)

    def scaled_mint(self, token: str, user: str, held: int) -> None:
        index = self.index()
        if self.rng.random() < 0.7:  # _mintScaled, or interest only (value == bi)
            bi = self.amount()
            value = bi + (self.amount() if self.rng.random() < 0.8 else 0)
        else:  # _burnScaled with interest above the amount: a Mint that lowers the balance
            value = self.amount()
            bi = value + self.upto(held, index)
        self.log(token, ev.MINT_SIG, [("address", user), ("address", user)],
                 [("uint256", value), ("uint256", bi), ("uint256", index)])

    def burn(self, token: str, user: str, held: int) -> None:
        index = self.index()
        total = self.upto(held, index)
        bi = self.rng.randrange(total + 1)
        self.log(token, ev.BURN_SIG, [("address", user), ("address", user)],
                 [("uint256", total - bi), ("uint256", bi), ("uint256", index)])

    def next_block(self, ref: _Reference) -> tuple[list[Event], BlockRef]:
        self.block += 1
        now = T0 + 12 * self.block
        block = BlockRef(self.block, f"0x{self.block:064x}", "0x" + "00" * 32, now)
        self.logs = []
        for t in range(self.rng.randint(1, 3)):
            self.tx = f"0x{self.block:032x}{t:032x}"
            start = len(self.logs)
            self.action(ref, now)
            ref.apply(self.logs[start:], block)
        return self.logs, block

    def action(self, ref: _Reference, now: int) -> None:
        rng, pool = self.rng, self.market.pool
        r = rng.choice(self.market.reserves)
        user = self.user()
        p = ref.pos.get(user, [0, 0, {}, {}, {}, {}, {}])
        atoken, vdebt = ref.d(p, 2).get(r.asset, 0), ref.d(p, 3).get(r.asset, 0)
        kind = rng.randrange(12)
        if kind == 0:
            self.scaled_mint(r.a_token, user, atoken)
        elif kind == 1:
            self.scaled_mint(r.variable_debt_token, user, vdebt)
        elif kind == 2:
            self.burn(r.a_token, user, atoken)
        elif kind == 3:  # repay: debt-token burn, then Repay (paid = the whole debt or not)
            paid = ref.debt(user, r.asset, now) if rng.random() < 0.6 else self.amount()
            self.burn(r.variable_debt_token, user, vdebt)
            self.log(pool, ev.REPAY_SIG, [("address", r.asset), ("address", user),
                                          ("address", user)],
                     [("uint256", paid), ("bool", False)])
        elif kind == 4:  # a Repay with no debt-token log: cannot be mirrored
            self.log(pool, ev.REPAY_SIG, [("address", r.asset), ("address", user),
                                          ("address", user)], [("uint256", 5), ("bool", True)])
        elif kind == 5:
            to = user if rng.random() < 0.2 else self.user()
            self.log(r.a_token, ev.BALANCE_TRANSFER_SIG, [("address", user), ("address", to)],
                     [("uint256", self.upto(atoken, RAY)), ("uint256", self.index())])
        elif kind == 6:
            self.log(r.stable_debt_token, ev.STABLE_MINT_SIG,
                     [("address", user), ("address", user)],
                     [("uint256", self.amount()), ("uint256", rng.choice([0, 7])),
                      ("uint256", self.amount()), ("uint256", rng.randrange(RAY // 10)),
                      ("uint256", 0), ("uint256", 0)])
        elif kind == 7:
            amount, bi = self.upto(ref.d(p, 4).get(r.asset, 0), RAY), self.amount()
            current = amount + bi if rng.random() < 0.5 else self.amount()
            self.log(r.stable_debt_token, ev.STABLE_BURN_SIG, [("address", user)],
                     [("uint256", amount), ("uint256", current), ("uint256", bi),
                      ("uint256", 0), ("uint256", 0)])
        elif kind == 8:
            sig = ev.COLLATERAL_ENABLED_SIG if rng.random() < 0.5 else ev.COLLATERAL_DISABLED_SIG
            self.log(pool, sig, [("address", r.asset), ("address", user)], [])
        elif kind == 9:
            self.log(pool, ev.USER_EMODE_SET_SIG, [("address", user)],
                     [("uint8", rng.choice([0, 1, 2]))])
        elif kind == 10:
            self.log(pool, ev.RESERVE_DATA_UPDATED_SIG, [("address", r.asset)],
                     [("uint256", rng.randrange(RAY // 10)) for _ in range(3)]
                     + [("uint256", self.index()), ("uint256", self.index())])
        else:  # liquidation: debt burn, then the call (the liquidator may be new)
            paid = ref.debt(user, r.asset, now) if rng.random() < 0.5 else self.amount()
            self.burn(r.variable_debt_token, user, vdebt)
            c = rng.choice(self.market.reserves)
            self.log(pool, ev.LIQUIDATION_CALL_SIG, [("address", c.asset), ("address", r.asset),
                                                     ("address", user)],
                     [("uint256", paid), ("uint256", 1), ("address", self.user()),
                      ("bool", rng.random() < 0.5)])


def _stored_zeros(book: PositionBook) -> int:
    return sum(not b for p in book._positions.values() for b in p.balances.values())


def test_compact_book_equals_the_five_dict_book_on_random_logs() -> None:
    synthetic = generate(300, seed=5, stable_share=0.2)
    market = synthetic.market
    accounts = [synthetic.book.account(i) for i in range(len(synthetic.book))]
    book, ref = PositionBook(market, accounts), _Reference(market, accounts)
    blocks = _Blocks(market, book.users, seed=11)
    for _ in range(600):
        events, block = blocks.next_block(ref)  # applied to the reference as it is made
        book.apply(events, block)
        assert book.drain_touched() == ref.touched
        ref.touched = set()
        assert book.needs_read == ref.needs_read
        assert book.users == list(ref.pos)
        for user in book.users:
            assert book.account(user) == ref.account(user), user
        assert _stored_zeros(book) == 0
    assert book.market.reserves == tuple(sorted(ref.reserves.values(), key=lambda r: r.id))


def test_seeding_round_trips_and_stores_only_non_zero_reserves() -> None:
    synthetic = generate(500, seed=2, stable_share=0.5)
    accounts = [synthetic.book.account(i) for i in range(len(synthetic.book))]
    book = PositionBook(synthetic.market, iter(accounts))  # any iterable, consumed once
    assert book.users == [a.user for a in accounts]
    for a in accounts:
        assert book.account(a.user, cache=False) == a
        held = {k for k, r in a.balances.items() if r != AccountReserve(0, 0, 0, 0, 0)}
        assert set(book._positions[a.user].balances) == held
    assert _stored_zeros(book) == 0


def test_account_cache_is_bounded_and_never_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    market = make_market()
    synthetic = generate(60, seed=3, market=market)
    accounts = [synthetic.book.account(i) for i in range(60)]
    book = PositionBook(market, accounts)
    limit = 16
    monkeypatch.setattr(book_module, "ACCOUNT_CACHE", limit)
    users = book.users
    first = book.account(users[0])
    assert book.account(users[0]) is first  # cached
    assert book.account(users[1], cache=False) is not book.account(users[1], cache=False)
    for u in users[2:40]:
        book.account(u)
        book.account(users[0])  # kept: the most recently used
    assert len(book._accounts) == limit
    assert book.account(users[0]) is first
    assert users[2] not in book._accounts  # the least recently used went first
    # a log on the user drops its cached Account
    r = market.reserves[0]
    blocks = _Blocks(market, users, seed=1)
    blocks.block = 1
    blocks.tx = "0x" + "01" * 32
    blocks.log(market.pool, ev.USER_EMODE_SET_SIG, [("address", users[0])], [("uint8", 2)])
    book.apply(blocks.logs, BlockRef(1, "0x" + "01" * 32, "0x" + "00" * 32, T0))
    fresh = book.account(users[0])
    assert fresh is not first and fresh.emode_category == 2
    assert fresh.balances == first.balances and r.asset in fresh.balances

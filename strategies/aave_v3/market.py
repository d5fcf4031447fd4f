"""Aave V3 market discovery and account snapshots, read through a `ChainReader` in batches.

`discover` reads a market's reserves, oracle prices and e-mode categories at one block;
`read_accounts` reads many users' configuration, e-mode and scaled balances at one block
(hundreds of users per eth_call through the lens in `lens.py`, else batched per-value
calls; never one request per account); `account_data` computes `Pool.getUserAccountData`
locally with the exact mirrors in `math.py`.
Calldata is pre-encoded with eth_abi from the npm artifacts' ABIs.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from keeper.errors import KeeperError, MalformedAnswer, RpcUnavailable
from keeper.strategy import ChainReader
from strategies.aave_v3 import lens, math, math_v36
from strategies.aave_v3.reserve_config import ReserveConfig, UserConfig
from strategies.aave_v3.rules import RuleSet
from strategies.aave_v3.views import (
    AGGREGATOR,
    ZERO_ADDRESS,
    _address,
    _call,
    _fn,
    read_categories_v36,
    read_rules,
    read_sentinel,
    resolve_feeds,
)

__all__ = ["AGGREGATOR", "ZERO_ADDRESS", "read_rules", "read_sentinel", "resolve_feeds"]

@dataclass(frozen=True)
class Reserve:
    """One listed reserve as Pool.getReserveData and the oracle report it at a block."""

    asset: str
    id: int
    config: ReserveConfig
    liquidity_index: int
    current_liquidity_rate: int
    variable_borrow_index: int
    current_variable_borrow_rate: int
    current_stable_borrow_rate: int
    last_update_timestamp: int
    a_token: str
    stable_debt_token: str
    variable_debt_token: str
    price: int
    price_source: str
    # The contract that emits the source's AnswerUpdated: the source itself, or, for a
    # Chainlink EACAggregatorProxy, its current `aggregator()`.
    price_feed: str = ""
    # The rule set of the pool (rules.py): which mirrors apply to this reserve's indexes.
    rules: RuleSet = RuleSet.V3_0
    # v3.6: Pool.getLiquidationGracePeriod (liquidations revert until after it); 0 = none.
    grace_until: int = 0
    # The price is re-read from the oracle every block (Strategy.refresh): its source emits
    # no AnswerUpdated the book could follow (an adapter), or its proxy switched aggregator.
    polled: bool = False

    @property
    def feed(self) -> str:
        return self.price_feed or self.price_source

    @property
    def decimals(self) -> int:
        return self.config.decimals

    def normalized_income(self, timestamp: int) -> int:
        """Mirrors ReserveLogic.getNormalizedIncome at `timestamp`."""
        return _normalized_income(
            self.liquidity_index, self.current_liquidity_rate, self.last_update_timestamp,
            timestamp,
        )

    def normalized_debt(self, timestamp: int) -> int:
        """Mirrors ReserveLogic.getNormalizedDebt at `timestamp` (v3.4+ interest on v3.6)."""
        if self.rules is RuleSet.V3_6:
            return _normalized_debt_v36(
                self.variable_borrow_index, self.current_variable_borrow_rate,
                self.last_update_timestamp, timestamp,
            )
        return _normalized_debt(
            self.variable_borrow_index, self.current_variable_borrow_rate,
            self.last_update_timestamp, timestamp,
        )


# Every account of a block needs the same few reserve indexes: compute each once.
_normalized_income = functools.lru_cache(maxsize=256)(math.get_normalized_income)
_normalized_debt = functools.lru_cache(maxsize=256)(math.get_normalized_debt)
_normalized_debt_v36 = functools.lru_cache(maxsize=256)(math_v36.get_normalized_debt)


@dataclass(frozen=True)
class EModeCategory:
    """Pool.getEModeCategoryData, plus the oracle price of its price source (0 if none);
    on v3.6 the collateral config and the three bitmaps (no price source, no label read)."""

    id: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    price_source: str
    label: str
    price: int
    collateral_bitmap: int = 0
    borrowable_bitmap: int = 0
    ltvzero_bitmap: int = 0

    def v36(self) -> math_v36.EModeInput:
        """The category as math_v36 takes it."""
        return math_v36.EModeInput(
            self.ltv, self.liquidation_threshold, self.liquidation_bonus,
            self.collateral_bitmap, self.borrowable_bitmap, self.ltvzero_bitmap)


@dataclass(frozen=True)
class Market:
    """An Aave V3 market at one block: its contracts, reserves (by id order) and categories."""

    block: int
    addresses_provider: str
    pool: str
    oracle: str
    data_provider: str
    reserves: tuple[Reserve, ...]
    emode_categories: Mapping[int, EModeCategory]
    rules: RuleSet = RuleSet.V3_0
    revision: int = 1
    # v3.6: the PriceOracleSentinel (zero: none) and its isLiquidationAllowed() at `block`.
    sentinel: str = ZERO_ADDRESS
    sentinel_allows: bool = True

    def reserve(self, asset: str) -> Reserve:
        for reserve in self.reserves:
            if reserve.asset == asset.lower():
                return reserve
        raise KeeperError(f"asset {asset} is not listed in pool {self.pool}")


@dataclass(frozen=True)
class AccountReserve:
    """A user's raw balances in one reserve, as the tokens store them."""

    scaled_atoken_balance: int
    scaled_variable_debt: int
    stable_principal: int
    stable_rate: int
    stable_last_updated: int


@dataclass(frozen=True)
class Account:
    """A user's Pool state at one block: configuration bitmap, e-mode and per-reserve balances."""

    user: str
    config: UserConfig
    emode_category: int
    balances: Mapping[str, AccountReserve]  # by asset (lower-case)


async def discover(chain: ChainReader, addresses_provider: str, block: int) -> Market:
    """Read the market behind `addresses_provider` at `block` (four batched round trips)."""
    names = ("getPool", "getPriceOracle", "getPoolDataProvider")
    answers = await chain.batch(
        [_call(addresses_provider, _fn("provider", n).data(), block) for n in names]
    )
    pool, oracle, data_provider = (
        _address(_fn("provider", n).decode(a)[0]) for n, a in zip(names, answers, strict=True)
    )
    rules, revision = await read_rules(chain, pool, block)
    (assets,) = _fn("pool", "getReservesList").decode(
        await chain.eth_call(pool, _fn("pool", "getReservesList").data(), block)
    )
    assets = [_address(a) for a in assets]
    calls = [_call(pool, _fn("pool", "getReserveData").data(a), block) for a in assets]
    calls += [_call(oracle, _fn("oracle", "getAssetPrice").data(a), block) for a in assets]
    calls += [_call(oracle, _fn("oracle", "getSourceOfAsset").data(a), block) for a in assets]
    if rules is RuleSet.V3_6:
        calls += [_call(pool, _fn("pool", "getLiquidationGracePeriod").data(a), block)
                  for a in assets]
    answers = await chain.batch(calls)
    n = len(assets)
    reserves = []
    for i, asset in enumerate(assets):
        (data,) = _fn("pool", "getReserveData").decode(answers[i])
        (price,) = _fn("oracle", "getAssetPrice").decode(answers[n + i])
        (source,) = _fn("oracle", "getSourceOfAsset").decode(answers[2 * n + i])
        grace = (_fn("pool", "getLiquidationGracePeriod").decode(answers[3 * n + i])[0]
                 if rules is RuleSet.V3_6 else 0)
        reserves.append(
            Reserve(
                asset=asset, id=data[7], config=ReserveConfig.decode(data[0][0]),
                liquidity_index=data[1], current_liquidity_rate=data[2],
                variable_borrow_index=data[3], current_variable_borrow_rate=data[4],
                current_stable_borrow_rate=data[5], last_update_timestamp=data[6],
                a_token=_address(data[8]), stable_debt_token=_address(data[9]),
                variable_debt_token=_address(data[10]), price=price, price_source=_address(source),
                rules=rules, grace_until=grace,
            )
        )
    feeds = await resolve_feeds(chain, [r.price_source for r in reserves], block)
    reserves = [replace(r, price_feed=feeds[r.price_source]) for r in reserves]
    if rules is RuleSet.V3_6:
        categories = await _categories_v36(chain, pool, block)
        sentinel, allows = await read_sentinel(chain, addresses_provider, block)
    else:
        categories = await _categories_v30(chain, pool, oracle, reserves, block)
        sentinel, allows = ZERO_ADDRESS, True
    return Market(
        block=block, addresses_provider=addresses_provider.lower(), pool=pool, oracle=oracle,
        data_provider=data_provider, reserves=tuple(sorted(reserves, key=lambda r: r.id)),
        emode_categories=categories, rules=rules, revision=revision, sentinel=sentinel,
        sentinel_allows=allows,
    )


async def _categories_v36(chain: ChainReader, pool: str, block: int) -> dict[int, EModeCategory]:
    """v3.6: the categories by their bitmaps (views.read_categories_v36); no price source."""
    return {
        i: EModeCategory(
            id=i, ltv=ltv, liquidation_threshold=lt, liquidation_bonus=bonus,
            price_source=ZERO_ADDRESS, label="", price=0, collateral_bitmap=collateral,
            borrowable_bitmap=borrowable, ltvzero_bitmap=ltvzero)
        for i, (ltv, lt, bonus, collateral, borrowable, ltvzero)
        in (await read_categories_v36(chain, pool, block)).items()
    }


async def _categories_v30(
    chain: ChainReader, pool: str, oracle: str, reserves: Sequence[Reserve], block: int
) -> dict[int, EModeCategory]:
    """v3.0: the categories the reserves' e-mode bits name, with their price sources' prices."""
    ids = sorted({r.config.emode_category for r in reserves} - {0})
    answers = await chain.batch(
        [_call(pool, _fn("pool", "getEModeCategoryData").data(i), block) for i in ids]
    )
    raw = [_fn("pool", "getEModeCategoryData").decode(a)[0] for a in answers]
    sources = [_address(c[3]) for c in raw if _address(c[3]) != ZERO_ADDRESS]
    prices = dict(zip(sources, await chain.batch(
        [_call(oracle, _fn("oracle", "getAssetPrice").data(s), block) for s in sources]
    ), strict=True))
    return {
        i: EModeCategory(
            id=i, ltv=c[0], liquidation_threshold=c[1], liquidation_bonus=c[2],
            price_source=_address(c[3]), label=c[4],
            price=_fn("oracle", "getAssetPrice").decode(prices[_address(c[3])])[0]
            if _address(c[3]) in prices else 0,
        )
        for i, c in zip(ids, raw, strict=True)
    }


# Users per per-call read: each is 2 + 5 * reserves eth_calls, so ~4,400 calls per read.
ACCOUNTS_PER_CALL_READ = 200


async def read_accounts(
    chain: ChainReader, market: Market, users: Sequence[str], block: int
) -> dict[str, Account]:
    """Every user's configuration, e-mode and balances at `block`.

    Through the lens (`lens.py`: hundreds of users per eth_call); if the node refuses
    the lens's call, through the per-call path, `ACCOUNTS_PER_CALL_READ` users at a time.
    Both make the same view calls and give the same `Account`s.
    """
    if not users:
        return {}
    tokens = [
        t for r in market.reserves for t in (r.a_token, r.variable_debt_token, r.stable_debt_token)
    ]
    try:
        rows = await lens.read_rows(chain, market.pool, tokens, users, block)
    except (RpcUnavailable, MalformedAnswer):
        raise  # the endpoint is down or garbled: the per-call path would not fare better
    except KeeperError:  # the node refused the call (an RpcError, a NodeError included: no
        # state overrides, a lower gas cap), or its rows did not decode: the per-call path
        accounts: dict[str, Account] = {}
        for i in range(0, len(users), ACCOUNTS_PER_CALL_READ):
            accounts.update(await read_accounts_per_call(
                chain, market, users[i : i + ACCOUNTS_PER_CALL_READ], block))
        return accounts
    return {user: _account_from_row(market, user, row) for user, row in zip(users, rows,
                                                                            strict=True)}


def _account_from_row(market: Market, user: str, row: Sequence[int]) -> Account:
    """An Account from the lens's words: configuration, e-mode, then 5 per reserve."""
    config, emode = row[0], row[1]
    balances = {
        r.asset: AccountReserve(*row[2 + 5 * k : 7 + 5 * k]) for k, r in enumerate(market.reserves)
    }
    return Account(user, UserConfig.decode(config), emode, balances)


async def read_accounts_per_call(
    chain: ChainReader, market: Market, users: Sequence[str], block: int
) -> dict[str, Account]:
    """Every user's configuration, e-mode and balances at `block`, one eth_call per value
    (batched): the fallback of `read_accounts`, and the reference the lens is tested on."""
    per_reserve = (
        ("atoken", "scaledBalanceOf", "a_token"),
        ("vdebt", "scaledBalanceOf", "variable_debt_token"),
        ("sdebt", "principalBalanceOf", "stable_debt_token"),
        ("sdebt", "getUserStableRate", "stable_debt_token"),
        ("sdebt", "getUserLastUpdated", "stable_debt_token"),
    )
    calls = []
    for user in users:
        calls.append(_call(market.pool, _fn("pool", "getUserConfiguration").data(user), block))
        calls.append(_call(market.pool, _fn("pool", "getUserEMode").data(user), block))
        for reserve in market.reserves:
            for contract, name, target in per_reserve:
                to = getattr(reserve, target)
                calls.append(_call(to, _fn(contract, name).data(user), block))
    answers = iter(await chain.batch(calls))
    accounts = {}
    for user in users:
        ((config,),) = _fn("pool", "getUserConfiguration").decode(next(answers))
        (emode,) = _fn("pool", "getUserEMode").decode(next(answers))
        balances = {}
        for reserve in market.reserves:
            values = [_fn(c, n).decode(next(answers))[0] for c, n, _ in per_reserve]
            balances[reserve.asset] = AccountReserve(*values)
        accounts[user] = Account(user, UserConfig.decode(config), emode, balances)
    return accounts


def _in_use(market: Market, account: Account) -> Iterator[tuple[Reserve, AccountReserve, bool]]:
    """The reserves calculateUserAccountData reads (collateral or borrowed in the user's
    configuration, any version): each with the user's balances and whether it is borrowed."""
    for reserve in market.reserves:
        if account.config.is_using_as_collateral_or_borrowing(reserve.id):
            yield reserve, account.balances[reserve.asset], account.config.is_borrowing(reserve.id)


def account_data(market: Market, account: Account, timestamp: int) -> math.UserAccountData:
    """Mirrors GenericLogic.calculateUserAccountData (Pool.getUserAccountData) at `timestamp`.

    Only reserves the user's configuration marks as collateral or borrowed are read, as the
    contract does; the e-mode category's ltv/threshold and price apply to assets in it.
    On a v3.6 pool, GenericLogic.calculateUserAccountData of 3.6.0 (math_v36).
    """
    if market.rules is RuleSet.V3_6:
        return account_data_v36(market, account, timestamp)
    category = market.emode_categories.get(account.emode_category)
    inputs = []
    for reserve, balance, borrowing in _in_use(market, account):
        inputs.append(
            math.UserReserveInput(
                asset_unit=math.asset_unit(reserve.decimals),
                price=reserve.price,
                scaled_atoken_balance=balance.scaled_atoken_balance,
                scaled_variable_debt=balance.scaled_variable_debt,
                stable_debt_balance=math.stable_debt_balance(
                    balance.stable_principal, balance.stable_rate,
                    balance.stable_last_updated, timestamp,
                ) if borrowing else 0,
                normalized_income=reserve.normalized_income(timestamp),
                normalized_debt=reserve.normalized_debt(timestamp) if borrowing else 0,
                ltv=reserve.config.ltv,
                liquidation_threshold=reserve.config.liquidation_threshold,
                using_as_collateral=account.config.is_using_as_collateral(reserve.id),
                emode_category=reserve.config.emode_category,
                is_borrowing=borrowing,
            )
        )
    if category is None:
        return math.calculate_user_account_data(inputs, account.emode_category)
    return math.calculate_user_account_data(
        inputs, account.emode_category, category.ltv, category.liquidation_threshold,
        category.price,
    )


def account_data_v36(market: Market, account: Account, timestamp: int) -> math.UserAccountData:
    """Mirrors GenericLogic.calculateUserAccountData of v3.6 (math_v36) at `timestamp`: e-mode
    by the category's bitmaps, v3.4 interest, v3.5 rounding; stable debt no longer exists."""
    category = market.emode_categories.get(account.emode_category)
    inputs = []
    for reserve, balance, borrowing in _in_use(market, account):
        inputs.append(math_v36.ReserveInput(
            id=reserve.id, asset_unit=math.asset_unit(reserve.decimals), price=reserve.price,
            scaled_atoken_balance=balance.scaled_atoken_balance,
            scaled_variable_debt=balance.scaled_variable_debt,
            normalized_income=reserve.normalized_income(timestamp),
            normalized_debt=reserve.normalized_debt(timestamp) if borrowing else 0,
            ltv=reserve.config.ltv, liquidation_threshold=reserve.config.liquidation_threshold,
            using_as_collateral=account.config.is_using_as_collateral(reserve.id),
            is_borrowing=borrowing,
        ))
    return math_v36.calculate_user_account_data(
        inputs, account.emode_category, category.v36() if category else None)

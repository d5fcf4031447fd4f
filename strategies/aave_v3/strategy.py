"""The Aave V3 strategy: an event-sourced position book that offers liquidation candidates.

`sync` discovers the market and every account that ever touched the pool (from the pool's
logs since `start_block`, plus aToken transfers), reads them in batches and seeds a
`PositionBook`; `apply` feeds it each later block's logs (pure); `candidates` mirrors
LiquidationLogic.executeLiquidationCall (1.19.3) for every account with HF < 1 and every
(collateral, debt) pair it can be liquidated through; `build` encodes `liquidationCall`.

Candidate semantics (exact mirrors, at the block's timestamp):

- `max_repay` = LiquidationLogic._calculateDebt(uint max): the close factor (50 %, or 100 %
  when HF <= 0.95) of the user's whole debt in that asset (stable + variable).
- `seize(repay)` = the collateral the liquidator receives (`actualCollateralToLiquidate`,
  the protocol fee already deducted) when `liquidationCall(..., repay, false)` is sent;
  `repay` above `max_repay` is clamped as the contract does.
- When the user's collateral balance caps the seizure, the pool pulls LESS debt than
  `repay` (`debtAmountNeeded`, recomputed from the balance) and `seize` stays at the cap
  (the whole balance minus the fee) for every larger `repay`: `seize` is non-decreasing.
  `actual_repay(repay)` is the debt the pool really pulls.
- `gas_limit` = 450_000: a first estimate (a liquidationCall measures ~250-350k on the
  devnet); ranking uses it for the gas cost.
- `key` = "{chain_id}:{name}:{account}:{collateral}:{debt}:{price-state}", price-state a
  short hash of the two prices the liquidation would use: a new price makes a new key. (A
  price that returns exactly to an earlier value repeats an earlier key.)

Accounts the book cannot mirror (`needs_read`: a Repay/LiquidationCall with no debt-token
log) are left out of `candidates`, and so is everything after a log from the
PoolConfigurator or AaveOracle (configuration and price sources are not mirrored by the
book): either sets `needs_resync`, and the engine then re-syncs the strategy at the head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_utils.abi import function_signature_to_4byte_selector

from keeper.errors import KeeperError
from keeper.liquidation_curve import CurvePoint
from keeper.strategy import ChainReader, StrategyContext
from keeper.types import BlockRef, Call, Candidate, Event, FlashLeg, LogFilter, PositionRow
from strategies.aave_v3 import discovery, foresight, liquidation_v30, liquidation_v36, math, prices
from strategies.aave_v3 import events as ev
from strategies.aave_v3 import market as aave_market
from strategies.aave_v3.book import PositionBook
from strategies.aave_v3.config import AaveV3Config
from strategies.aave_v3.flash_leg import aave_flash_leg
from strategies.aave_v3.market import Account, Market
from strategies.aave_v3.rules import RuleSet
from strategies.aave_v3.screen import HealthScreen, ScreenError

GAS_LIMIT = 450_000  # first estimate for one liquidationCall; ranking prices gas with it
LIQUIDATION_CALL = "liquidationCall(address,address,address,uint256,bool)"
LIQUIDATION_CALL_SELECTOR = function_signature_to_4byte_selector(LIQUIDATION_CALL)
_SYMBOL = "0x" + function_signature_to_4byte_selector("symbol()").hex()
_GET_POOL_CONFIGURATOR = (
    "0x" + function_signature_to_4byte_selector("getPoolConfigurator()").hex()
)
# Pool logs that name a user who may hold a position, and the fields naming them.
_USER_TOPICS = (
    ev.TOPIC_SUPPLY, ev.TOPIC_BORROW, ev.TOPIC_WITHDRAW, ev.TOPIC_REPAY,
    ev.TOPIC_LIQUIDATION_CALL, ev.TOPIC_COLLATERAL_ENABLED, ev.TOPIC_COLLATERAL_DISABLED,
    ev.TOPIC_USER_EMODE_SET,
)


def _users_of(record: ev.AaveEvent | None) -> tuple[str, ...]:
    match record:
        case ev.Supply() | ev.Borrow():
            return (record.on_behalf_of,)
        case ev.Withdraw() | ev.Repay():
            return (record.user,)
        case ev.LiquidationCall():
            return (record.user, record.liquidator) if record.receive_atoken else (record.user,)
        case ev.CollateralEnabled() | ev.CollateralDisabled() | ev.UserEModeSet():
            return (record.user,)
        case ev.BalanceTransfer():
            return (record.to,)
        case _:
            return ()


def _decode_symbol(answer: str) -> str | None:
    raw = bytes.fromhex(answer.removeprefix("0x"))
    try:
        (text,) = decode(["string"], raw)
        return str(text)
    except (DecodingError, ValueError):  # a bytes32 symbol (MKR-style) is not a string
        if len(raw) == 32:
            return raw.rstrip(b"\0").decode("utf-8", "replace") or None
        return None


def _price_state(*prices: int) -> str:
    return hashlib.sha256(":".join(map(str, prices)).encode()).hexdigest()[:12]


class AaveV3Strategy:
    """Aave V3 positions (one market) and their liquidation candidates."""

    name: str = "aave_v3"

    def __init__(self, config: AaveV3Config, context: StrategyContext) -> None:
        self.config = config
        self.context = context
        self._book: PositionBook | None = None
        self._synced: BlockRef | None = None
        self._configurator: str | None = None
        self._symbols: dict[str, str] = {}
        self.needs_resync = False
        self._screen: HealthScreen | None = None
        self._screen_book: PositionBook | None = None  # the book the screen was built from
        self._healthy_now = foresight.HealthyNow()

    # ------------------------------------------------------------------ state

    @property
    def book(self) -> PositionBook:
        if self._book is None:
            raise KeeperError("aave_v3: sync() must run before the book is used")
        return self._book

    @property
    def synced(self) -> BlockRef | None:
        """The block the snapshot was read at (None before `sync`)."""
        return self._synced

    @property
    def accounts(self) -> list[str]:
        """Every tracked account (lower-case)."""
        return self.book.users

    @property
    def needs_read(self) -> set[str]:
        """Accounts the book could not mirror exactly; they get no candidates until a resync."""
        return set(self.book.needs_read)

    # ------------------------------------------------------------------ contract

    def subscriptions(self) -> Sequence[LogFilter]:
        market = self.book.market
        tokens = tuple(
            t for r in market.reserves for t in (r.a_token, r.variable_debt_token,
                                                 r.stable_debt_token)
        )
        feeds = tuple(sorted({r.feed for r in market.reserves if int(r.feed, 16)}))
        filters = [
            LogFilter((market.pool,), ev.POOL_TOPICS),
            LogFilter(tokens, ev.TOKEN_TOPICS),
            LogFilter(feeds, (ev.TOPIC_ANSWER_UPDATED,), urgent=True),
        ]
        admin = tuple(a for a in (self._configurator, market.oracle) if a and int(a, 16))
        if admin:
            filters.append(LogFilter(admin))
        return filters

    async def sync(self, chain: ChainReader, at: BlockRef) -> None:
        """Discover the market and its accounts at `at` (logs from start_block, batched reads)."""
        provider = self.config.addresses_provider.lower()
        market = await aave_market.discover(chain, provider, at.number)  # refuses unknown rules
        market = await prices.classify(chain, market, self.config.start_block, at.number)
        (configurator,) = decode(["address"], bytes.fromhex(
            (await chain.eth_call(provider, _GET_POOL_CONFIGURATOR, at.number)).removeprefix("0x")
        ))
        self._configurator = str(configurator).lower()
        logs = await chain.get_logs(
            LogFilter((market.pool,), _USER_TOPICS), self.config.start_block, at.number
        )
        logs += await chain.get_logs(
            LogFilter(tuple(r.a_token for r in market.reserves), (ev.TOPIC_BALANCE_TRANSFER,)),
            self.config.start_block, at.number,
        )
        users = discovery.users_in(logs, _users_of)  # = _users_of(ev.decode(e)), faster
        # read_accounts splits the users itself (lens calls, or per-call reads as a fallback).
        accounts: list[Account] = list(
            (await aave_market.read_accounts(chain, market, users, at.number)).values()
        )
        answers = await chain.batch(
            [("eth_call", [{"to": r.asset, "data": _SYMBOL}, hex(at.number)])
             for r in market.reserves]
        )
        self._symbols = {
            r.asset: s for r, a in zip(market.reserves, answers, strict=True)
            if (s := _decode_symbol(str(a))) is not None
        }
        self._book = PositionBook(market, accounts)
        self._book.block = at
        self._synced = at
        self.needs_resync = False

    async def refresh(self, chain: ChainReader, block: BlockRef) -> None:
        """Re-read silent prices, proxies' aggregators, the sentinel (prices.py)."""
        if self._book is not None and not self.needs_resync:
            await prices.refresh(chain, self.book, block.number)

    def apply(self, events: Sequence[Event], block: BlockRef) -> None:
        """Apply one block's logs; logs at or below the synced block are already in the book."""
        synced = self._synced.number if self._synced else -1
        if block.number <= synced:
            return
        admin = {a for a in (self._configurator, self.book.market.oracle) if a}
        if any(e.address.lower() in admin for e in events):
            self.needs_resync = True
        self.book.apply([e for e in events if e.block_number > synced], block)
        if self.book.needs_read:
            self.needs_resync = True  # accounts the logs could not mirror: read them again

    def debt_assets(self) -> list[str]:  # keeper.routes' check (after sync): the borrowable
        return [r.asset for r in self.book.market.reserves if r.config.borrowing_enabled]

    def candidates(self, block: BlockRef) -> Iterable[Candidate]:
        """One candidate per (collateral, debt) pair of every account with HF < 1 at `block`.

        The exact math runs only on the accounts the float screen flags (screen.py: a
        superset of those with HF < 1) and on those the logs changed, in the book's order;
        the result is the full exact scan's.
        """
        if self.needs_resync:
            return []
        market = self.book.market
        skip = self.book.needs_read
        out: list[Candidate] = []
        for user in self._screened(market, block):
            if user in skip:
                continue
            account = self.book.account(user)
            data = aave_market.account_data(market, account, block.timestamp)
            if data.total_debt_base == 0 or not math.is_liquidatable(data.health_factor):
                continue
            out.extend(self._pairs(market, account, data.health_factor, block.timestamp))
        return out

    def _screened(self, market: Market, block: BlockRef) -> list[str]:
        """The accounts to check exactly: the screen's flagged ones and those changed by logs
        since the last call (re-loaded into the screen first), in the book's order."""
        book, now = self.book, block.timestamp
        touched = book.drain_touched()
        screen = self._screen if self._screen_book is book else None
        if screen is not None:
            try:
                # the screen's rows are the book's users in order; new users are appended
                fresh = book.users[len(screen):] if any(
                    u not in screen.index for u in touched) else []
                known = [u for u in touched if u in screen.index]
                screen.load(market, [book.account(u) for u in (*fresh, *known)], now)
                screen.update(market, now)
            except ScreenError:  # the reserve list changed: build it again
                screen = None
        if screen is None:
            screen = HealthScreen.from_accounts(
                market, (book.account(u, cache=False) for u in book.users), now)
            self._screen, self._screen_book = screen, book
        flagged = screen.flagged()
        extra = {u for u in touched if u in screen.index}.difference(flagged)
        if not extra:
            return flagged
        return sorted((*flagged, *extra), key=lambda u: int(screen.origin[screen.index[u]]))

    def build(self, candidate: Candidate, repay: int) -> Call:
        """`Pool.liquidationCall(collateral, debt, user, repay, false)`, sent to the pool."""
        args = encode(
            ["address", "address", "address", "uint256", "bool"],
            [candidate.collateral, candidate.debt, candidate.account, repay, False],
        )
        return Call(to=self.book.market.pool, data="0x" + (LIQUIDATION_CALL_SELECTOR + args).hex())

    def flash_liquidation(
        self, candidate: Candidate, repay: int, swap_pairs: Sequence[str], min_out: int
    ) -> FlashLeg:
        """The same `liquidationCall(collateral, debt, user, repay, false)` for the flash
        executor contract (which approves the pool exactly `repay`)."""
        return aave_flash_leg(
            collateral=candidate.collateral, borrower=candidate.account, debt_to_cover=repay,
            swap_pairs=swap_pairs, min_out=min_out,
        )

    # ------------------------------------------------------------------ prepared

    def feed_answers(self) -> dict[str, int]:
        """Each price feed with the price its reserves hold now (foresight.py)."""
        ok = self._book is not None and not self.needs_resync
        return foresight.feed_answers(self.book.market) if ok else {}

    def candidates_if(
        self, block: BlockRef, feed: str, answers: Sequence[int]
    ) -> list[list[Candidate]]:
        """Per answer, what `feed` posting it would open first (`Foreseeing`; foresight.py)."""
        if self._book is None or self.needs_resync:
            return [[] for _ in answers]
        screen = self._screen if self._screen_book is self.book else None
        return foresight.candidates_if(self.book, screen, block, feed, answers, self._pairs,
                                       self._healthy_now)

    # ------------------------------------------------------------------ extras

    def positions(self, block: BlockRef) -> list[PositionRow]:
        """Every tracked account's collateral, debt (base currency) and HF at `block`."""
        market = self.book.market
        out = []
        for user in self.book.users:
            data = aave_market.account_data(market, self.book.account(user), block.timestamp)
            out.append(PositionRow(self.name, user, data.total_collateral_base,
                                   data.total_debt_base, data.health_factor))
        return out

    def _pairs(
        self, market: Market, account: Account, hf: int, now: int
    ) -> Iterable[Candidate]:
        if market.rules is RuleSet.V3_6:  # v3.6 validation, close factor and dust rule
            yield from liquidation_v36.candidates(market, account, now, self, GAS_LIMIT)
            return
        for pair in liquidation_v30.pairs(market, account, hf, now):
            yield self._candidate(account, pair)

    def _candidate(self, account: Account, pair: liquidation_v30.Pair) -> Candidate:
        c, d = pair.collateral, pair.debt
        # Prices and the scaled debt (moved by repays and liquidations, not by interest):
        # a follow-up liquidation of the same pair at the same prices gets its own key,
        # while a restart before the first one is mined still sees the same key.
        position = account.balances[d.asset]
        state = _price_state(pair.config.collateral_price, pair.config.debt_price,
                             position.scaled_variable_debt, position.stable_principal)
        return Candidate(
            strategy=self.name,
            account=account.user,
            collateral=c.asset,
            debt=d.asset,
            max_repay=pair.max_repay,
            health_factor=pair.health_factor,
            key=f"{self.context.chain_id}:{self.name}:{account.user}:{c.asset}:{d.asset}:{state}",
            seize=pair.seize,
            gas_limit=GAS_LIMIT,
            spender=self.book.market.pool,
            actual_repay=pair.actual_repay,
            collateral_symbol=self._symbols.get(c.asset) or "",
            debt_symbol=self._symbols.get(d.asset) or "",
        )

    def liquidation_curve(self, block: BlockRef, drops: Sequence[int]) -> list[CurvePoint]:
        """`keeper risk`: liquidatable collateral and bad debt per reserve price drop."""
        from strategies.aave_v3 import risk  # noqa: PLC0415 (only the risk view needs it)

        accounts = [self.book.account(user) for user in self.book.users]
        return risk.liquidation_curve(self.book.market, accounts, block.timestamp, drops,
                                      protocol=self.name)

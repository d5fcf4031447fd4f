"""The Morpho Blue strategy: an event-sourced book of every market that offers liquidations.

`sync` reads the singleton's logs since `start_block` (CreateMarket gives the markets, the
borrow-side logs the borrowers), then `market(id)`, `idToMarketParams(id)` and every
`position(id, user)` in batches, and classifies each market's oracle and IRM (market.py);
`apply` feeds the book each later block's Morpho and feed logs (pure); `candidates` accrues
each market locally to the block's timestamp (Morpho._accrueInterest) and offers every
position that Morpho._isHealthy calls unhealthy; `build` encodes `Morpho.liquidate`.

Prices and rates without chain reads after sync:

- a FeedOracle (devnet) is mirrored from its two feeds' AnswerUpdated (math.feed_oracle_price);
- IrmMock's borrowRateView is mirrored from the stored market struct (math.irm_mock_borrow_rate).

Any other oracle or IRM can only be read. The engine calls `refresh` after each block's
logs: one batch of `price()` / `borrowRateView` for the markets that need it (none when all
are mirrored); a value read is used at its block only (`stale_markets` lists the others).

Candidate semantics (exact mirrors of Morpho.liquidate at the block's timestamp), where the
built call passes `seizedAssets = seize(repay)` and `repaidShares = 0`:

- `seize(repay)` = the largest seizedAssets whose repaidAssets (what the liquidator pays) is
  at most `repay`, capped at the borrower's collateral and at the seizure that repays all of
  its borrow shares but `SHARE_MARGIN` (liquidations of the market mined first round its
  assets per share down: a seizure needing every share would underflow Morpho's
  `borrowShares -= repaidShares`). The liquidator receives exactly `seize(repay)`; it pays
  `actual_repay(repay)` <= repay (interest accrued before the call is mined makes each
  share worth more, so the payment for the same seizure only rounds, never grows).
- `max_repay` = what seizing that cap costs: all the collateral (bad debt is then realized
  by Morpho) or the whole borrow, whichever comes first. Morpho has no close factor.
- `key` = "{chain_id}:morpho_blue:{borrower}:{collateral}:{loan}:{h}", h a short hash of
  (market id, oracle price, borrowShares): stable across restarts and interest, new after a
  liquidation or a price move.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError

from keeper.errors import KeeperError
from keeper.liquidation_curve import CurvePoint
from keeper.strategy import ChainReader, StrategyContext
from keeper.types import BlockRef, Call, Candidate, Event, FlashLeg, LogFilter, PositionRow
from strategies.morpho_blue import events as ev
from strategies.morpho_blue import foresight, math
from strategies.morpho_blue import market as mm
from strategies.morpho_blue.book import MorphoBook
from strategies.morpho_blue.config import MorphoBlueConfig
from strategies.morpho_blue.flash_leg import morpho_flash_leg
from strategies.morpho_blue.math import MarketState, PositionState

# Measured on the devnet: a liquidate uses 129k gas (115k when it realizes bad debt); +55 %.
GAS_LIMIT = 200_000
# Borrow shares left when a seizure would repay them all (~100 wei of debt); each earlier
# liquidation of the market adds up to ~2e6 to a seizure's shares (test_morpho_share_margin).
SHARE_MARGIN = 10**8
_SYMBOL = "0x95d89b41"  # symbol()


@dataclass(frozen=True)
class MorphoCandidate:
    """Morpho's own data on a candidate (`Candidate.private`): which market, and how much
    of the collateral the liquidation may seize."""

    market_id: str
    max_seize: int
    # Seizing it all leaves no collateral: Morpho then realizes the rest as bad debt.
    seizes_all_collateral: bool


def morpho_data(candidate: Candidate) -> MorphoCandidate:
    """The Morpho data of one of this strategy's candidates."""
    data = candidate.private
    if not isinstance(data, MorphoCandidate):
        raise KeeperError(f"morpho_blue: {candidate.key} is not a Morpho candidate")
    return data


@dataclass(frozen=True)
class _Read:
    """A value read from the chain, valid at `block` for the stored market struct `state`."""

    block: int
    value: int | None
    state: MarketState | None = None


def _decode_symbol(answer: Any) -> str | None:
    raw = bytes.fromhex(str(answer).removeprefix("0x"))
    try:
        (text,) = decode(["string"], raw)
        return str(text)
    except (DecodingError, ValueError):  # bytes32 symbols (MKR-style)
        return raw.rstrip(b"\0").decode("utf-8", "replace") or None if len(raw) == 32 else None


def _state_hash(*parts: object) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:12]


class MorphoBlueStrategy:
    """Every Morpho Blue market of one singleton (or an allow-list) and its liquidations."""

    name: str = "morpho_blue"

    def __init__(self, config: MorphoBlueConfig, context: StrategyContext) -> None:
        self.config = config
        self.context = context
        self.morpho = config.morpho.lower()
        self.allow = set(config.markets) if config.markets is not None else None
        self._book: MorphoBook | None = None
        self._synced: BlockRef | None = None
        self._prices: dict[str, _Read] = {}  # oracle -> price() read
        self._rates: dict[str, _Read] = {}  # market id -> borrowRateView read
        self._symbols: dict[str, str] = {}

    # ------------------------------------------------------------------ state

    @property
    def book(self) -> MorphoBook:
        if self._book is None:
            raise KeeperError("morpho_blue: sync() must run before the book is used")
        return self._book

    @property
    def synced(self) -> BlockRef | None:
        return self._synced

    @property
    def accounts(self) -> list[str]:
        """Every borrower with a position in a tracked market (lower-case)."""
        return sorted({u for p in self.book.positions.values() for u in p})

    # ------------------------------------------------------------------ contract

    def subscriptions(self) -> Sequence[LogFilter]:
        filters = [LogFilter((self.morpho,), ev.MORPHO_TOPICS)]
        feeds = self.book.feeds
        if feeds:
            filters.append(LogFilter(feeds, (ev.TOPIC_ANSWER_UPDATED,), urgent=True))
        return filters

    async def sync(self, chain: ChainReader, at: BlockRef) -> None:
        """Markets and borrowers from logs since start_block, then batched reads at `at`."""
        logs = await chain.get_logs(
            LogFilter((self.morpho,), ev.MORPHO_TOPICS), self.config.start_block, at.number
        )
        ids: list[str] = list(self.allow or ())
        borrowers: dict[str, list[str]] = {}
        for log in logs:
            record = ev.decode(log)
            match record:
                case ev.CreateMarket():
                    ids.append(record.id)
                case ev.Borrow() | ev.SupplyCollateral():
                    borrowers.setdefault(record.id, []).append(record.on_behalf)
        ids = [i for i in dict.fromkeys(ids) if self.allow is None or i in self.allow]
        snapshot = await mm.read_snapshot(chain, self.morpho, ids, borrowers, at.number)
        self._book = MorphoBook(self.morpho, snapshot, self.allow)
        self._book.block = at
        self._prices = {o: _Read(at.number, p) for o, p in snapshot.prices.items()}
        self._rates = {
            i: _Read(at.number, r, snapshot.markets[i]) for i, r in snapshot.rates.items()
        }
        tokens = sorted({t for p in snapshot.params.values()
                         for t in (p.loan_token, p.collateral_token) if int(t, 16)})
        answers = await chain.batch(
            [("eth_call", [{"to": t, "data": _SYMBOL}, hex(at.number)]) for t in tokens]
        )
        self._symbols = {t: s for t, a in zip(tokens, answers, strict=True)
                         if (s := _decode_symbol(a)) is not None}
        self._synced = at

    def apply(self, events: Sequence[Event], block: BlockRef) -> None:
        """Apply one block's logs; logs at or below the synced block are already in the book."""
        synced = self._synced.number if self._synced else -1
        if block.number <= synced:
            return
        self.book.apply([e for e in events if e.block_number > synced], block)

    def debt_assets(self) -> list[str]:  # keeper.routes' check (after sync): the loan tokens
        return sorted({p.loan_token for p in self.book.params.values()})

    def candidates(self, block: BlockRef) -> Iterable[Candidate]:
        """One candidate per unhealthy position (Morpho._isHealthy) at `block`'s timestamp."""
        out: list[Candidate] = []
        for market_id in self.book.params:
            price = self.price(market_id, block)
            accrued = self.accrued(market_id, block)
            if price is None or accrued is None:
                continue
            lltv = self.book.params[market_id].lltv
            for user, position in self.book.positions.get(market_id, {}).items():
                if position.borrow_shares == 0:
                    continue
                if math.is_healthy(position, accrued, price, lltv):
                    continue
                candidate = self._candidate(market_id, user, position, accrued, price)
                if candidate is not None:
                    out.append(candidate)
        return out

    def build(self, candidate: Candidate, repay: int) -> Call:
        """`Morpho.liquidate(marketParams, borrower, seize(repay), 0, "")`, sent to Morpho."""
        seized = candidate.seize(repay)
        if seized <= 0:
            raise KeeperError(f"morpho_blue: repaying {repay} seizes nothing from {candidate.key}")
        params = self.book.params[morpho_data(candidate).market_id]
        return Call(to=self.morpho, data=mm.liquidate_data(params, candidate.account, seized, 0))

    def flash_liquidation(
        self, candidate: Candidate, repay: int, swap_pairs: Sequence[str], min_out: int
    ) -> FlashLeg:
        """The same `liquidate` (by seized assets) for the flash executor contract.

        The executor approves Morpho `actual_repay(repay)` plus one basis point and a unit:
        interest accrued before the call only rounds the payment for a given seizure.
        """
        seized = candidate.seize(repay)
        if seized <= 0:
            raise KeeperError(f"morpho_blue: repaying {repay} seizes nothing from {candidate.key}")
        params = self.book.params[morpho_data(candidate).market_id]
        payment = candidate.actual_repay(repay)
        return morpho_flash_leg(
            market=params, debt=candidate.debt, collateral=candidate.collateral,
            borrower=candidate.account, seized_assets=seized,
            max_repay=payment + payment // 10_000 + 1, swap_pairs=swap_pairs, min_out=min_out,
        )

    # ------------------------------------------------------------------ prepared

    def feed_answers(self) -> dict[str, int]:
        """Each feed a mirrored oracle follows, with the answer the book holds now."""
        return {} if self._book is None else foresight.feed_answers(self.book)

    def candidates_if(
        self, block: BlockRef, feed: str, answers: Sequence[int]
    ) -> list[list[Candidate]]:
        """Per answer, what `feed` posting it would open first (`Foreseeing`; foresight.py)."""
        if self._book is None:
            return [[] for _ in answers]
        return foresight.candidates_if(self.book, self.candidates, block, feed, answers)

    # ------------------------------------------------------------------ prices and rates

    def price(self, market_id: str, block: BlockRef) -> int | None:
        """The oracle price (1e36-scaled) at `block`: mirrored, or read at this very block."""
        address = self.book.params[market_id].oracle
        model = self.book.oracles.get(address)
        if model is not None and model.feed_oracle is not None:
            return self.book.mirrored_price(market_id)  # None where FeedOracle would revert
        read = self._prices.get(address)
        return read.value if read is not None and read.block == block.number else None

    def borrow_rate(self, market_id: str, block: BlockRef) -> int | None:
        """IIrm.borrowRate for the stored market struct (the rate since its lastUpdate)."""
        state = self.book.markets[market_id]
        kind = self.book.irm_kind(market_id)
        if kind == mm.IRM_MOCK:
            return math.irm_mock_borrow_rate(state)
        read = self._rates.get(market_id)
        if read is None or read.state != state or read.block != block.number:
            return None
        return read.value

    def accrued(self, market_id: str, block: BlockRef) -> MarketState | None:
        """The market after Morpho._accrueInterest at `block.timestamp` (None: rate unknown)."""
        state = self.book.markets[market_id]
        if block.timestamp <= state.last_update:
            return state
        has_irm = self.book.irm_kind(market_id) != "none"
        rate = self.borrow_rate(market_id, block) if has_irm else None
        if has_irm and rate is None:
            return None
        return math.accrue_interest(state, rate, block.timestamp, has_irm=has_irm).market

    def stale_markets(self, block: BlockRef) -> list[str]:
        """Markets with borrowers whose price or rate at `block` needs a chain read."""
        return [
            i for i in self.book.params
            if any(p.borrow_shares for p in self.book.positions.get(i, {}).values())
            and (self.price(i, block) is None or self.accrued(i, block) is None)
        ]

    async def refresh(self, chain: ChainReader, block: BlockRef) -> None:
        """ONE batch at `block`: `price()` and `borrowRateView` of the stale markets only.

        The engine's optional `refresh` hook, called after `apply` and before `candidates`:
        it lets markets with unmirrored oracles or IRMs offer candidates at this block.
        """
        stale = self.stale_markets(block)
        if not stale:
            return
        oracles = sorted({self.book.params[i].oracle for i in stale
                          if self.book.mirrored_price(i) is None})
        rate_inputs = {
            i: (self.book.params[i], self.book.markets[i]) for i in stale
            if self.book.irm_kind(i) == "read"
            and block.timestamp > self.book.markets[i].last_update
        }
        prices, rates = await mm.read_prices_and_rates(chain, oracles, rate_inputs, block.number)
        for oracle, value in prices.items():
            self._prices[oracle] = _Read(block.number, value)
        for i, value in rates.items():
            self._rates[i] = _Read(block.number, value, rate_inputs[i][1])

    # ------------------------------------------------------------------ extras

    def positions(self, block: BlockRef) -> list[PositionRow]:
        """Every position with collateral or debt, at `block` (for `keeper scan`): values in
        loan-token units (collateral at the oracle price; debt rounded up, as `_isHealthy`).

        Where a price or rate is not known at `block`, the last one known is used.
        """
        out: list[PositionRow] = []
        for market_id, book in self.book.positions.items():
            params = self.book.params[market_id]
            price = self.price(market_id, block)
            if price is None:
                price = self._prices.get(params.oracle, _Read(0, 0)).value or 0
            accrued = self.accrued(market_id, block) or self.book.markets[market_id]
            for user, position in book.items():
                if position.borrow_shares == 0 and position.collateral == 0:
                    continue
                out.append(PositionRow(
                    strategy=self.name, account=user, market=market_id,
                    collateral_value=math.mul_div_down(
                        position.collateral, price, math.ORACLE_PRICE_SCALE),
                    debt_value=math.borrowed_assets(position, accrued),
                    health_factor=math.health_factor(position, accrued, price, params.lltv),
                ))
        return out

    def _candidate(
        self, market_id: str, user: str, position: PositionState, accrued: MarketState,
        price: int,
    ) -> Candidate | None:
        params = self.book.params[market_id]
        lif = math.liquidation_incentive_factor(params.lltv)
        # The most that can be seized: all the collateral, or what repays all but a margin.
        cap = min(position.collateral, math.max_seized_for_repaid_shares(
            max(position.borrow_shares - SHARE_MARGIN, 0), price, lif, accrued))
        if cap == 0:
            return None  # dust: no seizure of even one unit fits in its borrow shares

        def seize(repay: int) -> int:
            if repay <= 0:
                return 0
            return min(cap, math.max_seized_for_repaid_assets(repay, price, lif, accrued))

        def actual_repay(repay: int) -> int:
            seized = seize(repay)
            if seized == 0:
                return 0
            shares = math.repaid_shares_for_seized(seized, price, lif, accrued)
            return math.repaid_assets(shares, accrued)

        max_repay = math.repaid_assets(
            math.repaid_shares_for_seized(cap, price, lif, accrued), accrued)
        hf = math.health_factor(position, accrued, price, params.lltv)
        state = _state_hash(market_id, price, position.borrow_shares)
        collateral, loan = params.collateral_token, params.loan_token
        return Candidate(
            strategy=self.name,
            account=user,
            collateral=collateral,
            debt=loan,
            max_repay=max_repay,
            health_factor=hf,
            key=f"{self.context.chain_id}:morpho_blue:{user}:{collateral}:{loan}:{state}",
            seize=seize,
            gas_limit=GAS_LIMIT,
            spender=self.morpho,
            actual_repay=actual_repay,
            collateral_symbol=self._symbols.get(collateral) or "",
            debt_symbol=self._symbols.get(loan) or "",
            private=MorphoCandidate(market_id, cap, cap == position.collateral),
        )

    def liquidation_curve(self, block: BlockRef, drops: Sequence[int]) -> list[CurvePoint]:
        """`keeper risk`: liquidatable collateral and bad debt per asset price drop, per loan
        token (prices and rates at `block`, else the last known, as `positions`)."""
        from strategies.morpho_blue import risk  # noqa: PLC0415 (only the risk view needs it)

        markets = {
            market_id: risk.MarketView(
                params,
                self.accrued(market_id, block) or self.book.markets[market_id],
                self.price(market_id, block)
                or self._prices.get(params.oracle, _Read(0, 0)).value or 0,
            )
            for market_id, params in self.book.params.items()
        }
        return risk.liquidation_curve(markets, self.book.positions, drops)

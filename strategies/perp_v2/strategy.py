"""The Perp v2 (Curie) strategy: an event-sourced book of every account, valued exactly.

`sync` reads the ClearingHouse's, AccountBalance's and Vault's logs since `start_block` into
the book (book.py); `apply` feeds it each block's logs; `refresh` reads, in one batch, what
logs cannot tell (reads.py: the mark price's TWAP inputs, pending funding, the vAMM pools'
prices the makers' orders, kept from the logs, are valued at, the orders' pending fees, the
insurance fund's capacity); `candidates` values every account with the mirrored math
(math.py) and offers, for an account below maintenance (ClearingHouse._isLiquidatable):

- `cancelAllExcessOrders(maker, base)` while it still has open orders (liquidate reverts
  with CH_CLWTISO until they are gone), valued at the liquidation it opens;
- otherwise `liquidate(trader, base)` in its largest market, unless the account after the
  penalty would owe more than the insurance fund can cover (CH_IIC: the account a single step
  took straight into deficit; logged once with that reason), or the position taken over would
  need more margin than the Vault's free collateral or the configured cap;
- and `closePosition(base)` for each position the keeper's own account holds (a position
  taken over is closed at once), within a 5 % slippage bound from the mark; once none is
  open, `Vault.withdraw` of its realized profit, so the journal (which values a send from
  its token transfers) holds the PnL.

Candidate semantics: collateral and debt are both the settlement token, `max_repay` is 1
unit, and `seize(r) = r + expected profit` in settlement-token units: for a liquidation the
fee to the liquidator less the exchange fee of closing (the position is taken at the mark
price with the fee as discount), for a close the PnL it realizes at the mark less its fee.
The liquidator's own realized PnL (every `PnlRealized` of its account) is kept in `realized`
and logged as it lands. Accounts with non-settlement collateral are not valued (logged).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import structlog

from keeper.errors import StrategyError
from keeper.liquidation_curve import CurvePoint
from keeper.strategy import ChainReader, StrategyContext
from keeper.types import BlockRef, Call, Candidate, Event, LogFilter, PositionRow
from strategies.perp_v2 import events as ev
from strategies.perp_v2 import math as pm
from strategies.perp_v2 import risk
from strategies.perp_v2.actions import MAX_UINT, PerpAction, encode_action
from strategies.perp_v2.book import Account, PerpBook
from strategies.perp_v2.config import PerpV2Config
from strategies.perp_v2.reads import BlockReads, Setup, read_block, read_fee_ratios, read_setup

log = structlog.get_logger(__name__)

# Gas figures, measured on the devnet's crash. A liquidation values the trader's and the
# liquidator's accounts several times (five TWAP reads per market each time), so its gas grows
# with the markets both hold: 1.25-1.72M with one market each, 2.23-2.62M for a two-market
# trader. A send that goes out before its simulation answers gets 1.3x the figure: a flat
# 2M ran a two-market liquidation out of gas (2.6M used of 2.6M).
GAS_LIQUIDATE_BASE = 1_000_000
GAS_LIQUIDATE_PER_MARKET = 500_000
GAS_CANCEL = 1_500_000  # up to 0.77M seen
GAS_CLOSE = 1_500_000  # up to 0.71M seen
CLOSE_SLIPPAGE_PIPS = 50_000  # 5 %
GAS_WITHDRAW = 1_000_000  # 0.13-0.74M seen (0.74M of a 0.78M limit)


def liquidation_gas(trader_markets: int, liquidator: Account | None, base: str) -> int:
    """The gas figure of a `liquidate` in `base`: a base figure plus a share per market of
    the trader's and of the liquidator's (its open positions and `base`, taken over)."""
    mine = {b for b, t in liquidator.takers.items() if pm.dusted(t.size)} if liquidator else set()
    markets = trader_markets + len(mine | {base})
    return GAS_LIQUIDATE_BASE + GAS_LIQUIDATE_PER_MARKET * markets


@dataclass(frozen=True)
class Realized:
    """Realized PnL of the keeper's own account in one transaction (X10_18)."""

    tx_hash: str
    block: int
    amount: int


def _hash(*parts: object) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:12]


class PerpV2Strategy:
    """Every account of one Perp v2 ClearingHouse and its liquidations."""

    name: str = "perp_v2"

    def __init__(self, config: PerpV2Config, context: StrategyContext) -> None:
        self.config = config
        self.context = context
        self.liquidator = context.liquidator.lower()
        self.clearing_house = config.clearing_house.lower()
        self._setup: Setup | None = None
        self._book: PerpBook | None = None
        self._synced: BlockRef | None = None
        self._reads: BlockReads | None = None
        self._fees: dict[str, int] = {}
        self.reported: dict[str, str] = {}  # account -> the reason it was last passed over
        self.realized: list[Realized] = []

    # ------------------------------------------------------------------ contract

    @property
    def setup(self) -> Setup:
        if self._setup is None:
            raise pm_error("perp_v2: not synced")
        return self._setup

    @property
    def book(self) -> PerpBook:
        if self._book is None:
            raise pm_error("perp_v2: not synced")
        return self._book

    def subscriptions(self) -> Sequence[LogFilter]:
        filters = [LogFilter((self.clearing_house,), ev.CLEARING_HOUSE_TOPICS)]
        if self._setup is not None:
            filters += [LogFilter((self._setup.account_balance,), ev.ACCOUNT_BALANCE_TOPICS),
                        LogFilter((self._setup.vault,), ev.VAULT_TOPICS)]
        return filters

    async def sync(self, chain: ChainReader, at: BlockRef) -> None:
        """Setup at `at`, then every log since start_block into a fresh book, then reads."""
        setup = await read_setup(chain, self.clearing_house, self.config.market_registry, at.number)
        self._setup = setup
        self._book = PerpBook(setup.settlement_token, setup.decimals, setup.insurance_fund)
        logs: list[Event] = []
        for f in self.subscriptions():
            logs += await chain.get_logs(f, self.config.start_block, at.number)
        logs.sort(key=lambda e: (e.block_number, e.log_index))
        self.realized = []
        self._apply(logs)
        self._fees = await read_fee_ratios(chain, setup, sorted(self.bases()), at.number)
        self._synced = at
        await self.refresh(chain, at)

    def apply(self, events: Sequence[Event], block: BlockRef) -> None:
        self._apply(events)
        self._synced = block

    def _apply(self, events: Sequence[Event]) -> None:
        records = []
        for event in events:
            record = ev.decode(event)
            if record is None:
                continue
            records.append(record)
            if isinstance(record, ev.PnlRealized) and record.trader == self.liquidator:
                self.realized.append(Realized(event.transaction_hash, event.block_number,
                                              record.amount))
                log.info("perp realized pnl", strategy=self.name, tx=event.transaction_hash,
                         amount=record.amount)
        self.book.apply(records)

    async def refresh(self, chain: ChainReader, block: BlockRef) -> None:
        """One batch at `block`: mark inputs, pending funding, orders, fund capacity."""
        bases = sorted(self.bases())
        missing = [b for b in bases if b not in self._fees]
        if missing:
            self._fees.update(await read_fee_ratios(chain, self.setup, missing, block.number))
        accounts = sorted(a for a, acct in self.book.accounts.items() if acct.bases())
        orders = {a: sorted(acct.orders) for a, acct in self.book.accounts.items()
                  if acct.orders}
        ahead = block.timestamp + self.config.next_block_seconds \
            if self.config.next_block_seconds else None
        self._reads = await read_block(chain, self.setup, bases=bases, accounts=accounts,
                                       orders=orders, block=block.number, ahead_time=ahead)

    def bases(self) -> set[str]:
        return {b for a in self.book.accounts.values() for b in a.bases()}

    # ------------------------------------------------------------------ valuation

    def marks(self) -> dict[str, int]:
        """AccountBalance.getMarkPrice of every market, from this block's reads."""
        reads = self._current_reads()
        return {b: pm.mark_price(m) for b, m in reads.marks.items()}

    def _current_reads(self) -> BlockReads:
        if self._reads is None:
            raise pm_error("perp_v2: no reads yet (refresh first)")
        return self._reads

    def state(self, account: str) -> pm.AccountState:
        """The account as the math values it at the last refresh."""
        reads = self._current_reads()
        return self.book.state(account, reads.funding.get(account, 0), reads.sqrt_prices,
                               reads.pending_fees.get(account, {}))

    def account_value(self, account: str) -> int:
        """ClearingHouse.getAccountValue, mirrored (X10_18)."""
        return pm.account_value(self.state(account), self.marks(), self.setup.decimals)

    def margin_requirement(self, account: str) -> int:
        """AccountBalance.getMarginRequirementForLiquidation, mirrored (X10_18)."""
        return pm.margin_requirement_for_liquidation(self.state(account), self.marks(),
                                                     self.setup.mm_ratio)

    def valued(self) -> list[str]:
        """The accounts the math values: any market, settlement collateral only, and neither
        the keeper's own account nor the insurance fund."""
        skip = {self.liquidator, self.setup.insurance_fund}
        return sorted(a for a, acct in self.book.accounts.items()
                      if acct.bases() and not acct.other_collateral and a not in skip)

    # ------------------------------------------------------------------ candidates

    def candidates(self, block: BlockRef) -> Iterable[Candidate]:
        if self._reads is None or self._reads.block != block.number:
            return []  # refresh did not run at this block: nothing is valued on stale reads
        marks = self.marks()
        reads = self._reads
        ahead = {b: pm.mark_price(m) for b, m in reads.ahead.items()} or marks
        out: list[Candidate] = []
        for account in self.valued():
            state = self.state(account)
            mm, decimals = self.setup.mm_ratio, self.setup.decimals
            if not pm.is_liquidatable(state, marks, mm, decimals):
                self.reported.pop(account, None)
                continue
            if not pm.is_liquidatable(state, ahead, mm, decimals):
                continue  # its mark recovers by the next block: the liquidation would revert
            out += self._for_liquidatable(account, state, marks, block)
        if self.config.close_positions:
            out += self._closes(marks, block) or self._withdrawal()
        return out

    def _for_liquidatable(self, account: str, state: pm.AccountState,
                          marks: dict[str, int], block: BlockRef) -> list[Candidate]:
        setup = self.setup
        order_bases = sorted(self.book.accounts[account].order_bases())
        ranked = pm.sorted_by_value(state, marks)
        if not ranked:
            return []
        liq = pm.liquidation(state, ranked[0], marks, mm_ratio=setup.mm_ratio,
                             penalty_ratio=setup.penalty_ratio, decimals=setup.decimals)
        profit = self._usdc(liq.fee_to_liquidator - self._close_fee(ranked[0], liq.notional))
        value, requirement = liq.value_before, pm.margin_requirement_for_liquidation(
            state, marks, setup.mm_ratio)
        health = value * 10**18 // requirement if requirement > 0 else 0
        if order_bases:  # CH_CLWTISO: the orders go first
            orders = sorted(self.book.accounts[account].orders)
            return [self._candidate("cancel", account, base, profit=profit, health=health,
                                    gas=GAS_CANCEL, state=_hash(base, orders))
                    for base in order_bases]
        # ClearingHouse._liquidate credits the fund its half of the penalty (none when the
        # account is already under water) before it checks its capacity (CH_IIC).
        capacity = pm.parse_settlement(self._current_reads().fund_capacity, setup.decimals) \
            + liq.penalty - liq.fee_to_liquidator
        if liq.value_after < 0 and -liq.value_after > capacity:
            self._report(account, block, f"deficit of {-liq.value_after} after the penalty "
                         f"exceeds the insurance fund's capacity {capacity} (CH_IIC)")
            return []
        margin = self._usdc(pm.mul_ratio(abs(liq.notional), setup.im_ratio))
        room = self._margin_room(marks)
        if margin > room:
            self._report(account, block, f"its position needs {margin} of margin; the keeper "
                         f"has {room} within max_margin_usd and its free collateral")
            return []
        taker = self.book.accounts[account].takers.get(ranked[0])
        key = _hash(ranked[0], taker.size if taker else 0, state.balance, state.owed_realized_pnl)
        gas = liquidation_gas(len(ranked), self.book.accounts.get(self.liquidator), ranked[0])
        return [self._candidate("liquidate", account, ranked[0], profit=profit, health=health,
                                gas=gas, state=key)]

    def _closes(self, marks: dict[str, int], block: BlockRef) -> list[Candidate]:
        own = self.book.accounts.get(self.liquidator)
        if own is None:
            return []
        out = []
        for base, taker in sorted(own.takers.items()):
            size = pm.dusted(taker.size)
            if size == 0:
                continue
            value = pm.position_value(size, marks[base])
            fee = self._close_fee(base, value)
            pnl = self._usdc(value + taker.open_notional - fee)
            # A long sells base for at least the bound; a short buys it for at most the bound.
            slip = CLOSE_SLIPPAGE_PIPS if size < 0 else -CLOSE_SLIPPAGE_PIPS
            bound = pm.mul_ratio(abs(value), pm.RATIO_ONE + slip)
            # One key per position until it is closed: a close in flight closes what a
            # liquidation adds meanwhile too, so a second one would revert (CH_PSZ).
            out.append(self._candidate("close", self.liquidator, base, profit=pnl, health=0,
                                       gas=GAS_CLOSE, state=_hash(own.closed.get(base, 0)),
                                       bound=bound))
        return out

    def _withdrawal(self) -> list[Candidate]:
        """With no position left open, the keeper's realized profit withdrawn from the Vault:
        what its balance and owed PnL hold above all it ever deposited (its margin). The
        transfer makes the journal hold the PnL (execution values every send from its
        ERC-20 transfers; a Perp trade has none). A withdrawal not made by the keeper counts
        against the profit, as a loss does: both stay in the Vault against the margin."""
        own = self.book.accounts.get(self.liquidator)
        if own is None or own.takers or own.orders:
            return []
        decimals = self.setup.decimals
        amount = self._usdc(pm.parse_settlement(own.balance - own.deposited, decimals)
                            + own.owed)
        if amount <= 0:
            return []
        return [self._candidate("withdraw", self.liquidator, self.setup.settlement_token,
                                profit=amount, health=0, gas=GAS_WITHDRAW,
                                state=_hash(own.owed, own.balance), bound=amount)]

    def _margin_room(self, marks: dict[str, int]) -> int:
        """Settlement-token units of margin the keeper may still commit: the cap less what
        its own positions hold (at the initial-margin ratio), and at most its free
        collateral in the Vault (Vault.getFreeCollateralByRatio at imRatio)."""
        setup = self.setup
        if self.liquidator not in self.book.accounts:
            return 0
        reads = self._current_reads()
        own = self.book.state(self.liquidator, reads.funding.get(self.liquidator, 0), {}, {})
        used = self._usdc(pm.mul_ratio(pm.total_debt_value(own, marks), setup.im_ratio))
        cap = int(self.config.max_margin_usd * 10**setup.decimals) - used
        free = pm.free_collateral_by_ratio(own, marks, setup.im_ratio, setup.decimals)
        return max(min(cap, free), 0)

    def _close_fee(self, base: str, notional: int) -> int:
        return pm.mul_ratio(abs(notional), self._fees.get(base, 0))

    def _usdc(self, amount_x10_18: int) -> int:
        return pm.format_settlement(amount_x10_18, self.setup.decimals)

    def _report(self, account: str, block: BlockRef, reason: str) -> None:
        # Logged once per kind of reason: the figures in its text move every block.
        before, self.reported[account] = self.reported.get(account, ""), reason
        if re.sub(r"\d+", "", before) != re.sub(r"\d+", "", reason):
            log.warning("perp account not liquidated", strategy=self.name, account=account,
                        block=block.number, reason=reason)

    def _candidate(self, kind: str, account: str, base: str, *, profit: int, health: int,
                   gas: int, state: str, bound: int = 0) -> Candidate:
        token = self.setup.settlement_token

        def seize(repay: int) -> int:
            return repay + profit

        return Candidate(
            strategy=self.name, account=account, collateral=token, debt=token, max_repay=1,
            health_factor=health, gas_limit=gas, spender=self.setup.vault,
            key=f"{self.context.chain_id}:{self.name}:{account}:{base}:{kind}:{state}",
            seize=seize,
            collateral_symbol="USDC", debt_symbol="USDC", from_wallet=False,
            private=PerpAction(kind, account, base, bound),
        )

    def build(self, candidate: Candidate, repay: int) -> Call:
        action = candidate.private
        if not isinstance(action, PerpAction):
            raise pm_error(f"perp_v2: {candidate.key} is not a Perp candidate")
        return encode_action(action, clearing_house=self.clearing_house, vault=self.setup.vault)

    # ------------------------------------------------------------------ extras

    @property
    def accounts(self) -> Sequence[str]:
        return self.valued() if self._book is not None and self._setup is not None else []

    @property
    def synced(self) -> BlockRef | None:
        return self._synced

    def liquidation_curve(self, block: BlockRef, drops: Sequence[int]) -> list[CurvePoint]:
        """Every market's mark dropped in turn, every valued account revalued (risk.py)."""
        if self._reads is None:
            return []
        states = [self.state(a) for a in self.valued()]
        return risk.liquidation_curve(states, self.marks(), drops, mm_ratio=self.setup.mm_ratio,
                                      decimals=self.setup.decimals)

    def positions(self, block: BlockRef) -> list[PositionRow]:
        """Every valued account: account value and margin requirement (USD, X10_18)."""
        if self._reads is None:
            return []
        rows = []
        for account in self.valued():
            value, need = self.account_value(account), self.margin_requirement(account)
            health = value * 10**18 // need if need > 0 else MAX_UINT
            rows.append(PositionRow(self.name, account, value, need, max(health, 0)))
        return rows


def pm_error(message: str) -> StrategyError:
    return StrategyError(message)

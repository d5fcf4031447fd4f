"""What a replay observed, turned into the report's figures.

The replay tells its `Tally` what the keeper ranked (`saw`) and what each replayed block
did to the historical liquidations (`note_block`); `fill` then lists the keeper's own
liquidations (its confirmed receipts on the fork), the historical ones with their
liquidators, and every opportunity with its fate: taken by the keeper (with its latency
in blocks, and the competitor it beat, if any), by a competitor, or missed and why.
Profits are valued like the keeper's own (`keeper.ranking.realized_value`, net of gas),
in the quote token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eth_abi.abi import decode

from keeper.backtest.history import (
    HistoricalBlock,
    LiquidationLog,
    decode_liquidations,
    morpho_tokens,
    topic,
)
from keeper.backtest.model import (
    BacktestReport,
    HealthSample,
    Liquidation,
    Opportunity,
    PriceSample,
)
from keeper.chain.http import HttpRpc, RpcError
from keeper.ranking import realized_value
from keeper.types import BlockRef
from keeper.types import Opportunity as Ranked
from keeper.wiring import Keeper

if TYPE_CHECKING:
    from keeper.backtest.replay import BlockCheck

SYMBOL = "0x95d89b41"  # symbol()
DECIMALS = "0x313ce567"  # decimals()
DESCRIPTION = "0x7284e416"  # description() of a Chainlink-style feed: "WETH / USD"
ANSWER_UPDATED = topic("AnswerUpdated(int256,uint256,uint256)")
WAD = 10**18
NO_DEBT = 2**255  # a health factor at or above this means "no debt" (uint max)
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass
class _Seen:
    """The first ranking of one position during the replay."""

    block: int
    opportunity: Ranked


class Tally:
    """The observations of one replay, and the report built from them."""

    def __init__(self, fork: HttpRpc, keeper: Keeper | None, insert: str) -> None:
        self.fork = fork
        self.keeper = keeper
        self.insert = insert
        self.keeper_address = keeper.executor.address if keeper and keeper.executor else None
        self.seen: dict[tuple[str, str], _Seen] = {}
        self.by_key: dict[str, Ranked] = {}
        self.historical: list[tuple[int, str, LiquidationLog, int, bool, float]] = []
        self.symbols: dict[str, str] = {}
        self.decimals: dict[str, int] = {}  # symbol -> decimals (the report's token units)
        self.quote_unit = 1e18  # one whole quote token in its base units
        self.price_blocks: set[int] = set()  # blocks holding a price-feed update
        self.prices: list[PriceSample] = []
        self.health: list[HealthSample] = []
        self._feeds: dict[str, tuple[str, int]] = {}  # feed -> (asset, decimals)

    async def start(self) -> str:
        """The quote token's symbol (and its unit, read once)."""
        if self.keeper is None:
            return "ETH"
        raw = await self.fork.eth_call(self.keeper.engine.quote_token, DECIMALS)
        self.quote_unit = float(10 ** int(raw, 16))
        return await self._symbol(self.keeper.engine.quote_token)

    def saw(self, number: int, opportunities: Sequence[Ranked]) -> None:
        """The keeper ranked these at block `number` (the first sighting of each counts)."""
        for opp in opportunities:
            self.by_key[opp.key] = opp
            self.seen.setdefault((opp.strategy, opp.account.lower()), _Seen(number, opp))

    def sample_health(self, at: BlockRef) -> None:
        """The health-factor distribution of every tracked position with debt, from the
        strategies that offer `positions(block)`."""
        assert self.keeper is not None
        factors: list[float] = []
        for source in self.keeper.engine.capabilities.positions:
            factors += [p.health_factor / WAD for p in source.positions(at)
                        if p.health_factor < NO_DEBT]
        factors.sort()
        last = len(factors) - 1
        self.health.append(HealthSample(
            at.number, len(factors), sum(f < 1 for f in factors),
            {q: factors[round(q * last)] for q in QUANTILES} if factors else {}))

    async def _feed(self, feed: str) -> tuple[str, int]:
        """(asset, decimals) of a price feed: "WETH" from its "WETH / USD" description."""
        if feed not in self._feeds:
            try:
                answer = await self.fork.eth_call(feed, DESCRIPTION)
                name = str(decode(["string"], bytes.fromhex(answer[2:]))[0])
                decimals = int(await self.fork.eth_call(feed, DECIMALS), 16)
                self._feeds[feed] = (name.partition("/")[0].strip() or feed, decimals)
            except (RpcError, ValueError, OverflowError):
                self._feeds[feed] = (feed, 8)
        return self._feeds[feed]

    async def note_block(self, block: HistoricalBlock, receipts: Sequence[Any]) -> None:
        """The historical liquidations of `block`, and whether each still happened on the
        fork (`receipts`: the fork's receipts of the block's historical transactions); the
        prices its feed updates posted."""
        urgent = self.keeper.engine.urgent_filter() if self.keeper is not None else None
        feeds = set(urgent.addresses) if urgent is not None else set()
        for tx in block.txs:
            for entry in tx.logs:
                if (tx.status == 1 and entry["address"] in feeds and len(entry["topics"]) > 1
                        and entry["topics"][0] == ANSWER_UPDATED):
                    asset, decimals = await self._feed(entry["address"])
                    answer = int(entry["topics"][1], 16)
                    answer -= 2**256 if answer >= 2**255 else 0  # int256
                    self.prices.append(PriceSample(block.number, block.timestamp, asset,
                                                   answer / 10**decimals))
        for tx, rc in zip(block.txs, receipts, strict=True):
            if tx.status != 1:
                continue
            for event in decode_liquidations(tx.logs):
                took = rc is not None and int(rc["status"], 16) == 1 and bool(
                    decode_liquidations(rc["logs"]))
                gas = tx.gas_used * tx.gas_price
                self.historical.append((block.number, tx.hash, event, gas, took,
                                        await self._value(event, gas)))

    async def _tokens(self, event: LiquidationLog) -> tuple[str, str]:
        if event.protocol == "morpho_blue":
            return await morpho_tokens(self.fork, event.emitter, event.market)
        return event.collateral, event.debt

    async def _value(self, event: LiquidationLog, gas: int) -> float:
        """A liquidation's net profit in the quote asset, valued like the keeper's own (DEX
        state of the block it happened in)."""
        if self.keeper is None:
            return 0.0
        collateral, debt = await self._tokens(event)
        engine = self.keeper.engine
        wei = realized_value(engine.dex, engine.quote_token, collateral=collateral,
                             debt=debt, collateral_received=event.seized,
                             debt_paid=event.repaid, gas_paid=gas)
        return float(wei) / self.quote_unit

    async def _symbol(self, token: str) -> str:
        if token not in self.symbols:
            try:
                answer = await self.fork.eth_call(token, SYMBOL)
                self.symbols[token] = str(decode(["string"], bytes.fromhex(answer[2:]))[0])
                decimals = int(await self.fork.eth_call(token, DECIMALS), 16)
                self.decimals.setdefault(self.symbols[token], decimals)
            except (RpcError, ValueError, OverflowError):
                self.symbols[token] = token
        return self.symbols[token]

    async def fill(self, report: BacktestReport, checks: Sequence[BlockCheck]) -> None:
        keeper_by_account: dict[tuple[str, str], Liquidation] = {}
        mined: list[tuple[int, int, Liquidation]] = []  # (block, tx index, liquidation)
        # Outcomes arrive in the order sends settle, which timing decides: order by the chain.
        outcomes = sorted(self.keeper.outcomes if self.keeper else [],
                          key=lambda o: (o.block, o.tx_hash, o.key))
        for outcome in outcomes:
            report.gas_spent_wei += outcome.gas_paid
            if outcome.status != "confirmed" or outcome.key not in self.by_key:
                continue
            receipt = await self.fork.call("eth_getTransactionReceipt", [outcome.tx_hash])
            for event in decode_liquidations(receipt["logs"]):
                collateral, debt = await self._tokens(event)
                mined.append((outcome.block, int(receipt["transactionIndex"], 16), Liquidation(
                    outcome.block, outcome.tx_hash, event.liquidator, event.protocol,
                    event.account, await self._symbol(collateral), await self._symbol(debt),
                    event.repaid, event.seized, outcome.realized_profit / self.quote_unit,
                    outcome.gas_paid, by_keeper=True, profit_wei=outcome.realized_profit)))
        for _block, _index, liq in sorted(mined, key=lambda m: m[:2]):
            report.keeper.append(liq)
            keeper_by_account.setdefault((liq.protocol, liq.account), liq)
        competitors: dict[tuple[str, str], tuple[Liquidation, bool]] = {}
        for number, tx_hash, event, gas, took, value in self.historical:
            collateral, debt = await self._tokens(event)
            liq = Liquidation(number, tx_hash, event.liquidator, event.protocol, event.account,
                              await self._symbol(collateral), await self._symbol(debt),
                              event.repaid, event.seized, value, gas, by_keeper=False)
            report.historical.append(liq)
            competitors.setdefault((event.protocol, event.account), (liq, took))
        report.opportunities = await self._opportunities(keeper_by_account, competitors)
        report.prices, report.health = self.prices, self.health
        report.decimals = dict(self.decimals)
        statuses: dict[str, int] = {}
        for outcome in outcomes:
            statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
        report.attempts = dict(sorted(statuses.items()))
        report.notes.append(
            f"{sum(c.reproduced for c in checks)}/{len(checks)} blocks reproduced exactly "
            "(tx hashes, receipts root, balances of every account touched)")
        failed = [key for key, (_liq, took) in competitors.items() if not took]
        beaten = sum(1 for key in failed if key in keeper_by_account)
        if failed:
            report.notes.append(
                f"{len(failed)} historical liquidations failed on the fork: {beaten} beaten "
                f"(the keeper took the position first), {len(failed) - beaten} because the "
                "keeper's transactions changed the state they relied on (e.g. the reserve's "
                "liquidity)")

    async def _opportunities(
        self, keeper: dict[tuple[str, str], Liquidation],
        competitors: dict[tuple[str, str], tuple[Liquidation, bool]],
    ) -> list[Opportunity]:
        out: list[Opportunity] = []
        outcomes = sorted(self.keeper.outcomes if self.keeper else [],
                          key=lambda o: (o.block, o.key, o.status))
        reasons = {self.by_key[o.key].account.lower(): f"{o.status}: {o.reason}".rstrip(": ")
                   for o in outcomes if o.status != "confirmed" and o.key in self.by_key}
        for (protocol, account), seen in sorted(self.seen.items(), key=lambda x: x[1].block):
            opp = seen.opportunity
            mine = keeper.get((protocol, account))
            rival = competitors.get((protocol, account))
            profit = opp.net_profit / self.quote_unit
            taken_by, latency, why = None, None, None
            if mine is not None:
                # Never negative: a liquidation ranked before the first sighting dates it.
                taken_by, profit = "keeper", mine.profit_quote
                latency = max(0, mine.block - seen.block)
            elif rival is not None and rival[1]:
                taken_by, profit = rival[0].liquidator, rival[0].profit_quote
                why = reasons.get(account) or (
                    "keeper passive (no account)" if self.keeper_address is None
                    else "a competitor's transaction came first")
            else:
                why = reasons.get(account) or (
                    "keeper passive (no account)" if self.keeper_address is None else "not sent")
                if rival is not None:
                    why = f"its historical liquidation failed on the fork; keeper: {why}"
            out.append(Opportunity(
                seen.block, protocol, account, await self._symbol(opp.collateral),
                await self._symbol(opp.debt), profit, taken_by, latency, why,
                historical_liquidator=rival[0].liquidator if rival else None))
        for (protocol, account), (liq, took) in competitors.items():
            if (protocol, account) in self.seen:
                continue
            why = ("taken in the block of its price update, before the keeper's insert "
                   "position" if liq.block in self.price_blocks and (
                       self.insert == "next-block" or self.keeper_address is None)
                   else "the keeper never ranked it profitable")
            if self.keeper is None:
                why = "no keeper configured"
            if not took:
                why = f"its historical liquidation failed on the fork; {why}"
            out.append(Opportunity(liq.block, protocol, account, liq.collateral, liq.debt,
                                   liq.profit_quote, liq.liquidator if took else None, None,
                                   why, historical_liquidator=liq.liquidator))
        return out

"""The devnet price-path replay's sampling of the engine's books (`keeper.backtest.episodes`
builds the opportunities from it; `keeper.backtest.devnet_replay` drives the replay).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from eth_abi.abi import encode

from keeper.backtest.episodes import Episodes, Position, Sighting
from keeper.backtest.model import HealthSample
from keeper.execution.capital import BALANCE_OF
from keeper.ranking import rank
from keeper.types import BlockRef, Candidate
from keeper.types import Opportunity as Ranked
from keeper.wiring import Keeper

WAD = 10**18
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95)
UNBOUNDED = -(2**255)  # a minimum profit that keeps every valuation, losses too
NO_DEBT = 2**255  # a health factor at or above this is "no debt" (uint max in both protocols)


@dataclass
class Recorder:
    """Samples the engine's books at every block the replay steps (between awaits: stable).

    At every block: which positions are liquidatable. At the blocks it values (each step's
    price block, and the first block of each new episode): what each would have paid alone
    there (`keeper.ranking.rank` on the unsized candidate, net of gas and slippage), and
    whether the debt asset on hand could repay it.
    """

    keeper: Keeper
    symbols: Mapping[str, str]  # token address (lower-case) -> symbol
    episodes: Episodes = field(default_factory=Episodes)
    health: list[HealthSample] = field(default_factory=list)
    _last: set[Position] = field(default_factory=set)

    async def sample(self, at: BlockRef, ranked: Sequence[Ranked], *, value: bool) -> None:
        engine = self.keeper.engine
        by_position: dict[Position, list[Candidate]] = {}
        for strategy in engine.strategies:
            for candidate in strategy.candidates(at):
                by_position.setdefault((candidate.strategy, candidate.account.lower()),
                                       []).append(candidate)
        held = {(o.strategy, o.account.lower()) for o in ranked}
        balances = await self._balances(sorted({c.debt for cs in by_position.values()
                                                for c in cs}), at.number)
        sightings: dict[Position, Sighting] = {}
        for position, candidates in sorted(by_position.items()):
            first = candidates[0]
            sighting = Sighting(first.collateral, first.debt, ranked=position in held)
            if value or position not in self._last:
                best = rank(candidates, dex=engine.dex, quote_token=engine.quote_token,
                            base_fee=engine.next_base_fee, priority_fee=engine.priority_fee,
                            min_profit=UNBOUNDED, block=at.number)
                if best:
                    top = best[0]
                    sighting = Sighting(top.collateral, top.debt, top.net_profit,
                                        short=balances.get(top.debt, 0) < top.debt_to_cover,
                                        ranked=position in held)
            sightings[position] = sighting
        self._last = set(sightings)
        self.episodes.sample(at.number, sightings)

    async def _balances(self, tokens: Sequence[str], block: int) -> dict[str, int]:
        """The sender's balance of each token at `block` (what the keeper's sizing had)."""
        executor = self.keeper.executor
        if executor is None or not tokens:
            return {}
        data = BALANCE_OF + encode(["address"], [executor.address]).hex()
        answers = await self.keeper.chain.batch(
            [("eth_call", [{"to": t, "data": data}, hex(block)]) for t in tokens])
        return {t: int(a, 16) for t, a in zip(tokens, answers, strict=True)}

    def sample_health(self, at: BlockRef) -> None:
        """The health-factor distribution over every tracked position with debt."""
        factors: list[float] = []
        for source in self.keeper.engine.capabilities.positions:
            factors += [p.health_factor / WAD for p in source.positions(at)
                        if p.health_factor < NO_DEBT]
        factors.sort()
        self.health.append(HealthSample(
            block=at.number, positions=len(factors), below_one=sum(f < 1 for f in factors),
            quantiles={q: _quantile(factors, q) for q in QUANTILES} if factors else {},
        ))

    def symbol(self, token: str) -> str:
        return self.symbols.get(token.lower(), token)


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of a sorted, non-empty sequence."""
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

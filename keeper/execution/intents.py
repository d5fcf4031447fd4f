"""From ranked opportunities to unsigned transactions: direct calls, flash plans, batches.

`IntentBuilder` is wired once with the strategies (each builds its own call, and its own
leg for the flash executor: execution knows no protocol), the flash route, the DEX book
(pair addresses only) and the batching limits. It decides:

- which candidates go through the flash executor (one is configured, the strategy can
  describe the liquidation to it, and the seized collateral has a pool to be sold on)
  and sizes them within what a lender can lend, net of its fee, at flash gas;
- how ranked liquidations share transactions (`keeper.batching`);
- the `TxIntent` of each transaction: the strategy's own call paid with tokens the
  sender holds, or `execute(plan)` on the flash executor, which sells the surplus for
  the quote token on the pools ranking quoted that sale on (`Opportunity.profit_swap`)
  and must get at least the gas of every liquidation as ranked alone plus `min_profit`
  (so a send that would lose money reverts; a batch burns less gas than that, never more);
  with a bid to `block.coinbase` (`BidPolicy.to_coinbase`), the plan pays the lead's bid
  share of the surplus over that minimum to the block's builder.

`GasBook` learns the gas flash liquidations really use from receipts (and what a batch
saves per member), so later rankings price them right. What it learns leaves out the
swaps' own gas (`SwapLeg.gas`): ranking adds the gas of each exit it values, so a V3
path or a two-hop route is priced as such whatever the last receipt sold through.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from keeper.batching import Send, group_sends
from keeper.bids import BidPolicy
from keeper.dex.uniswap_v2 import PairBook
from keeper.dex.venue import Venue, legs_of, pools_of
from keeper.execution.flash_route import FLASH_GAS_OVERHEAD, FlashRoute, min_out
from keeper.execution.outcomes import RecentKeys
from keeper.strategy import FlashLiquidating, Strategy
from keeper.types import Call, Candidate, Opportunity, Outcome, TxIntent


@dataclasses.dataclass
class GasBook:
    """Gas of flash liquidations as receipts show it."""

    used: dict[str, int] = dataclasses.field(default_factory=dict)  # strategy -> gas used
    # Gas a batch saves per liquidation beyond the first (at least the 21,000 base cost).
    batch_saving: int = 21_000

    def gas_for(self, strategy: str, direct_gas: int) -> int:
        """Gas to rank a flash liquidation with: the last receipt's, or a first guess."""
        return self.used.get(strategy, direct_gas + FLASH_GAS_OVERHEAD)

    def learn(self, send: Send, outcome: Outcome) -> None:
        if not outcome.gas_used or outcome.status != "confirmed":
            return
        if len(send) == 1:
            swaps = sum(s.gas for s in (send[0].swap, send[0].profit_swap) if s is not None)
            self.used[send[0].strategy] = max(outcome.gas_used - swaps, 0)
            return
        alone = sum(o.gas_limit for o in send)  # as ranked alone: their swaps' gas included
        # At most half the smallest member's gas: a batch whose members were mostly skipped
        # on chain (lost races cost the executor little) used far less than any full batch,
        # and the saving learned from it priced later batches at zero gas (builders dropped
        # them: "intrinsic gas too high").
        self.batch_saving = min(max(0, (alone - outcome.gas_used) // (len(send) - 1)),
                                min(o.gas_limit for o in send) // 2)


class IntentBuilder:
    """Turns ranked opportunities into transactions (no I/O but the flash liquidity read)."""

    def __init__(
        self, strategies: Sequence[Strategy], flash_legs: Mapping[str, FlashLiquidating],
        dex: PairBook, *, quote_token: str, min_profit: int, flash: FlashRoute | None = None,
        batch_max: int = 5, exits: Venue | None = None, bids: BidPolicy | None = None,
    ) -> None:
        self.strategies = {s.name: s for s in strategies}
        self.flash_legs = flash_legs
        self.dex = dex
        # Where ranking sells the collateral (`keeper.dex.venue`): the V2 pairs unless given.
        self.exits: Venue = exits if exits is not None else dex
        self.quote_token = quote_token.lower()
        self.min_profit = min_profit
        self.flash = flash
        self.batch_max = batch_max
        self.gas = GasBook()
        self.bids = bids  # to_coinbase: flash plans pay the bid share to block.coinbase
        self.unbatchable = RecentKeys()  # keys whose batch failed simulation: sent alone

    def flashable(self, candidate: Candidate) -> bool:
        """Sent through the flash executor: one is configured, the strategy can describe the
        liquidation to it, and the seized collateral has a pool to be sold on."""
        return (
            self.flash is not None
            and candidate.strategy in self.flash_legs
            and candidate.collateral != candidate.debt
            and bool(self.exits.pools(candidate.collateral, candidate.debt))
        )

    def flash_sized(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """Sized within what a lender can lend now (`FlashRoute.refresh` first), net of its
        fee, ranked at flash gas."""
        flash = self.flash
        assert flash is not None
        return [
            dataclasses.replace(
                c, max_repay=min(c.max_repay, flash.max_amount(c.debt, c.collateral)),
                fee=flash.fee(c.debt, c.collateral),
                gas_limit=self.gas.gas_for(c.strategy, c.gas_limit),
            )
            for c in candidates
        ]

    def intent(self, send: Send) -> TxIntent:
        """The transaction of one send: a liquidation alone, or a flash batch."""
        lead = send[0]
        if len(send) > 1 or (lead.candidate.fee is not None and self.flash is not None):
            return self._flash_intent(send)
        candidate = lead.candidate
        call = self.strategies[lead.strategy].build(candidate, lead.debt_to_cover)
        return TxIntent(lead, call, candidate.gas_limit, candidate.spender)

    def _flash_intent(self, send: Send) -> TxIntent:
        """`execute(plan)` on the flash executor for one liquidation or a batch of one debt
        token (see the module docstring for its profit guard)."""
        flash = self.flash
        assert flash is not None
        lead = send[0]
        legs = []
        for opp in send:
            swap = opp.swap
            assert swap is not None  # ranking sold the collateral along these pools
            pools = tuple(hop.pair for hop in legs_of(swap))  # V2 pairs and V3 pools alike
            legs.append(self.flash_legs[opp.strategy].flash_liquidation(
                opp.candidate, opp.debt_to_cover, pools, min_out(swap.amount_out)))
        profit_pairs: tuple[str, ...] = ()
        if lead.profit_swap is not None:
            # The pools ranking valued the surplus sale on (a batch's summed surplus goes
            # the lead's way: one larger sale returns at least what the parts were ranked at).
            profit_pairs = tuple(hop.pair for hop in legs_of(lead.profit_swap))
        elif lead.debt != self.quote_token:
            # Ranking found no sale of the surplus (none, or none of that size): sell what
            # there is along the exits' best quote of the ranked surplus, whatever venue it
            # is on; with none, the surplus stays in the debt token and min_profit (quote
            # wei) guards it as debt units (keeper.routes refuses a debt asset without any).
            surplus = max(lead.debt_out - lead.debt_to_cover, 1)
            sale = self.exits.quote(lead.debt, self.quote_token, surplus)
            if sale is not None:
                profit_pairs = tuple(hop.pair for hop in legs_of(sale))
        plan = flash.plan_batch(
            legs, debt=lead.debt, repays=[o.debt_to_cover for o in send],
            min_profit=sum(o.gas_cost for o in send) + self.min_profit,
            profit_pairs=profit_pairs)
        bids = self.bids
        # The bid is paid in ether, so only out of a surplus in the quote token (the wrapped
        # native one): the debt token itself, or what the profit sale returns.
        if bids is not None and bids.to_coinbase and lead.coinbase_bid > 0 and (
                profit_pairs or lead.debt == self.quote_token):
            plan = dataclasses.replace(plan, bid_bps=bids.bps(lead.strategy))
        call = Call(to=flash.executor, data=flash.calldata(plan))
        largest = max(o.gas_limit for o in send)  # a batch never needs less than this alone
        gas = max(sum(o.gas_limit for o in send) - (len(send) - 1) * self.gas.batch_saving,
                  largest)
        return TxIntent(lead, call, gas, None, members=send[1:])

    def sends(self, opportunities: Sequence[Opportunity]) -> list[Send]:
        """Ranked opportunities grouped into transactions (`keeper.batching`)."""
        flash = self.flash
        if flash is None or self.batch_max <= 1:
            return [(o,) for o in opportunities]

        def batchable(opp: Opportunity) -> bool:
            return opp.candidate.fee is not None and opp.key not in self.unbatchable

        def touches(opp: Opportunity) -> frozenset[str]:
            return frozenset((*self.exits.pools(opp.collateral, opp.debt),
                              *self.exits.pools(opp.debt, self.quote_token)))

        def fits(batch: Sequence[Opportunity]) -> bool:
            # A batch sells its summed surplus once, after every exit, along the lead's
            # sale: ranking valued each member's exit after the sales of those before it, and
            # its own sale on its own pools, which stays true only if no exit touches the
            # sale's pools and every member sells on the same ones.
            sale = batch[0].profit_swap
            sold = pools_of(sale) if sale is not None else set()
            for opp in batch[1:]:
                own = pools_of(opp.profit_swap) if opp.profit_swap is not None else set()
                if own != sold or (opp.swap is not None and pools_of(opp.swap) & sold):
                    return False
            return flash.can_lend(batch[0].debt, [o.collateral for o in batch],
                                  sum(o.debt_to_cover for o in batch))

        return group_sends(opportunities, batchable=batchable, touches=touches, fits=fits,
                           max_size=self.batch_max)

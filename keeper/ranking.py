"""Ranking: size and value every liquidation candidate in the quote asset, best first.

Protocol-agnostic: a `Candidate` only offers `seize(repay)`, `max_repay` and
`gas_limit` (and `repay_ranges` when the protocol accepts only some sizes: each range is
searched, the best size of all wins). For each one, the repay size in (0, max_repay] that
maximizes

    net(repay) = value(swap_out(collateral -> debt, seize(repay)) - repay - fee(repay)) - gas

is searched with exact integer evaluations, where `value` converts debt-token
units to the quote token (the wrapped native coin, so gas wei == quote wei) as
the liquidation will realize them. Sent with the sender's own tokens (`fee` is None)
the debt asset stays with the account: valued at the DEX mid price of the debt/quote
pair, as `realized_value` values it afterwards. Sent through the flash executor (a
`fee` is set), the surplus is sold for the quote token in the same transaction: valued
at the exact quote of that sale (`Opportunity.profit_swap`, the pools the executor sells
it along), a deficit at the mid price. Swap output is concave in size, so
the search evaluates max_repay and a geometric ladder below it (max/2 …
max/1024), then narrows the bracket around the best rung by golden-section
search on integers, and finishes exhaustively once the bracket is a few units
wide. It makes at most `MAX_EVALUATIONS` evaluations per candidate.

The book is a `keeper.dex.venue.Venue`: one venue (a Uniswap V2 `PairBook`, as with
a V2-only configuration), or `Venues`, whose quote for each size is the best exit over
every venue, fee tier and two-hop path through the quote token, so the size search
maximizes net profit over the exits too. A flash liquidation's swaps are in its own
transaction, so their gas (`SwapLeg.gas`: a V3 pool or a two-hop path costs more than one
V2 pair) is counted at the ranked gas price, and of each venue's best pool and the two-hop
path (`Venues.quotes`) the exit with the best net after that gas is taken; its gas is in
the opportunity's `gas_limit`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from keeper.bids import BidPolicy
from keeper.dex.venue import Venue, exit_options, pools_of
from keeper.size_search import LADDER_STEPS, MAX_EVALUATIONS, search_max
from keeper.types import Candidate, Opportunity, SwapLeg

# The size search lives in keeper.size_search; its names stay importable from here.
__all__ = ["LADDER_STEPS", "MAX_EVALUATIONS", "best_size", "head_start", "rank",
           "realized_value", "search_max", "swaps_of"]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One repay size, valued exactly."""

    repay: int
    seized: int
    swap: SwapLeg | None
    debt_out: int  # debt-token units the seized collateral turns into
    net: int  # quote wei, gas included
    profit_swap: SwapLeg | None = None  # flash: the surplus sold for the quote token
    swap_gas: int = 0  # flash: the executor's gas for the exit and the sale (in `net`)


def _floor(value: Fraction) -> int:
    return value.numerator // value.denominator


class _Valuer:
    """Exact valuation of one candidate's repay sizes against the DEX book."""

    def __init__(
        self, candidate: Candidate, dex: Venue, to_quote: Fraction, gas_cost: int,
        quote_token: str = "", *, gas_price: int = 0,
    ) -> None:
        self.candidate = candidate
        self.dex = dex
        self.to_quote = to_quote
        self.gas_cost = gas_cost
        self.gas_price = gas_price  # of the swaps a flash liquidation makes itself
        self.quote_token = quote_token
        self.cache: dict[int, Evaluation] = {}
        # The pools a flash surplus sale may touch (none is sold otherwise).
        self.sale_pools = set(dex.pools(candidate.debt, quote_token)) \
            if candidate.fee is not None and quote_token else set()

    def value(self, debt_amount: int | Fraction) -> int:
        """Debt-token units in quote wei at the mid price (rounded down)."""
        return _floor(debt_amount * self.to_quote)

    def realized(self, surplus: int, exit_swap: SwapLeg | None) -> tuple[int, SwapLeg | None]:
        """(quote wei, the sale) the liquidation's surplus of debt token turns into.

        Flash (`Candidate.fee` set): the executor sells a positive surplus for the quote
        token after the exit (FlashLiquidator.execute's profit swap), so it is worth that
        sale's exact quote (0 when no pool can take it all), on the pools as the exit leaves
        them. Otherwise, or for a deficit, the mid price.
        """
        c = self.candidate
        if c.fee is None or surplus <= 0 or c.debt == self.quote_token:
            return self.value(surplus), None
        book = self.dex
        if exit_swap is not None and pools_of(exit_swap) & self.sale_pools:
            book = book.copy()  # an exit through the quote token moved the sale's pool
            book.swap(exit_swap)
        sale = book.quote(c.debt, self.quote_token, surplus)
        return (sale.amount_out, sale) if sale is not None else (0, None)

    def exits(self, seized: int) -> list[SwapLeg]:
        """The exits of `seized` worth valuing: the most output; for a flash liquidation
        at a gas price, also each cheaper-in-gas alternative whose lower output (at the mid
        price) is within twice the gas it saves (the others cannot win)."""
        c = self.candidate
        if c.fee is None or not self.gas_price:
            leg = self.dex.quote(c.collateral, c.debt, seized)
            return [] if leg is None else [leg]
        options = exit_options(self.dex, c.collateral, c.debt, seized)
        if len(options) < 2:
            return options
        top = options[0]
        return [top, *(o for o in options[1:] if o.gas < top.gas and self.value(
            top.amount_out - o.amount_out) <= 2 * (top.gas - o.gas) * self.gas_price)]

    def _valued(self, repay: int, seized: int, swap: SwapLeg | None, out: int) -> Evaluation:
        c = self.candidate
        fee = c.fee(repay) if c.fee is not None else 0
        worth, sale = self.realized(out - repay - fee, swap)
        gas = 0
        if c.fee is not None:  # flash: the exit and the sale run in the liquidation's tx
            gas = (swap.gas if swap is not None else 0) + (sale.gas if sale is not None else 0)
        net = worth - self.gas_cost - gas * self.gas_price
        return Evaluation(repay, seized, swap, out, net, sale, gas)

    def evaluate(self, repay: int) -> Evaluation:
        if repay not in self.cache:
            c = self.candidate
            seized = c.seize(repay)
            if c.collateral == c.debt:
                best = self._valued(repay, seized, None, seized)
            else:
                options = [self._valued(repay, seized, leg, leg.amount_out)
                           for leg in self.exits(seized)]
                # The best net; equal nets keep the most output (the first).
                best = max(options, key=lambda e: e.net) if options \
                    else self._valued(repay, seized, None, 0)
            self.cache[repay] = best
        return self.cache[repay]

    def net(self, repay: int) -> int:
        return self.evaluate(repay).net


def accepted_sizes(c: Candidate) -> list[tuple[int, int]]:
    """The repay intervals ranking may propose: `repay_ranges` cut to [1, max_repay] (the
    dispatcher may have lowered max_repay to the capital at hand), or [1, max_repay]."""
    if c.max_repay < 1:
        return []
    if not c.repay_ranges:
        return [(1, c.max_repay)]
    return [(max(lo, 1), min(hi, c.max_repay)) for lo, hi in c.repay_ranges
            if max(lo, 1) <= min(hi, c.max_repay)]


def best_size(
    candidate: Candidate, dex: Venue, quote_token: str, gas_cost: int,
    budget: int = MAX_EVALUATIONS, *, gas_price: int = 0,
) -> tuple[Evaluation, int, int, int] | None:
    """(best evaluation, evaluations, gross_value, slippage), or None when it cannot be valued.
    `gas_price` prices a flash liquidation's own swaps (`Evaluation.swap_gas`, in its net).

    None when max_repay is not positive or the book lacks the collateral/debt or debt/quote pair.
    """
    c = candidate
    if c.max_repay <= 0:
        return None
    collateral_to_debt = dex.mid_price(c.collateral, c.debt)
    to_quote = dex.mid_price(c.debt, quote_token)
    if collateral_to_debt is None or to_quote is None:
        return None
    ranges = accepted_sizes(c)
    if not ranges:
        return None
    valuer = _Valuer(c, dex, to_quote, gas_cost, quote_token.lower(), gas_price=gas_price)
    evaluations = 0
    for lo, hi in ranges:  # each range searched on its own; the best size of all wins

        def shifted(x: int, offset: int = lo - 1) -> int:
            return valuer.net(x + offset)

        _, spent = search_max(shifted, hi - lo + 1, budget=budget)
        evaluations += spent
    best = max(valuer.cache.values(), key=lambda e: (e.net, -e.repay))
    fee = c.fee(best.repay) if c.fee is not None else 0
    gross_value = valuer.value(best.seized * collateral_to_debt - best.repay - fee)
    # gross - slippage - gas == net exactly; slippage is the mid-price value minus the swap's.
    slippage = gross_value - (best.net + gas_cost + best.swap_gas * gas_price)
    return best, evaluations, gross_value, slippage


def rank(
    candidates: Iterable[Candidate],
    *,
    dex: Venue,
    quote_token: str,
    base_fee: int,
    priority_fee: int,
    min_profit: int,
    block: int,
    pending: Iterable[SwapLeg] = (),
    bids: BidPolicy | None = None,
    budget: int = MAX_EVALUATIONS,
    rejected: dict[str, int] | None = None,
) -> list[Opportunity]:
    """Best-sized opportunities with net_profit >= min_profit, best first, one per account.
    With `bids`, each tips a share of its profit (`keeper.bids`), counted as a cost.
    `budget`: valuations per candidate's size search (fewer: a rougher best size, as the
    prepared liquidations use). `rejected`: filled with the best net profit of each
    candidate valued below `min_profit` (by key), for the passed-over report.

    Values are wei of `quote_token` (the wrapped native coin, in which gas is paid).
    Candidates the book cannot value (no collateral/debt or debt/quote pair) are skipped.

    Sequential, as they will be mined: each is valued independently first, then, best
    first, valued again on a copy of the book that already holds the swaps of the ones
    before it (a crash makes many liquidations sell the same collateral into the same
    pool; flash ones also sell their surplus for the quote token); those that are no
    longer worth `min_profit` there are dropped. `pending` are the swaps of liquidations
    already sent and not mined yet: they will be mined first.
    """
    quote_token = quote_token.lower()
    gas_price = base_fee + priority_fee
    legs = list(pending)
    if legs:
        dex = dex.copy()
        for leg in legs:
            dex.swap(leg)
    best_per_account: dict[tuple[str, str], Opportunity] = {}
    for c in candidates:
        opp = _best(c, dex, quote_token, gas_price=gas_price, min_profit=min_profit, block=block,
                    base_fee=base_fee, bids=bids, budget=budget, rejected=rejected)
        if opp is None:
            continue
        who = (c.strategy, c.account)
        kept = best_per_account.get(who)
        if kept is None or (opp.net_profit, kept.key) > (kept.net_profit, opp.key):
            best_per_account[who] = opp
    alone = sorted(best_per_account.values(), key=lambda o: (-o.net_profit, o.key))
    book = dex.copy()
    moved: set[str] = set()
    ranked: list[Opportunity] = []
    for first in alone:
        c = first.candidate
        touches = {*book.pools(c.collateral, c.debt), *book.pools(c.debt, quote_token)}
        opp = first
        if touches & moved:
            again = _best(c, book, quote_token, gas_price=gas_price, min_profit=min_profit,
                          block=block, base_fee=base_fee, bids=bids, budget=budget,
                          rejected=rejected)
            if again is None:
                continue
            opp = again
        ranked.append(opp)
        for swap in swaps_of(opp):
            book.swap(swap)
            moved.update(pools_of(swap))
    return ranked


def head_start(
    candidates: Sequence[Candidate], *, dex: Venue, quote_token: str, accounts: int,
) -> tuple[list[Candidate], list[Candidate]]:
    """(the candidates of the `accounts` most promising accounts, all the others).

    Promise is a cheap estimate, one `seize` per candidate: the seized collateral at the
    mid price, less the repay and the lender's fee, at `max_repay`, without slippage or
    gas. The engine ranks and sends the first part before it ranks the rest, so the best
    liquidation of a crash is not held up by sizing every other one. Candidates the
    book cannot value come last.
    """
    quote_token = quote_token.lower()
    promise: dict[tuple[str, str], Fraction] = {}
    for c in candidates:
        to_debt = dex.mid_price(c.collateral, c.debt)
        to_quote = dex.mid_price(c.debt, quote_token)
        value = Fraction(-1)
        sizes = accepted_sizes(c)
        if to_debt is not None and to_quote is not None and sizes:
            top = sizes[-1][1]  # the largest accepted size
            fee = c.fee(top) if c.fee is not None else 0
            value = (c.seize(top) * to_debt - top - fee) * to_quote
        who = (c.strategy, c.account)
        promise[who] = max(value, promise.get(who, value))
    best = set(sorted(promise, key=lambda w: (-promise[w], w))[:accounts])
    first = [c for c in candidates if (c.strategy, c.account) in best]
    return first, [c for c in candidates if (c.strategy, c.account) not in best]


def _best(
    c: Candidate, dex: Venue, quote_token: str, *, gas_price: int, min_profit: int,
    block: int, base_fee: int = 0, bids: BidPolicy | None = None, budget: int = MAX_EVALUATIONS,
    rejected: dict[str, int] | None = None,
) -> Opportunity | None:
    """The best size of one candidate on `dex`, if it is worth at least `min_profit` after
    its bid (`bids`: the tip is a share of the profit, counted as a cost)."""
    found = best_size(c, dex, quote_token, c.gas_limit * gas_price, budget, gas_price=gas_price)
    if found is None:
        return None
    ev, evaluations, gross_value, slippage = found
    gas_limit = c.gas_limit + ev.swap_gas  # a flash liquidation's own swaps included
    gas_cost = gas_limit * gas_price
    net, tip, bid = ev.net, gas_price - base_fee, 0
    if bids is not None:
        before_tip = ev.net + gas_cost - gas_limit * base_fee
        # A flash liquidation in a bundle whose surplus ends in the quote token (the wrapped
        # native one) bids to block.coinbase in ether; any other bids by its tip.
        coinbase = bids.to_coinbase and c.fee is not None and (
            ev.profit_swap is not None or c.debt == quote_token)
        if coinbase:
            tip = bids.tip(c.strategy, 0, gas_limit, base_fee)  # the configured tip only
        else:  # in a bundle the tip is the bid, made as the coinbase one: the share of
            # what it makes over min_profit (else a bid share of 0.9 left only dust positions
            # whose tenth fell under the minimum: a public bot took them)
            keep = min_profit if bids.to_coinbase else 0
            tip = bids.tip(c.strategy, before_tip - keep, gas_limit, base_fee)
        gas_cost = gas_limit * (base_fee + tip)
        net = before_tip - gas_limit * tip  # gross - slippage - gas_cost, still exactly
        if coinbase:
            bid = bids.coinbase_bid(c.strategy, net, min_profit)
            net -= bid
    if net < min_profit:
        if rejected is not None:
            rejected[c.key] = net
        return None
    return Opportunity(
        strategy=c.strategy,
        key=c.key,
        account=c.account,
        collateral=c.collateral,
        debt=c.debt,
        debt_to_cover=ev.repay,
        collateral_received=ev.seized,
        gross_value=gross_value,
        slippage=slippage,
        gas_limit=gas_limit,
        gas_cost=gas_cost,
        net_profit=net,
        quote_token=quote_token,
        health_factor=c.health_factor,
        block=block,
        candidate=c,
        swap=ev.swap,
        profit_swap=ev.profit_swap,
        debt_out=ev.debt_out,
        evaluations=evaluations,
        priority_fee=tip,
        coinbase_bid=bid,
    )


def swaps_of(opp: Opportunity) -> tuple[SwapLeg, ...]:
    """The swaps a liquidation makes when mined, in order: a flash liquidation's exit and
    the sale of its surplus for the quote token. One paid from the wallet makes none: its
    collateral stays with the sender (its `swap` is how it was valued: what selling that
    collateral alone would fetch), so it moves no pool that later liquidations are valued on
    (valuing them after sales that never happen dropped most of a crash's liquidations of
    one collateral as unprofitable, while a competitor took them)."""
    if opp.candidate.fee is None:
        return ()
    return tuple(s for s in (opp.swap, opp.profit_swap) if s is not None)


def realized_value(
    dex: Venue,
    quote_token: str,
    *,
    collateral: str,
    debt: str,
    collateral_received: int,
    debt_paid: int,
    gas_paid: int,
) -> int:
    """What a done liquidation earned, in quote wei, valued exactly as `rank` values it
    when sent with the sender's own tokens (a flash liquidation's profit arrives in the
    quote token: the receipt says what it earned).

    The collateral received is priced as if swapped back to the debt asset on
    the DEX now; the net debt-asset amount is converted at the debt/quote mid
    price; the gas paid is subtracted.
    """
    to_quote = dex.mid_price(debt, quote_token)
    if to_quote is None:
        return -gas_paid
    if collateral == debt:
        out = collateral_received
    else:
        swap = dex.quote(collateral, debt, collateral_received) if collateral_received > 0 else None
        out = swap.amount_out if swap is not None else 0
    return _floor((out - debt_paid) * to_quote) - gas_paid

"""Prices that move without an `AnswerUpdated` the book could hear.

Many live reserves are priced by adapters that emit nothing (a ratio times a base
aggregator, capped over time), and a Chainlink `EACAggregatorProxy` can switch to a new
aggregator, whose logs the book does not listen to. So:

- at sync, `classify` marks a reserve `polled` when its feed (market.resolve_feeds) emitted
  no AnswerUpdated since `start_block`, or it has no source at all (AaveOracle's fallback);
- every block, `refresh` re-reads in ONE batch the oracle price of every polled reserve, the
  `aggregator()` of every proxy source and the sentinel's isLiquidationAllowed(); a reserve
  whose proxy switched aggregator gets its new feed, is polled from then on, and its price
  is read again in the same block. The book takes the results through `reprice`.

A polled reserve's price is therefore never older than the block the candidates are
computed at, and the float screen (screen.py), re-priced from the book's market at each
`candidates`, keeps flagging every account whose HF is below 1 (no false negatives).
"""

from __future__ import annotations

from dataclasses import replace

from keeper.strategy import ChainReader
from keeper.types import LogFilter
from strategies.aave_v3 import events as ev
from strategies.aave_v3.book import PositionBook
from strategies.aave_v3.market import Market, Reserve
from strategies.aave_v3.views import AGGREGATOR, _address, _call, _fn


async def classify(chain: ChainReader, market: Market, start_block: int, block: int) -> Market:
    """`market` with `polled` set on the reserves whose feed emitted no AnswerUpdated in
    [start_block, block] (one getLogs over the feeds) or that have no price source."""
    feeds = tuple(sorted({r.feed for r in market.reserves if int(r.feed, 16)}))
    heard: set[str] = set()
    if feeds:
        logs = await chain.get_logs(LogFilter(feeds, (ev.TOPIC_ANSWER_UPDATED,)),
                                    start_block, block)
        heard = {e.address.lower() for e in logs}
    return replace(market, reserves=tuple(
        replace(r, polled=r.feed.lower() not in heard) for r in market.reserves))


def _proxies(reserves: tuple[Reserve, ...]) -> list[str]:
    """Sources that are Chainlink proxies (their feed is an aggregator behind them)."""
    return sorted({r.price_source for r in reserves
                   if int(r.price_feed or "0", 16) and r.price_feed != r.price_source})


async def refresh(chain: ChainReader, book: PositionBook, block: int) -> Market:
    """Re-read polled prices, proxies' aggregators and the sentinel at `block` (one batch,
    a second only after an aggregator switch); updates the book, returns its market."""
    market = book.market
    polled = [r for r in market.reserves if r.polled]
    proxies = _proxies(market.reserves)
    price_fn = _fn("oracle", "getAssetPrice")
    calls = [_call(market.oracle, price_fn.data(r.asset), block) for r in polled]
    calls += [_call(p, AGGREGATOR, block) for p in proxies]
    sentinel_fn = _fn("sentinel", "isLiquidationAllowed")
    has_sentinel = int(market.sentinel, 16) != 0
    if has_sentinel:
        calls.append(_call(market.sentinel, sentinel_fn.data(), block))
    if not calls:
        return market
    answers = await chain.batch(calls)
    updated = {r.asset: replace(r, price=price_fn.decode(a)[0])
               for r, a in zip(polled, answers, strict=False)}
    aggregators = {p: _address("0x" + str(a).removeprefix("0x")[-40:])
                   for p, a in zip(proxies, answers[len(polled):], strict=False)}
    switched = [r for r in market.reserves if r.price_source in aggregators
                and int(aggregators[r.price_source], 16)
                and aggregators[r.price_source] != r.price_feed]
    if switched:  # the proxy answers through a new aggregator: read the price now, poll it
        again = await chain.batch(
            [_call(market.oracle, price_fn.data(r.asset), block) for r in switched])
        for r, a in zip(switched, again, strict=True):
            updated[r.asset] = replace(updated.get(r.asset, r), price=price_fn.decode(a)[0],
                                       price_feed=aggregators[r.price_source], polled=True)
    allows = bool(sentinel_fn.decode(answers[-1])[0]) if has_sentinel else None
    if updated or allows is not None:
        book.reprice(updated.values(), allows)
    return book.market

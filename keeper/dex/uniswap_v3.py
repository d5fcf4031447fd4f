"""Uniswap V3: a book of pools with exact quotes, kept current from the pools' logs.

`V3Book.load` reads every pool at a block in three batched rounds, however many
pools there are: each pool's token0/token1/fee/tickSpacing/slot0/liquidity; every
word of its tick bitmap (TickBitmap, `tickBitmap(int16)`) from MIN_TICK to
MAX_TICK; then `ticks(int24)` of every initialized tick the words show. After that
`apply` keeps the pools current from their own `Initialize`, `Swap`, `Mint` and
`Burn` logs with no I/O (the engine fetches them with every other log of a block,
in its one `eth_getLogs`). `V3Book.discover` finds a factory's pools for a set of
tokens (`getPool` over every pair and fee tier, one batch).

Quotes (`quote`, `quote_exact_out`) run the mirrored swap loop
(`keeper.dex.v3_pool`) on every fee tier of the pair and keep the best; a quote that
the pool cannot fill in full is no quote.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

from eth_utils.crypto import keccak

from keeper.dex.v3_math import UniswapV3Error, get_amount0_delta, get_amount1_delta, mul_div
from keeper.dex.v3_pool import (
    SwapResult,
    TickInfo,
    V3Pool,
    amount_in_of,
    amount_out_of,
    quote_exact_input_single,
    quote_exact_output_single,
)
from keeper.dex.v3_ticks import MAX_TICK, MIN_TICK
from keeper.dex.venue import V3_HOP_GAS, V3_STEP_GAS, V3_TICK_GAS, ExitHop
from keeper.strategy import ChainReader
from keeper.types import BlockRef, Event, LogFilter, SwapLeg

VENUE = "uniswap_v3"
# Exits must leave this much room in their pool (V3Book.headroom_bps): 1 bp of the input.
EXIT_HEADROOM_BPS = 1
FEE_TIERS = (100, 500, 3000, 10000)


def _topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def _selector(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex()


INITIALIZE_TOPIC = _topic("Initialize(uint160,int24)")
SWAP_TOPIC = _topic("Swap(address,address,int256,int256,uint160,uint128,int24)")
MINT_TOPIC = _topic("Mint(address,address,int24,int24,uint128,uint256,uint256)")
BURN_TOPIC = _topic("Burn(address,int24,int24,uint128,uint256,uint256)")
POOL_TOPICS = (INITIALIZE_TOPIC, SWAP_TOPIC, MINT_TOPIC, BURN_TOPIC)

_STATE_CALLS = tuple(_selector(s) for s in (
    "token0()", "token1()", "fee()", "tickSpacing()", "slot0()", "liquidity()"))
_TICK_BITMAP = _selector("tickBitmap(int16)")
_TICKS = _selector("ticks(int24)")
_GET_POOL = _selector("getPool(address,address,uint24)")


def _words(data: str) -> list[int]:
    raw = data.removeprefix("0x")
    if len(raw) % 64:
        raise UniswapV3Error(f"malformed ABI data: {data[:80]!r}")
    return [int(raw[i : i + 64], 16) for i in range(0, len(raw), 64)]


def _signed(word: int) -> int:
    return word - 2**256 if word >= 2**255 else word


def _arg(value: int) -> str:
    return f"{value % 2**256:064x}"


def _address(word: int) -> str:
    return "0x" + f"{word:040x}"[-40:]


def _call(to: str, data: str, tag: str) -> tuple[str, Sequence[object]]:
    return ("eth_call", [{"to": to, "data": data}, tag])


@dataclass(frozen=True, slots=True)
class _Quote:
    pool: V3Pool
    zero_for_one: bool
    result: SwapResult


class V3Book:
    """Uniswap V3 pools by lower-case address (`by_address`), kept current from their logs.
    A `keeper.dex.venue.Venue`.

    `headroom_bps`: a pool is an exit for an exact input only if it could take that much
    more (`EXIT_HEADROOM_BPS` for the keeper's exits; 0: as QuoterV2). The executor sells
    all that was seized, and the chain may hold a little more than ranked: an exit fitted
    to a range's last unit would cross into an empty one (docs/venues.md)."""

    venue = VENUE

    def __init__(self, pools: Iterable[V3Pool] = (), *, block: int = 0,
                 headroom_bps: int = 0) -> None:
        self.block = block
        self.headroom_bps = headroom_bps
        self.by_address: dict[str, V3Pool] = {}
        self._by_tokens: dict[tuple[str, str], tuple[str, ...]] = {}
        for pool in pools:
            self.add(pool)

    def add(self, pool: V3Pool) -> None:
        """Add (or replace) a pool; addresses are stored lower-case."""
        pool = replace(pool, address=pool.address.lower(), token0=pool.token0.lower(),
                       token1=pool.token1.lower())
        self.by_address[pool.address] = pool
        for key in ((pool.token0, pool.token1), (pool.token1, pool.token0)):
            known = self._by_tokens.get(key, ())
            if pool.address not in known:  # kept lowest fee first (a pool's fee never moves)
                self._by_tokens[key] = tuple(sorted(
                    (*known, pool.address), key=lambda a: self.by_address[a].fee))

    def copy(self) -> V3Book:
        """An independent book (pools are immutable, so a shallow copy is one)."""
        book = V3Book(block=self.block, headroom_bps=self.headroom_bps)
        book.by_address = dict(self.by_address)
        book._by_tokens = dict(self._by_tokens)
        return book

    def pools_for(self, token_a: str, token_b: str) -> list[V3Pool]:
        """Every pool of two tokens (one per fee tier), lowest fee first."""
        addresses = self._by_tokens.get((token_a.lower(), token_b.lower()), ())
        return [self.by_address[a] for a in addresses]  # stored in fee order (`add`)

    # -- loading -----------------------------------------------------------------------

    @staticmethod
    async def discover(
        chain: ChainReader, factory: str, tokens: Iterable[str], block: BlockRef | int,
        fees: Sequence[int] = FEE_TIERS,
    ) -> list[str]:
        """The factory's pools among `tokens` (`getPool` of every pair and fee, one batch)."""
        tag = hex(block.number if isinstance(block, BlockRef) else block)
        pairs = list(itertools.combinations(sorted({t.lower() for t in tokens}), 2))
        calls = [
            _call(factory, _GET_POOL + _arg(int(a, 16)) + _arg(int(b, 16)) + _arg(fee), tag)
            for a, b in pairs for fee in fees
        ]
        answers = await chain.batch(calls) if calls else []
        found = [_address(_words(str(a))[0]) for a in answers]
        return [a for a in found if int(a, 16)]

    @classmethod
    async def load(
        cls, chain: ChainReader, pools: Iterable[str], block: BlockRef | int
    ) -> V3Book:
        """The pools as of `block`, in three batches (state, bitmap words, ticks)."""
        number = block.number if isinstance(block, BlockRef) else block
        tag = hex(number)
        addresses = [a.lower() for a in pools]
        state_calls = [_call(a, s, tag) for a in addresses for s in _STATE_CALLS]
        answers = [str(r) for r in await chain.batch(state_calls)] if state_calls else []
        width = len(_STATE_CALLS)
        bare: list[V3Pool] = []
        for i, address in enumerate(addresses):
            token0, token1, fee, spacing, slot0, liquidity = (
                _words(a) for a in answers[width * i : width * (i + 1)])
            bare.append(V3Pool(
                address=address, token0=_address(token0[0]), token1=_address(token1[0]),
                fee=fee[0], tick_spacing=_signed(spacing[0]), sqrt_price_x96=slot0[0],
                tick=_signed(slot0[1]), liquidity=liquidity[0],
            ))
        word_keys = [(pool, w) for pool in bare for w in _word_range(pool.tick_spacing)]
        words = await chain.batch(
            [_call(p.address, _TICK_BITMAP + _arg(w), tag) for p, w in word_keys]
        ) if word_keys else []
        bitmaps: dict[str, dict[int, int]] = {p.address: {} for p in bare}
        tick_keys: list[tuple[V3Pool, int]] = []
        for (pool, word_pos), answer in zip(word_keys, words, strict=True):
            word = _words(str(answer))[0]
            if word:
                bitmaps[pool.address][word_pos] = word
                tick_keys += [(pool, ((word_pos << 8) + bit) * pool.tick_spacing)
                              for bit in range(256) if word >> bit & 1]
        infos = await chain.batch(
            [_call(p.address, _TICKS + _arg(t), tag) for p, t in tick_keys]
        ) if tick_keys else []
        ticks: dict[str, dict[int, TickInfo]] = {p.address: {} for p in bare}
        for (pool, tick), answer in zip(tick_keys, infos, strict=True):
            info = _words(str(answer))
            ticks[pool.address][tick] = TickInfo(info[0], _signed(info[1]))
        return cls(
            (replace(p, ticks=ticks[p.address], bitmap=bitmaps[p.address]) for p in bare),
            block=number,
        )

    @classmethod
    async def from_factory(
        cls, chain: ChainReader, factory: str, tokens: Iterable[str], block: BlockRef | int,
        fees: Sequence[int] = FEE_TIERS,
    ) -> V3Book:
        """Every pool of the factory among `tokens` (`discover`), loaded (`load`), as the
        keeper's exits (`EXIT_HEADROOM_BPS`)."""
        book = await cls.load(chain, await cls.discover(chain, factory, tokens, block, fees),
                              block)
        book.headroom_bps = EXIT_HEADROOM_BPS
        return book

    async def reload(self, chain: ChainReader, block: BlockRef | int) -> None:
        """Read every pool again as of `block`, in place (after a reorg)."""
        fresh = await V3Book.load(chain, list(self.by_address), block)
        self.by_address, self._by_tokens = fresh.by_address, fresh._by_tokens
        self.block = fresh.block

    # -- logs --------------------------------------------------------------------------

    def subscriptions(self) -> LogFilter:
        """The pools' Initialize, Swap, Mint and Burn logs."""
        return LogFilter(addresses=tuple(sorted(self.by_address)), topics0=POOL_TOPICS)

    def apply(self, events: Iterable[Event]) -> int:
        """Move the pools by their logs, in chain order; returns how many were applied.

        Swap and Initialize set slot0 (and Swap the in-range liquidity) to what the log
        says; Mint and Burn change the ticks and, inside their range, the liquidity, as
        the pool did. Other logs and removed (reorged) logs are ignored."""
        mine = sorted(
            (e for e in events if not e.removed and e.topic0 in POOL_TOPICS
             and e.address.lower() in self.by_address),
            key=lambda e: (e.block_number, e.log_index),
        )
        for event in mine:
            address = event.address.lower()
            self.by_address[address] = _applied(self.by_address[address], event)
            self.block = max(self.block, event.block_number)
        return len(mine)

    # -- quotes ------------------------------------------------------------------------

    def _best(self, token_in: str, token_out: str, amount: int, exact_in: bool) -> _Quote | None:
        """The best fee tier's quote; equal quotes keep the lowest fee. Selling exactly
        `amount`, a tier whose output cannot reach the best one found (`_out_bound`: at the
        pool's price, less its fee) is not quoted; the one with the highest bound first.
        With `headroom_bps`, only the winner's headroom is checked; if it has none, the
        tiers are quoted again, each checked (rare: a size at the very edge of a range)."""
        token_in, token_out = token_in.lower(), token_out.lower()
        if amount <= 0 or token_in == token_out:
            return None
        best = self._best_of(token_in, amount, exact_in, self.pools_for(token_in, token_out),
                             check=False)
        if best is None or not exact_in or not self.headroom_bps or self._roomy(best, amount):
            return best
        return self._best_of(token_in, amount, exact_in, self.pools_for(token_in, token_out),
                             check=True)

    def _roomy(self, quote: _Quote, amount: int) -> bool:
        """The pool could take `headroom_bps` more of the input after this quote's swap."""
        more = amount * self.headroom_bps // 10_000 + 1
        r, pool = quote.result, quote.pool
        if r.liquidity and r.sqrt_price_x96 != r.last_target:
            # The swap stopped short of its last step's target, where the same liquidity
            # holds: if what `more` brings net of the fee (SwapMath's amountRemainingLessFee)
            # stays strictly short of it, that step alone takes all of it.
            room = get_amount0_delta(r.last_target, r.sqrt_price_x96, r.liquidity, True) \
                if quote.zero_for_one \
                else get_amount1_delta(r.sqrt_price_x96, r.last_target, r.liquidity, True)
            if mul_div(more, 1_000_000 - pool.fee, 1_000_000) < room:
                return True
        try:
            extra = quote_exact_input_single(quote.pool.after(quote.result), quote.zero_for_one,
                                             more, must_fill=True)
        except UniswapV3Error:
            return False
        return amount_in_of(extra, quote.zero_for_one) == more

    def _best_of(self, token_in: str, amount: int, exact_in: bool, pools: list[V3Pool],
                 *, check: bool) -> _Quote | None:
        bounds = {p.address: _out_bound(p, p.zero_for_one(token_in), amount)
                  for p in pools} if exact_in and len(pools) > 1 else {}
        visit = sorted(pools, key=lambda p: -bounds[p.address]) if bounds else pools
        quoted: dict[str, _Quote] = {}
        most = -1
        for pool in visit:
            if bounds and bounds[pool.address] < most:
                continue  # cannot match the best output: need not be quoted
            zero_for_one = pool.zero_for_one(token_in)
            try:
                if exact_in:  # a pool that cannot take it all is no exit (PoolDry)
                    result = quote_exact_input_single(pool, zero_for_one, amount, must_fill=True)
                    if amount_in_of(result, zero_for_one) != amount:
                        continue  # the pool ran out of liquidity: it cannot take it all
                    if check and not self._roomy(_Quote(pool, zero_for_one, result), amount):
                        continue
                    most = max(most, amount_out_of(result, zero_for_one))
                else:
                    result = quote_exact_output_single(pool, zero_for_one, amount)
            except UniswapV3Error:
                continue
            quoted[pool.address] = _Quote(pool, zero_for_one, result)
        best: _Quote | None = None
        for pool in pools:  # in fee order, as if each were quoted: ties keep the lowest fee
            quote = quoted.get(pool.address)
            if quote is not None and (best is None or _better(quote, best, exact_in)):
                best = quote
        return best

    def quote(self, token_in: str, token_out: str, amount_in: int) -> SwapLeg | None:
        """Selling exactly `amount_in` on the pair's best fee tier (None: no pool fills it)."""
        best = self._best(token_in, token_out, amount_in, exact_in=True)
        return None if best is None else _leg(best)

    def quote_exact_out(self, token_in: str, token_out: str, amount_out: int) -> SwapLeg | None:
        """Buying exactly `amount_out` for the least input over the pair's fee tiers."""
        best = self._best(token_in, token_out, amount_out, exact_in=False)
        return None if best is None else _leg(best)

    def pools(self, token_a: str, token_b: str) -> tuple[str, ...]:
        """The pair's pools, one per fee tier."""
        return self._by_tokens.get((token_a.lower(), token_b.lower()), ())

    def exit_hop(self, leg: SwapLeg) -> ExitHop:
        """A pool swap for the executor (kind 1)."""
        return ExitHop(kind=1, pool=leg.pair,
                       zero_for_one=self.by_address[leg.pair].zero_for_one(leg.token_in))

    def swap(self, leg: SwapLeg) -> None:
        """Move the leg's pool as the leg's swap would (exact input of `leg.amount_in`)."""
        pool = self.by_address[leg.pair]
        zero_for_one = pool.zero_for_one(leg.token_in)
        self.by_address[leg.pair] = pool.after(
            quote_exact_input_single(pool, zero_for_one, leg.amount_in))

    def mid_price(self, token_in: str, token_out: str) -> Fraction | None:
        """token_out per token_in at the price of the pair's pool with the most in-range
        liquidity (1 for the same token; None without a pool with liquidity)."""
        token_in, token_out = token_in.lower(), token_out.lower()
        if token_in == token_out:
            return Fraction(1)
        live = [p for p in self.pools_for(token_in, token_out) if p.liquidity > 0]
        if not live:
            return None
        pool = max(live, key=lambda p: (p.liquidity, -p.fee))
        price = Fraction(pool.sqrt_price_x96**2, 2**192)  # token1 per token0
        return price if token_in == pool.token0 else 1 / price


def _out_bound(pool: V3Pool, zero_for_one: bool, amount_in: int) -> int:
    """More than selling `amount_in` can return: the input net of the fee at the pool's
    current price (a swap only moves the price against the seller, and SwapMath rounds the
    output down and the input and fee up)."""
    net, scale = amount_in * (1_000_000 - pool.fee), 1_000_000
    square = pool.sqrt_price_x96 * pool.sqrt_price_x96
    if zero_for_one:
        return net * square // (scale << 192) + 1
    return (net << 192) // (scale * square) + 1 if square else 2**256


def _better(a: _Quote, b: _Quote, exact_in: bool) -> bool:
    if exact_in:
        return amount_out_of(a.result, a.zero_for_one) > amount_out_of(b.result, b.zero_for_one)
    return amount_in_of(a.result, a.zero_for_one) < amount_in_of(b.result, b.zero_for_one)


def _leg(quote: _Quote) -> SwapLeg:
    pool, zero_for_one = quote.pool, quote.zero_for_one
    token_in, token_out = (pool.token0, pool.token1) if zero_for_one else (pool.token1, pool.token0)
    return SwapLeg(
        pair=pool.address, token_in=token_in, token_out=token_out,
        amount_in=amount_in_of(quote.result, zero_for_one),
        amount_out=amount_out_of(quote.result, zero_for_one),
        venue=VENUE, fee=pool.fee,
        gas=V3_HOP_GAS + V3_STEP_GAS * max(quote.result.steps - 1, 0)
        + V3_TICK_GAS * quote.result.initialized_crossed,
    )


def _word_range(tick_spacing: int) -> range:
    """Every bitmap word a pool with this spacing can use (TickBitmap.position of the
    compressed MIN_TICK and MAX_TICK)."""
    return range((MIN_TICK // tick_spacing) >> 8, ((MAX_TICK // tick_spacing) >> 8) + 1)


def _applied(pool: V3Pool, event: Event) -> V3Pool:
    """One pool log applied to the pool."""
    data = _words(event.data)
    topic0 = event.topic0
    if topic0 == SWAP_TOPIC:  # amount0, amount1, sqrtPriceX96, liquidity, tick
        return replace(pool, sqrt_price_x96=data[2], liquidity=data[3], tick=_signed(data[4]))
    if topic0 == INITIALIZE_TOPIC:  # sqrtPriceX96, tick
        return replace(pool, sqrt_price_x96=data[0], tick=_signed(data[1]))
    lower, upper = _signed(int(event.topics[2], 16)), _signed(int(event.topics[3], 16))
    if topic0 == MINT_TOPIC:  # sender, amount, amount0, amount1
        return pool.modify_position(lower, upper, data[1])
    return pool.modify_position(lower, upper, -data[0])  # Burn: amount, amount0, amount1

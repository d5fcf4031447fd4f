"""Uniswap V2: exact `getAmountOut` / `getAmountIn` and a book of pair reserves.

The two formulas mirror `UniswapV2Library.getAmountOut` and
`UniswapV2Library.getAmountIn` (v2-periphery) bit for bit, including their
SafeMath reverts, which raise `UniswapV2Error` carrying the revert string.

`PairBook` holds pairs keyed by (lower-case) address with token0, token1 and
reserves. `load` reads every pair's token0/token1/getReserves in one
`chain.batch`; afterwards `apply` keeps the reserves current from the pairs'
`Sync(uint112,uint112)` logs, with no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from math import gcd

from eth_utils.crypto import keccak

from keeper.dex.venue import V2_HOP_GAS, ExitHop
from keeper.errors import FatalError
from keeper.strategy import ChainReader
from keeper.types import BlockRef, Event, LogFilter, SwapLeg

UINT256_MAX = 2**256 - 1
SYNC_TOPIC = "0x" + keccak(text="Sync(uint112,uint112)").hex()

_TOKEN0 = "0x" + keccak(text="token0()")[:4].hex()
_TOKEN1 = "0x" + keccak(text="token1()")[:4].hex()
_GET_RESERVES = "0x" + keccak(text="getReserves()")[:4].hex()
_ALL_PAIRS_LENGTH = "0x" + keccak(text="allPairsLength()")[:4].hex()
_ALL_PAIRS = "0x" + keccak(text="allPairs(uint256)")[:4].hex()


class UniswapV2Error(FatalError):
    """The mirrored contract code would revert; the message is its revert string."""


def _uint(value: int) -> int:
    if value < 0 or value > UINT256_MAX:
        raise UniswapV2Error(f"{value} is not a uint256")
    return value


def _mul(a: int, b: int) -> int:
    """SafeMath.mul (ds-math)."""
    product = a * b
    if product > UINT256_MAX:
        raise UniswapV2Error("ds-math-mul-overflow")
    return product


def _add(a: int, b: int) -> int:
    """SafeMath.add (ds-math)."""
    total = a + b
    if total > UINT256_MAX:
        raise UniswapV2Error("ds-math-add-overflow")
    return total


def _sub(a: int, b: int) -> int:
    """SafeMath.sub (ds-math)."""
    if b > a:
        raise UniswapV2Error("ds-math-sub-underflow")
    return a - b


def _fee_factors(fee_bps: int) -> tuple[int, int]:
    """(997, 1000) for 30 bps: (10000 - fee) / 10000 in lowest terms, as the library writes it."""
    if not 0 <= fee_bps < 10_000:
        raise ValueError(f"fee_bps must be in [0, 10000), got {fee_bps}")
    keep, whole = 10_000 - fee_bps, 10_000
    common = gcd(keep, whole)
    return keep // common, whole // common


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int, fee_bps: int = 30) -> int:
    """Mirrors UniswapV2Library.getAmountOut: the output for exactly `amount_in` of input."""
    keep, whole = _fee_factors(fee_bps)
    if _uint(amount_in) == 0:
        raise UniswapV2Error("UniswapV2Library: INSUFFICIENT_INPUT_AMOUNT")
    if _uint(reserve_in) == 0 or _uint(reserve_out) == 0:
        raise UniswapV2Error("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    amount_in_with_fee = _mul(amount_in, keep)
    numerator = _mul(amount_in_with_fee, reserve_out)
    denominator = _add(_mul(reserve_in, whole), amount_in_with_fee)
    return numerator // denominator


def get_amount_in(amount_out: int, reserve_in: int, reserve_out: int, fee_bps: int = 30) -> int:
    """Mirrors UniswapV2Library.getAmountIn: the input needed to receive `amount_out`."""
    keep, whole = _fee_factors(fee_bps)
    if _uint(amount_out) == 0:
        raise UniswapV2Error("UniswapV2Library: INSUFFICIENT_OUTPUT_AMOUNT")
    if _uint(reserve_in) == 0 or _uint(reserve_out) == 0:
        raise UniswapV2Error("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    numerator = _mul(_mul(reserve_in, amount_out), whole)
    denominator = _mul(_sub(reserve_out, amount_out), keep)
    if denominator == 0:  # amount_out == reserve_out: the EVM reverts on division by zero
        raise UniswapV2Error("division by zero")
    return _add(numerator // denominator, 1)


@dataclass(frozen=True, slots=True)
class Pair:
    """One Uniswap V2 pair: its tokens (sorted, as the factory stores them) and reserves."""

    address: str
    token0: str
    token1: str
    reserve0: int
    reserve1: int

    def reserves(self, token_in: str) -> tuple[int, int]:
        """(reserve_in, reserve_out) for selling `token_in`."""
        if token_in == self.token0:
            return self.reserve0, self.reserve1
        if token_in == self.token1:
            return self.reserve1, self.reserve0
        raise KeyError(f"{token_in} is not a token of pair {self.address}")


def _word(result: str, index: int = 0) -> int:
    raw = result[2:] if result.startswith("0x") else result
    chunk = raw[64 * index : 64 * (index + 1)]
    if len(chunk) != 64:
        raise UniswapV2Error(f"short ABI answer: {result[:80]!r}")
    return int(chunk, 16)


def _address(result: str) -> str:
    return "0x" + f"{_word(result):064x}"[-40:]


class PairBook:
    """Uniswap V2 pairs by lower-case address, with reserves kept current from `Sync` logs.
    A `keeper.dex.venue.Venue`."""

    venue = "uniswap_v2"

    def __init__(self, pairs: Iterable[Pair] = (), *, fee_bps: int = 30, block: int = 0) -> None:
        _fee_factors(fee_bps)
        self.fee_bps = fee_bps
        self.block = block
        self.pairs: dict[str, Pair] = {}
        self._by_tokens: dict[tuple[str, str], str] = {}
        for pair in pairs:
            self.add(pair)

    def add(self, pair: Pair) -> None:
        """Add (or replace) a pair; addresses are stored lower-case."""
        pair = replace(
            pair, address=pair.address.lower(), token0=pair.token0.lower(),
            token1=pair.token1.lower(),
        )
        self.pairs[pair.address] = pair
        self._by_tokens[(pair.token0, pair.token1)] = pair.address
        self._by_tokens[(pair.token1, pair.token0)] = pair.address

    def copy(self) -> PairBook:
        """An independent book with the same pairs (to try swaps on without touching this one)."""
        book = PairBook(fee_bps=self.fee_bps, block=self.block)
        book.pairs = dict(self.pairs)
        book._by_tokens = dict(self._by_tokens)
        return book

    def swap(self, leg: SwapLeg) -> None:
        """Move the pair's reserves as `leg` would (UniswapV2Pair.swap followed by _update)."""
        pair = self.pairs[leg.pair]
        if leg.token_in == pair.token0:
            moved = replace(pair, reserve0=pair.reserve0 + leg.amount_in,
                            reserve1=pair.reserve1 - leg.amount_out)
        else:
            moved = replace(pair, reserve1=pair.reserve1 + leg.amount_in,
                            reserve0=pair.reserve0 - leg.amount_out)
        self.pairs[leg.pair] = moved

    @classmethod
    async def load(
        cls,
        chain: ChainReader,
        pairs_or_factory: str | Iterable[str],
        block: BlockRef | int,
        *,
        fee_bps: int = 30,
    ) -> PairBook:
        """The pairs (addresses, or every pair of a factory address) as of `block`.

        token0, token1 and getReserves of all pairs are read in one `chain.batch`.
        Given a factory, its pair list is read first (allPairsLength, then a batch of allPairs).
        """
        number = block.number if isinstance(block, BlockRef) else block
        tag = hex(number)
        if isinstance(pairs_or_factory, str):
            factory = pairs_or_factory
            count = _word(await chain.eth_call(factory, _ALL_PAIRS_LENGTH, number))
            answers = await chain.batch(
                [("eth_call", [{"to": factory, "data": _ALL_PAIRS + f"{i:064x}"}, tag])
                 for i in range(count)]
            )
            addresses = [_address(str(a)) for a in answers]
        else:
            addresses = [a.lower() for a in pairs_or_factory]
        calls: list[tuple[str, Sequence[object]]] = [
            ("eth_call", [{"to": address, "data": selector}, tag])
            for address in addresses
            for selector in (_TOKEN0, _TOKEN1, _GET_RESERVES)
        ]
        results = [str(r) for r in await chain.batch(calls)] if calls else []
        book = cls(fee_bps=fee_bps, block=number)
        for i, address in enumerate(addresses):
            token0, token1, reserves = results[3 * i : 3 * i + 3]
            book.add(Pair(
                address=address, token0=_address(token0), token1=_address(token1),
                reserve0=_word(reserves, 0), reserve1=_word(reserves, 1),
            ))
        return book

    async def reload(self, chain: ChainReader, block: BlockRef | int) -> None:
        """Read every pair of this book again as of `block`, in place (after a reorg: the
        objects holding this book keep seeing the same one)."""
        fresh = await PairBook.load(chain, list(self.pairs), block, fee_bps=self.fee_bps)
        self.pairs, self._by_tokens, self.block = fresh.pairs, fresh._by_tokens, fresh.block

    def subscriptions(self) -> LogFilter:
        """The pairs' `Sync(uint112,uint112)` logs, which carry the new reserves."""
        return LogFilter(addresses=tuple(sorted(self.pairs)), topics0=(SYNC_TOPIC,))

    def apply(self, events: Iterable[Event]) -> int:
        """Set reserves from `Sync` logs of known pairs (last one by block and log index wins).

        Other logs and removed (reorged) logs are ignored; the number applied is returned.
        """
        syncs = sorted(
            (e for e in events
             if not e.removed and e.topic0 == SYNC_TOPIC and e.address.lower() in self.pairs),
            key=lambda e: (e.block_number, e.log_index),
        )
        for event in syncs:
            address = event.address.lower()
            self.pairs[address] = replace(
                self.pairs[address], reserve0=_word(event.data, 0), reserve1=_word(event.data, 1)
            )
            self.block = max(self.block, event.block_number)
        return len(syncs)

    def pair_for(self, token_a: str, token_b: str) -> Pair | None:
        """The pair of two tokens, if the book has it."""
        address = self._by_tokens.get((token_a.lower(), token_b.lower()))
        return None if address is None else self.pairs[address]

    def quote(self, token_in: str, token_out: str, amount_in: int) -> SwapLeg | None:
        """Selling `amount_in` through the direct pair (None: no pair, no input or no liquidity)."""
        token_in, token_out = token_in.lower(), token_out.lower()
        pair = self.pair_for(token_in, token_out)
        if pair is None or token_in == token_out:
            return None
        reserve_in, reserve_out = pair.reserves(token_in)
        if amount_in <= 0 or reserve_in == 0 or reserve_out == 0:
            return None
        amount_out = get_amount_out(amount_in, reserve_in, reserve_out, self.fee_bps)
        return SwapLeg(
            pair=pair.address, token_in=token_in, token_out=token_out,
            amount_in=amount_in, amount_out=amount_out, gas=V2_HOP_GAS,
        )

    def quote_exact_out(self, token_in: str, token_out: str, amount_out: int) -> SwapLeg | None:
        """Buying exactly `amount_out` through the direct pair (None: no pair, or the pair
        does not hold that much)."""
        token_in, token_out = token_in.lower(), token_out.lower()
        pair = self.pair_for(token_in, token_out)
        if pair is None or token_in == token_out:
            return None
        reserve_in, reserve_out = pair.reserves(token_in)
        if amount_out <= 0 or reserve_in == 0 or amount_out >= reserve_out:
            return None
        amount_in = get_amount_in(amount_out, reserve_in, reserve_out, self.fee_bps)
        return SwapLeg(
            pair=pair.address, token_in=token_in, token_out=token_out,
            amount_in=amount_in, amount_out=amount_out, gas=V2_HOP_GAS,
        )

    def pools(self, token_a: str, token_b: str) -> tuple[str, ...]:
        """The direct pair's address, if there is one."""
        pair = self.pair_for(token_a, token_b)
        return () if pair is None else (pair.address,)

    def exit_hop(self, leg: SwapLeg) -> ExitHop:
        """A pair swap for the executor (kind 0)."""
        pair = self.pairs[leg.pair]
        return ExitHop(kind=0, pool=leg.pair, zero_for_one=leg.token_in == pair.token0)

    def mid_price(self, token_in: str, token_out: str) -> Fraction | None:
        """reserve_out / reserve_in of the direct pair (1 for the same token; None if unknown)."""
        token_in, token_out = token_in.lower(), token_out.lower()
        if token_in == token_out:
            return Fraction(1)
        pair = self.pair_for(token_in, token_out)
        if pair is None:
            return None
        reserve_in, reserve_out = pair.reserves(token_in)
        if reserve_in == 0 or reserve_out == 0:
            return None
        return Fraction(reserve_out, reserve_in)

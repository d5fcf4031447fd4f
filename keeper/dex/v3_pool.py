"""One Uniswap V3 pool's state and its swap loop, mirrored from v3-core 1.0.1.

`V3Pool` holds what a swap reads (slot0's price and tick, the in-range liquidity,
fee, tick spacing, the tick bitmap and each initialized tick's liquidity gross and
net); it is frozen, and each change returns a new pool that shares the tick maps
with the old one unless positions changed, so copying a book of pools is cheap.

- `swap` mirrors UniswapV3Pool.swap (contracts/UniswapV3Pool.sol): the step loop
  over nextInitializedTickWithinOneWord, computeSwapStep, crossing initialized
  ticks with their liquidityNet. Fee growth, oracle observations and protocol fees
  change no amount, so they are left out.
- `modify_position` mirrors the liquidity part of UniswapV3Pool._modifyPosition /
  _updatePosition and Tick.update / Tick.clear (a Mint or Burn log applied).
- `quote_exact_input_single` / `quote_exact_output_single` mirror QuoterV2
  (v3-periphery, contracts/lens/QuoterV2.sol): the swap at the default price limit,
  and its callback's checks.

An exact-input swap at the default price limit (every quote of an exit) resumes the loop
from the last step its input covers in full (`_Walk`): a step that reaches its target takes
the same input, fee and output whatever is left after it (SwapMath.computeSwapStep), so each
pool state remembers, per direction, the loop's state after each such step, and ranking's
many sizes of one exit run only their last step. A pool is immutable, so a changed pool is
a new object with no walk: nothing remembered outlives the state it was computed on.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from keeper.dex.v3_math import (
    INT256_MAX,
    UniswapV3Error,
    add_delta,
    compute_swap_step,
    to_int128,
    to_int256,
)
from keeper.dex.v3_ticks import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    flip_tick,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
    next_initialized_tick_within_one_word,
)


@dataclass(frozen=True, slots=True)
class TickInfo:
    """The part of Tick.Info a swap reads: liquidityGross (is it initialized) and
    liquidityNet (what crossing it left to right adds to the in-range liquidity)."""

    liquidity_gross: int
    liquidity_net: int


@dataclass(frozen=True, slots=True)
class SwapResult:
    """The pool's (amount0, amount1) deltas (positive: paid in) and its state after."""

    amount0: int
    amount1: int
    sqrt_price_x96: int
    # slot0's tick after the swap, or None when the last step ended inside a range: then it
    # is TickMath.getTickAtSqrtRatio of the price, computed only if asked (`tick`; a quote
    # never asks, and that was a sixth of its time).
    known_tick: int | None
    liquidity: int
    initialized_crossed: int  # initialized ticks the loop crossed
    steps: int  # iterations of the swap loop
    # The price the last step swapped towards (the next tick, a word's end, or the limit):
    # short of it, the in-range liquidity holds up to there (headroom without a swap).
    last_target: int = field(default=0, compare=False)

    @property
    def tick(self) -> int:
        """slot0's tick after the swap (UniswapV3Pool.swap's `state.tick`)."""
        if self.known_tick is None:
            return get_tick_at_sqrt_ratio(self.sqrt_price_x96)
        return self.known_tick


@dataclass(frozen=True, slots=True)
class V3Pool:
    """A Uniswap V3 pool as its swaps see it (addresses lower-case)."""

    address: str
    token0: str
    token1: str
    fee: int  # pips: 500 is 0.05 %
    tick_spacing: int
    sqrt_price_x96: int
    tick: int
    liquidity: int
    ticks: Mapping[int, TickInfo] = field(default_factory=dict)
    bitmap: Mapping[int, int] = field(default_factory=dict)  # wordPos -> word, none zero
    # Per direction, the exact-input loop walked so far (`_Walk`; None: quoted once); not
    # copied by `replace`.
    _walks: dict[bool, _Walk | None] = field(default_factory=dict, init=False, repr=False,
                                      compare=False)

    def zero_for_one(self, token_in: str) -> bool:
        """Whether selling `token_in` is a token0 -> token1 swap."""
        if token_in == self.token0:
            return True
        if token_in == self.token1:
            return False
        raise KeyError(f"{token_in} is not a token of pool {self.address}")

    def swap(
        self, zero_for_one: bool, amount_specified: int, sqrt_price_limit_x96: int,
        *, must_fill: bool = False,
    ) -> SwapResult:
        """UniswapV3Pool.swap's amounts and end state. `amount_specified` > 0: exact input;
        < 0: exact output. Reverts ('AS', 'SPL', a math revert) raise UniswapV3Error.

        `must_fill`: the caller has no use for a swap that cannot take (or return) all of
        `amount_specified`: once no liquidity is in range and no initialized tick is left
        on the way, every further step of the loop would move only the price (amounts 0),
        so instead of walking every bitmap word to the limit it raises PoolDry at once."""
        if amount_specified == 0:
            raise UniswapV3Error("AS")
        start = self.sqrt_price_x96
        if not (
            MIN_SQRT_RATIO < sqrt_price_limit_x96 < start if zero_for_one
            else start < sqrt_price_limit_x96 < MAX_SQRT_RATIO
        ):
            raise UniswapV3Error("SPL")
        exact_input = amount_specified > 0
        walk = self._walk(zero_for_one) if exact_input \
            and sqrt_price_limit_x96 == default_limit(zero_for_one) else None
        if walk is not None:
            last = walk.last
            if last is not None and last[0] == amount_specified:
                return last[1]  # quoted again: V3Book.swap moving the pool by a quoted leg
            steps, (sqrt_price, tick, liquidity, used, out, crossed, target) = \
                walk.covered(self, amount_specified)
            remaining, calculated = amount_specified - used, -out
        else:
            remaining, calculated = amount_specified, 0
            sqrt_price, tick, liquidity = start, self.tick, self.liquidity
            crossed = steps = target = 0
        bitmap, spacing, fee = self.bitmap, self.tick_spacing, self.fee
        end_tick: int | None = tick  # None: getTickAtSqrtRatio, if the loop goes on or asked
        while remaining != 0 and sqrt_price != sqrt_price_limit_x96:
            tick = get_tick_at_sqrt_ratio(sqrt_price) if end_tick is None else end_tick
            if must_fill and liquidity == 0 and _dry(self.ticks, tick, zero_for_one):
                raise PoolDry("the pool cannot fill the swap")
            steps += 1
            step_start = sqrt_price
            tick_next, initialized = next_initialized_tick_within_one_word(
                bitmap, tick, spacing, zero_for_one)
            tick_next = min(max(tick_next, MIN_TICK), MAX_TICK)
            sqrt_next = get_sqrt_ratio_at_tick(tick_next)
            beyond = sqrt_next < sqrt_price_limit_x96 if zero_for_one \
                else sqrt_next > sqrt_price_limit_x96
            target = sqrt_price_limit_x96 if beyond else sqrt_next
            sqrt_price, amount_in, amount_out, fee_amount = compute_swap_step(
                sqrt_price, target, liquidity, remaining, fee)
            if exact_input:
                remaining -= to_int256(amount_in + fee_amount)
                calculated -= to_int256(amount_out)
            else:
                remaining += to_int256(amount_out)
                calculated += to_int256(amount_in + fee_amount)
            if sqrt_price == sqrt_next:
                if initialized:
                    net = self.ticks[tick_next].liquidity_net  # Tick.cross
                    liquidity = add_delta(liquidity, -net if zero_for_one else net)
                    crossed += 1
                end_tick = tick_next - 1 if zero_for_one else tick_next
            elif sqrt_price != step_start:
                end_tick = None
        used = amount_specified - remaining
        amount0, amount1 = (used, calculated) if zero_for_one == exact_input \
            else (calculated, used)
        result = SwapResult(amount0, amount1, sqrt_price, end_tick, liquidity, crossed, steps,
                            target)
        if walk is not None and remaining == 0:
            # Filled: must_fill could not have stopped it (that needs a dry pool on the way).
            walk.last = (amount_specified, result)
        return result

    def _walk(self, zero_for_one: bool) -> _Walk | None:
        """The walk of this direction from the second quote on (a pool object quoted once,
        as a book moved by one exit is for the sale after it, would only pay for it)."""
        walks = self._walks
        walk = walks.get(zero_for_one)
        if walk is None:
            if zero_for_one in walks:  # two threads may both make one: each is exact
                walk = walks[zero_for_one] = _Walk(self, zero_for_one)
            else:
                walks[zero_for_one] = None
        return walk

    def after(self, result: SwapResult) -> V3Pool:
        """This pool once a swap with `result` is mined (slot0 and liquidity move)."""
        # The constructor, not dataclasses.replace: ranking moves pools thousands of times.
        return V3Pool(self.address, self.token0, self.token1, self.fee, self.tick_spacing,
                      result.sqrt_price_x96, result.tick, result.liquidity, self.ticks,
                      self.bitmap)

    def modify_position(self, tick_lower: int, tick_upper: int, liquidity_delta: int) -> V3Pool:
        """The pool after a position's liquidity changes by `liquidity_delta` (a Mint's
        amount, or minus a Burn's): Tick.update on both ends (flipping the bitmap when a
        tick becomes initialized or empty, Tick.clear then) and, when the current tick is
        inside the range, the in-range liquidity (UniswapV3Pool._modifyPosition)."""
        if liquidity_delta == 0:  # a Burn of 0 only pokes the position's fees
            return self
        ticks = dict(self.ticks)
        bitmap = dict(self.bitmap)
        for tick, upper in ((tick_lower, False), (tick_upper, True)):
            before = ticks.get(tick, TickInfo(0, 0))
            gross = add_delta(before.liquidity_gross, liquidity_delta)
            net = to_int128(before.liquidity_net - liquidity_delta if upper
                            else before.liquidity_net + liquidity_delta)
            if (gross == 0) != (before.liquidity_gross == 0):
                flip_tick(bitmap, tick, self.tick_spacing)
            if gross == 0 and liquidity_delta < 0:
                ticks.pop(tick, None)
            else:
                ticks[tick] = TickInfo(gross, net)
        liquidity = self.liquidity
        if tick_lower <= self.tick < tick_upper:
            liquidity = add_delta(liquidity, liquidity_delta)
        return replace(self, ticks=ticks, bitmap=bitmap, liquidity=liquidity)


# The swap loop's state after a step: (sqrtPriceX96, tick, liquidity, input taken, output,
# initialized ticks crossed, the step's target price).
_State = tuple[int, int, int, int, int, int, int]


class _Walk:
    """One pool state's exact-input swap loop in one direction at the default price limit,
    as far as quotes have needed it: the loop's state after each step that reached its
    target (UniswapV3Pool.swap's iterations, run with an input no step can exhaust).

    An input covers step k when the loop starts it with something left (`used_k` <
    amount) and what is left reaches the target: SwapMath.computeSwapStep's
    `amountRemainingLessFee >= amountIn`, i.e. at least amountIn + its fee
    (mulDivRoundingUp(amountIn, fee, 1e6 - fee)), which the step then takes, whatever
    more there is. So `reach[k]` = used_k + max(taken_k, 1) is the least input covering
    step k; it never decreases, and `covered` is a bisection. A step the walk cannot take
    (a math revert, the pool dry, the limit) ends it: the caller's loop resumes there and
    meets the same end itself."""

    __slots__ = ("done", "last", "lock", "reach", "states", "zero_for_one")

    def __init__(self, pool: V3Pool, zero_for_one: bool) -> None:
        self.zero_for_one = zero_for_one
        self.states: list[_State] = [
            (pool.sqrt_price_x96, pool.tick, pool.liquidity, 0, 0, 0, 0)]
        self.reach: list[int] = []
        self.done = False
        self.lock = threading.Lock()  # ranking may quote one pool from two threads
        # The last swap that filled, by its input (replaced whole: no lock needed).
        self.last: tuple[int, SwapResult] | None = None

    def __getstate__(self) -> tuple[bool, list[_State], list[int], bool]:
        return self.zero_for_one, self.states, self.reach, self.done  # a lock does not pickle

    def __setstate__(self, state: tuple[bool, list[_State], list[int], bool]) -> None:
        self.zero_for_one, self.states, self.reach, self.done = state
        self.lock, self.last = threading.Lock(), None

    def covered(self, pool: V3Pool, amount: int) -> tuple[int, _State]:
        """(steps, the loop's state after them): every step `amount` covers in full."""
        with self.lock:
            while not self.done and (not self.reach or self.reach[-1] <= amount):
                self._extend(pool)
            steps = bisect_right(self.reach, amount)
            return steps, self.states[steps]

    def _extend(self, pool: V3Pool) -> None:
        """One more iteration of UniswapV3Pool.swap's loop, with an unbounded input."""
        zero_for_one, limit = self.zero_for_one, default_limit(self.zero_for_one)
        sqrt_price, tick, liquidity, used, out, crossed, _ = self.states[-1]
        if sqrt_price == limit or (liquidity == 0 and _dry(pool.ticks, tick, zero_for_one)):
            self.done = True
            return
        try:
            tick_next, initialized = next_initialized_tick_within_one_word(
                pool.bitmap, tick, pool.tick_spacing, zero_for_one)
            tick_next = min(max(tick_next, MIN_TICK), MAX_TICK)
            sqrt_next = get_sqrt_ratio_at_tick(tick_next)
            beyond = sqrt_next < limit if zero_for_one else sqrt_next > limit
            target = limit if beyond else sqrt_next
            price, amount_in, amount_out, fee_amount = compute_swap_step(
                sqrt_price, target, liquidity, INT256_MAX, pool.fee)
            taken = amount_in + fee_amount
            if price != target or used + taken > INT256_MAX:
                self.done = True  # no int256 input covers this step
                return
            if price == sqrt_next:
                if initialized:
                    net = pool.ticks[tick_next].liquidity_net
                    liquidity = add_delta(liquidity, -net if zero_for_one else net)
                    crossed += 1
                tick = tick_next - 1 if zero_for_one else tick_next
            elif price != sqrt_price:
                tick = get_tick_at_sqrt_ratio(price)
        except UniswapV3Error:
            self.done = True  # the caller's loop reaches this step and reverts there
            return
        self.reach.append(used + max(taken, 1))
        self.states.append((price, tick, liquidity, used + taken, out + amount_out, crossed,
                            target))


class PoolDry(UniswapV3Error):
    """A `must_fill` swap the pool cannot fill: no liquidity left on its way."""


def _dry(ticks: Mapping[int, TickInfo], tick: int, zero_for_one: bool) -> bool:
    """No initialized tick the swap could still cross (at or below `tick` going down,
    above it going up: nextInitializedTickWithinOneWord's lte rule)."""
    if zero_for_one:
        return all(t > tick for t in ticks)
    return all(t <= tick for t in ticks)


def default_limit(zero_for_one: bool) -> int:
    """QuoterV2's price limit when none is given: MIN_SQRT_RATIO + 1 or MAX_SQRT_RATIO - 1."""
    return MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1


def quote_exact_input_single(
    pool: V3Pool, zero_for_one: bool, amount_in: int, *, must_fill: bool = False
) -> SwapResult:
    """QuoterV2.quoteExactInputSingle with no price limit: the swap of exactly `amount_in`
    (or less, when the pool runs out of liquidity first: the result then says how much was
    taken; with `must_fill`, PoolDry instead). Raises UniswapV3Error where the quoter
    reverts, including its callback's check that something moved (a swap entirely within a
    0-liquidity region)."""
    result = pool.swap(zero_for_one, to_int256(amount_in), default_limit(zero_for_one),
                       must_fill=must_fill)
    _check_moved(result)
    return result


def quote_exact_output_single(pool: V3Pool, zero_for_one: bool, amount_out: int) -> SwapResult:
    """QuoterV2.quoteExactOutputSingle with no price limit: the swap that returns exactly
    `amount_out`; the quoter reverts when the pool cannot return all of it."""
    try:  # a swap that cannot return all of it is refused: stop as soon as that is sure
        result = pool.swap(zero_for_one, -to_int256(amount_out), default_limit(zero_for_one),
                           must_fill=True)
    except PoolDry:
        raise UniswapV3Error("QuoterV2: output not filled") from None
    _check_moved(result)
    received = -(result.amount1 if zero_for_one else result.amount0)
    if received != amount_out:  # `require(amountReceived == amountOutCached)`
        raise UniswapV3Error("QuoterV2: output not filled")
    return result


def _check_moved(result: SwapResult) -> None:
    """QuoterV2.uniswapV3SwapCallback's `require(amount0Delta > 0 || amount1Delta > 0)`."""
    if not (result.amount0 > 0 or result.amount1 > 0):
        raise UniswapV3Error("QuoterV2: swap within a 0-liquidity region")


def amount_in_of(result: SwapResult, zero_for_one: bool) -> int:
    """What the swapper pays."""
    return result.amount0 if zero_for_one else result.amount1


def amount_out_of(result: SwapResult, zero_for_one: bool) -> int:
    """What the swapper receives."""
    return -(result.amount1 if zero_for_one else result.amount0)

"""Uniswap V3's tick math and tick bitmap, mirrored from v3-core 1.0.1 in integers only.

Each function names the Solidity function it mirrors (contracts/libraries/<File>.sol).
Solidity 0.7's `>>` on a signed integer is arithmetic (rounds towards negative
infinity), as Python's is, and `uint8(tick % 256)` of a negative tick is the two's
complement residue, which is Python's `tick % 256`; the mirrors rely on both.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from keeper.dex.v3_math import UINT256_MAX, UniswapV3Error

MIN_TICK = -887272  # TickMath.MIN_TICK
MAX_TICK = -MIN_TICK  # TickMath.MAX_TICK
MIN_SQRT_RATIO = 4295128739  # TickMath.MIN_SQRT_RATIO
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342  # TickMath.MAX_SQRT_RATIO

# TickMath.getSqrtRatioAtTick's factors: 2**128 / sqrt(1.0001)**(2**i), for bit i of |tick|.
_RATIO_FACTORS = (
    0xfff97272373d413259a46990580e213a, 0xfff2e50f5f656932ef12357cf3c7fdcc,
    0xffe5caca7e10e4e61c3624eaa0941cd0, 0xffcb9843d60f6159c9db58835c926644,
    0xff973b41fa98c081472e6896dfb254c0, 0xff2ea16466c96a3843ec78b326b52861,
    0xfe5dee046a99a2a811c461f1969c3053, 0xfcbe86c7900a88aedcffc83b479aa3a4,
    0xf987a7253ac413176f2b074cf7815e54, 0xf3392b0822b70005940c7a398e4b70f3,
    0xe7159475a2c29b7443b29c7fa6e889d9, 0xd097f3bdfd2022b8845ad8f792aa5825,
    0xa9f746462d870fdf8a65dc1f90e061e5, 0x70d869a156d2a1b890bb3df62baf32f7,
    0x31be135f97d08fd981231505542fcfa6, 0x9aa508b5b7a84e1c677de54f3e99bc9,
    0x5d6af8dedb81196699c329225ee604, 0x2216e584f5fa1ea926041bedfe98,
    0x48a170391f7dc42444e8fa2,
)


def most_significant_bit(x: int) -> int:
    """BitMath.mostSignificantBit: the index of the highest set bit (x > 0)."""
    if x <= 0:
        raise UniswapV3Error("BitMath.mostSignificantBit")
    return x.bit_length() - 1


def least_significant_bit(x: int) -> int:
    """BitMath.leastSignificantBit: the index of the lowest set bit (x > 0)."""
    if x <= 0:
        raise UniswapV3Error("BitMath.leastSignificantBit")
    return (x & -x).bit_length() - 1


@lru_cache(maxsize=1 << 16)
def get_sqrt_ratio_at_tick(tick: int) -> int:
    """TickMath.getSqrtRatioAtTick: sqrt(1.0001**tick) * 2**96, rounded up (reverts 'T').
    Memoized: a pure function of the tick, and the swap loop asks for the same word
    boundaries and initialized ticks again and again."""
    abs_tick = -tick if tick < 0 else tick
    if abs_tick > MAX_TICK:
        raise UniswapV3Error("T")
    ratio = 0xfffcb933bd6fad37aa2d162d1a594001 if abs_tick & 0x1 else 1 << 128
    for bit, factor in enumerate(_RATIO_FACTORS, start=1):
        if abs_tick & (1 << bit):
            ratio = (ratio * factor) >> 128
    if tick > 0:
        ratio = UINT256_MAX // ratio
    return (ratio >> 32) + (0 if ratio % (1 << 32) == 0 else 1)


def get_tick_at_sqrt_ratio(sqrt_price_x96: int) -> int:
    """TickMath.getTickAtSqrtRatio: the greatest tick whose ratio is <= the price
    (reverts 'R' outside [MIN_SQRT_RATIO, MAX_SQRT_RATIO)). The log2 is computed to the
    same 14 fractional bits as the contract, so the candidate ticks are the contract's."""
    if not MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO:
        raise UniswapV3Error("R")
    ratio = sqrt_price_x96 << 32
    msb = ratio.bit_length() - 1  # the assembly's binary search, in one step
    r = ratio >> (msb - 127) if msb >= 128 else ratio << (127 - msb)
    log_2 = (msb - 128) << 64
    for shift in range(63, 49, -1):
        r = (r * r) >> 127
        f = r >> 128
        log_2 |= f << shift
        r >>= f
    log_sqrt10001 = log_2 * 255738958999603826347141  # 128.128 number
    tick_low = (log_sqrt10001 - 3402992956809132418596140100660247210) >> 128
    tick_hi = (log_sqrt10001 + 291339464771989622907027621153398088495) >> 128
    if tick_low == tick_hi:
        return tick_low
    return tick_hi if get_sqrt_ratio_at_tick(tick_hi) <= sqrt_price_x96 else tick_low


def position(tick: int) -> tuple[int, int]:
    """TickBitmap.position: (wordPos, bitPos) of a compressed tick."""
    return tick >> 8, tick % 256


def flip_tick(bitmap: dict[int, int], tick: int, tick_spacing: int) -> None:
    """TickBitmap.flipTick, in place on a {wordPos: word} mapping (zero words dropped)."""
    if tick % tick_spacing != 0:
        raise UniswapV3Error("TickBitmap.flipTick: tick not spaced")
    word_pos, bit_pos = position(tick // tick_spacing)
    word = bitmap.get(word_pos, 0) ^ (1 << bit_pos)
    if word:
        bitmap[word_pos] = word
    else:
        bitmap.pop(word_pos, None)


def next_initialized_tick_within_one_word(
    bitmap: Mapping[int, int], tick: int, tick_spacing: int, lte: bool
) -> tuple[int, bool]:
    """TickBitmap.nextInitializedTickWithinOneWord: (next, initialized), searching at most
    one 256-bit word to the left (lte) or right of `tick`. The swap loop steps at every
    word boundary, and each step is rounded on its own, so this must be the contract's."""
    compressed = tick // tick_spacing  # `tick / tickSpacing`, then `compressed--` below zero
    if lte:
        word_pos, bit_pos = position(compressed)
        mask = (1 << bit_pos) - 1 + (1 << bit_pos)
        masked = bitmap.get(word_pos, 0) & mask
        if masked:
            return (compressed - (bit_pos - most_significant_bit(masked))) * tick_spacing, True
        return (compressed - bit_pos) * tick_spacing, False
    word_pos, bit_pos = position(compressed + 1)
    mask = ~((1 << bit_pos) - 1) & UINT256_MAX
    masked = bitmap.get(word_pos, 0) & mask
    if masked:
        return (compressed + 1 + (least_significant_bit(masked) - bit_pos)) * tick_spacing, True
    return (compressed + 1 + (255 - bit_pos)) * tick_spacing, False

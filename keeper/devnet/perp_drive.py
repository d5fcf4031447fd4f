"""Moving a Perp v2 market on the devnet: the index, then the vAMM, then time.

Perp's mark price is the median of the pool's 15-second TWAP, its 30-minute TWAP and the index
plus a 15-minute premium (AccountBalance._getMarkPrice), so a feed move alone does not make
anyone liquidatable: the pool must trade to the new price and time must pass. `move_market`
does the three in order: it posts the index on the devnet feed (the same PriceFeed that
`keeper devnet price` moves), trades the pool to that price from the profile's whale account
in steps of at most `TICK_STEP` ticks (Exchange's `maxTickCrossedWithinBlock`, counted from
the tick it last recorded, which it renews at most every 15 s: the steps are that far apart),
and mines one block `settle_seconds` later, so the mark follows in that one block.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from eth_typing import ChecksumAddress
from web3 import Web3

from keeper.devnet.deployer import Deployer, rpc
from keeper.devnet.perp import (
    MAX_TICK_CROSSED_WITHIN_BLOCK,
    PerpContracts,
    PerpInfo,
    sqrt_price_x96,
)
from keeper.devnet.tokens import post_price

TICK_STEP = MAX_TICK_CROSSED_WITHIN_BLOCK - 100  # a margin below the per-block limit
SETTLE_SECONDS = 16  # past the mark's 15-second market TWAP
PRICE_LIMIT_INTERVAL = 15  # Exchange._PRICE_LIMIT_INTERVAL: how often its reference tick renews
MAX_UINT = 2**256 - 1
# Half again what the pool's liquidity at the current price needs to reach the limit: the
# sqrtPriceLimit stops the swap there (a range edge on the way may leave it short: the loop
# trades again).
AMOUNT_MARGIN = 3
TICK_BASE = 1.0001
BlockHook = Callable[[int], None]


@dataclass(frozen=True)
class Move:
    """What `move_market` mined: the feed's block, the trades' blocks, the settling block."""

    feed_block: int
    trade_blocks: tuple[int, ...]
    settle_block: int


def _tick_of(sqrt_x96: int) -> float:
    return math.log((sqrt_x96 / 2**96) ** 2, TICK_BASE)


def _sqrt_at_tick(tick: float) -> int:
    return int(math.sqrt(TICK_BASE**tick) * 2**96)


def _amount_in(liquidity: int, now: int, limit: int) -> int:
    """Base (price down) or quote (up) in to move the price from `now` to `limit` at constant
    liquidity (Uniswap's SqrtPriceMath amount deltas), with a margin."""
    if limit < now:
        need = liquidity * 2**96 // limit - liquidity * 2**96 // now
    else:
        need = liquidity * (limit - now) // 2**96
    return need * AMOUNT_MARGIN // 2 + 1


def next_trade(now: int, liquidity: int, target: int) -> tuple[bool, int, int] | None:
    """The next trade `trade_to` makes from the pool's sqrt price `now` (and its liquidity)
    toward `target`: (base to quote, amount in, sqrt price limit); None once within a tick.
    For a replay that sends and mines the trades itself."""
    if abs(_tick_of(now) - _tick_of(target)) < 1:
        return None
    step = max(min(_tick_of(target) - _tick_of(now), TICK_STEP), -TICK_STEP)
    limit = target if abs(step) < TICK_STEP else _sqrt_at_tick(_tick_of(now) + step)
    return limit < now, _amount_in(liquidity, now, limit), limit


def trade_to(
    deployer: Deployer, contracts: PerpContracts, trader: ChecksumAddress, symbol: str,
    usd: Decimal, *, each_block: BlockHook | None = None,
) -> list[int]:
    """Trade `symbol`'s pool to `usd` as `trader`, one block per `TICK_STEP` ticks, 15 s
    apart; the blocks mined (each handed to `each_block` as it is mined)."""
    pool = contracts.pools[symbol]
    base = contracts.bases[symbol].address
    target = sqrt_price_x96(usd)
    blocks: list[int] = []
    while True:
        now = int(pool.functions.slot0().call()[0])
        if abs(_tick_of(now) - _tick_of(target)) < 1:
            return blocks
        if blocks:  # the next step is measured from a renewed reference tick
            rpc(deployer.w3, "evm_increaseTime", PRICE_LIMIT_INTERVAL)
        step = max(min(_tick_of(target) - _tick_of(now), TICK_STEP), -TICK_STEP)
        limit = target if abs(step) < TICK_STEP else _sqrt_at_tick(_tick_of(now) + step)
        down = limit < now  # selling base pushes the price down
        params = (base, down, True, _amount_in(int(pool.functions.liquidity().call()), now, limit),
                  0, MAX_UINT, limit, b"\0" * 32)
        receipt = deployer.send(contracts.clearing_house.functions.openPosition(params),
                                sender=trader)
        blocks.append(int(receipt["blockNumber"]))
        if each_block is not None:
            each_block(blocks[-1])


def move_market(
    deployer: Deployer, contracts: PerpContracts, info: PerpInfo, symbol: str, usd: Decimal,
    *, settle_seconds: int = SETTLE_SECONDS, each_block: BlockHook | None = None,
) -> Move:
    """Post `usd` as `symbol`'s index, trade the pool there, let `settle_seconds` pass.
    `each_block` is called with each block mined, before the next (a test lets the keeper
    react to every block there)."""
    w3 = deployer.w3
    market = info.markets[symbol]
    feed = int(post_price(w3, market.feed, usd, deployer.sender)["blockNumber"])
    if each_block is not None:
        each_block(feed)
    whale = Web3.to_checksum_address(info.whale)
    rpc(w3, "anvil_impersonateAccount", whale)  # impersonation is not in a dumped state
    trades = trade_to(deployer, contracts, whale, symbol, usd, each_block=each_block)
    rpc(w3, "evm_increaseTime", settle_seconds)
    rpc(w3, "evm_mine")
    settled = int(w3.eth.block_number)
    if each_block is not None:
        each_block(settled)
    return Move(feed, tuple(trades), settled)

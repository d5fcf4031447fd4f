"""Drive the devnet's feeds along a historical crash, one step per block.

The bundled path is ETH/USD on 2021-05-19. WETH follows it; WBTC follows it
with a beta below one (on that day BTC fell about 30% to ETH's 42%); the
stablecoins stay at $1. Each step also sets the next block's base fee from the
day's historical gas price, so gas costs in the demo are those of the crash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from web3 import Web3

from keeper.devnet.deployer import rpc
from keeper.devnet.info import DevnetInfo
from keeper.devnet.maker_seed import follow_price
from keeper.devnet.price_path import PricePoint
from keeper.devnet.tokens import post_price

BETAS: Mapping[str, Decimal] = {"WETH": Decimal(1), "WBTC": Decimal("0.7")}


@dataclass(frozen=True)
class CrashStep:
    index: int
    time: str
    prices: Mapping[str, Decimal]
    gas_gwei: Decimal | None


def crash_steps(
    points: Sequence[PricePoint],
    start_prices: Mapping[str, Decimal],
    betas: Mapping[str, Decimal] = BETAS,
) -> list[CrashStep]:
    """The path as per-symbol USD prices: each symbol moves by beta x the path's relative move."""
    base = points[0].price
    steps = []
    for index, point in enumerate(points):
        move = point.price / base - 1
        prices = {
            symbol: (start * (1 + betas[symbol] * move)).quantize(Decimal("0.01"))
            for symbol, start in start_prices.items()
            if symbol in betas
        }
        steps.append(CrashStep(index, point.time, prices, point.gas_gwei))
    return steps


def apply_step(w3: Web3, info: DevnetInfo, step: CrashStep) -> int:
    """Post the step's prices on the feeds (AnswerUpdated each); returns the last block number.

    The historical base fee is set on the first price-post block; the blocks
    after it (where liquidations reacting to the move land) follow EIP-1559 from there.
    """
    if step.gas_gwei is not None:
        base_fee = int(step.gas_gwei * 10**9)
        rpc(w3, "anvil_setNextBlockBaseFeePerGas", hex(base_fee))
    block = 0
    for symbol, usd in step.prices.items():
        receipt = post_price(w3, info.feeds[symbol], usd, info.accounts.deployer)
        block = receipt["blockNumber"]
        if info.maker is not None and symbol == info.maker.price_symbol:
            block = follow_price(w3, info.maker, usd)  # Maker's pip + Spotter.poke
    return block

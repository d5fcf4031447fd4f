"""What the Perp logs cannot tell, read once per block in one batch of `eth_call`s.

- per market, the inputs of the mark price rule: Exchange.getSqrtMarketTwapX96 over 15 s,
  the market-TWAP interval and the premium interval, and BaseToken.getIndexPrice now and over
  the premium interval (the TWAPs come from pool observations and the price feed's cached
  TWAP, which move with time as well as with logs); math.mark_price combines them;
- per account with a market, Exchange.getAllPendingFundingPayment (funding accrues by the
  second);
- per market with open orders, the vAMM pool's price (Exchange.getSqrtMarketTwapX96 over 0 s:
  UniswapV3Broker.getSqrtMarketTwapX96From answers an interval under 10 s with slot0's
  sqrtPriceX96, the price OrderBook values orders at; the orders' liquidity and debts are
  kept from the logs, strategies/perp_v2/orders.py), and per open order its pending fee
  (OrderBook.getPendingFee: it grows with the OrderBook's own fee accumulators, which every
  swap moves);
- the insurance fund's capacity (InsuranceFund.getInsuranceFundCapacity), for CH_IIC.

And, once at sync, the addresses and parameters (`Setup`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak

from keeper.errors import Reverted
from keeper.strategy import ChainReader
from strategies.perp_v2.math import MarkInputs

log = structlog.get_logger(__name__)

MARKET_PRICE_TWAP = 15  # AccountBalance._getMarkPrice's "market price" interval


def selector(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()[:8]


def calldata(signature: str, types: Sequence[str] = (), args: Sequence[Any] = ()) -> str:
    return selector(signature) + encode(list(types), list(args)).hex()


def _call(to: str, data: str, block: int, time: int | None = None) -> tuple[str, list[Any]]:
    """An eth_call at `block`; with `time`, as if that block were stamped `time` (the
    block-overrides parameter, which anvil and geth take)."""
    params: list[Any] = [{"to": to, "data": data}, hex(block)]
    if time is not None:
        params += [{}, {"time": hex(time)}]
    return ("eth_call", params)


def _words(answer: Any, types: Sequence[str]) -> tuple[Any, ...]:
    return tuple(decode(list(types), bytes.fromhex(str(answer).removeprefix("0x"))))


@dataclass(frozen=True)
class Setup:
    """The ClearingHouse's contracts and the parameters the math needs (ratios in pips)."""

    clearing_house: str
    config: str
    vault: str
    account_balance: str
    exchange: str
    order_book: str
    insurance_fund: str
    market_registry: str
    settlement_token: str
    decimals: int
    mm_ratio: int
    im_ratio: int
    penalty_ratio: int
    market_twap_interval: int
    premium_interval: int


async def read_setup(
    chain: ChainReader, clearing_house: str, market_registry: str, block: int
) -> Setup:
    """The addresses behind `clearing_house` (the MarketRegistry has no getter there: it is
    configured), and its config's ratios, at `block`."""
    getters = ("getClearingHouseConfig()", "getVault()", "getAccountBalance()",
               "getExchange()", "getOrderBook()", "getInsuranceFund()")
    answers = await chain.batch([_call(clearing_house, selector(g), block) for g in getters])
    config, vault, balance, exchange, book, fund = (
        "0x" + str(a)[-40:].lower() for a in answers)
    second = await chain.batch([
        _call(vault, selector("getSettlementToken()"), block),
        _call(vault, selector("decimals()"), block),
        _call(config, selector("getMmRatio()"), block),
        _call(config, selector("getImRatio()"), block),
        _call(config, selector("getLiquidationPenaltyRatio()"), block),
        _call(config, selector("getMarkPriceConfig()"), block),
    ])
    token, decimals, mm, im, penalty, mark = second
    twap, premium = _words(mark, ["uint32", "uint32"])
    return Setup(
        clearing_house=clearing_house.lower(), config=config, vault=vault,
        account_balance=balance, exchange=exchange, order_book=book, insurance_fund=fund,
        market_registry=market_registry.lower(),
        settlement_token="0x" + str(token)[-40:].lower(), decimals=int(str(decimals), 16),
        mm_ratio=int(str(mm), 16), im_ratio=int(str(im), 16),
        penalty_ratio=int(str(penalty), 16), market_twap_interval=int(twap),
        premium_interval=int(premium),
    )


async def read_fee_ratios(
    chain: ChainReader, setup: Setup, bases: Sequence[str], block: int
) -> dict[str, int]:
    """MarketRegistry.getFeeRatio of each market (the exchange fee a close pays)."""
    answers = await chain.batch([
        _call(setup.market_registry, calldata("getFeeRatio(address)", ["address"], [b]), block)
        for b in bases])
    return {b: int(str(a), 16) for b, a in zip(bases, answers, strict=True)}


@dataclass(frozen=True)
class BlockReads:
    """One block's reads."""

    block: int
    marks: Mapping[str, MarkInputs]
    ahead: Mapping[str, MarkInputs]  # the same at the next block's time (empty: not read)
    funding: Mapping[str, int]  # account -> pending funding payment (X10_18)
    sqrt_prices: Mapping[str, int]  # base -> its pool's sqrtPriceX96 (markets with orders)
    pending_fees: Mapping[str, Mapping[tuple[str, int, int], int]]  # maker -> order -> fee
    fund_capacity: int  # settlement-token units


def _mark_calls(
    setup: Setup, bases: Sequence[str], block: int, time: int | None = None
) -> list[tuple[str, list[Any]]]:
    calls: list[tuple[str, list[Any]]] = []
    ex, twap = setup.exchange, "getSqrtMarketTwapX96(address,uint32)"
    for base in bases:
        for interval in (MARKET_PRICE_TWAP, setup.market_twap_interval, setup.premium_interval):
            calls.append(_call(ex, calldata(twap, ["address", "uint32"], [base, interval]),
                               block, time))
        for interval in (0, setup.premium_interval):
            calls.append(_call(base, calldata("getIndexPrice(uint256)", ["uint256"], [interval]),
                               block, time))
    return calls


async def read_block(
    chain: ChainReader, setup: Setup, *, bases: Sequence[str], accounts: Sequence[str],
    orders: Mapping[str, Sequence[tuple[str, int, int]]], block: int,
    ahead_time: int | None = None,
) -> BlockReads:
    """One batch: the mark inputs of `bases` (and, with `ahead_time`, again as if the block
    were stamped then: the TWAPs slide with time), the pending funding of `accounts`, the
    pool price of each market with an order in `orders` (maker -> its orders' (base, lower,
    upper)), each order's pending fee and the insurance fund's capacity."""
    calls = _mark_calls(setup, bases, block)
    if ahead_time is not None:
        calls += _mark_calls(setup, bases, block, ahead_time)
    funding = "getAllPendingFundingPayment(address)"
    for account in accounts:
        calls.append(_call(setup.exchange, calldata(funding, ["address"], [account]), block))
    priced = sorted({base for keys in orders.values() for base, _, _ in keys})
    for base in priced:
        calls.append(_call(setup.exchange, calldata(
            "getSqrtMarketTwapX96(address,uint32)", ["address", "uint32"], [base, 0]), block))
    fee = "getPendingFee(address,address,int24,int24)"
    four = ["address", "address", "int24", "int24"]
    held = [(m, key) for m, keys in orders.items() for key in keys]
    for maker, (base, lower, upper) in held:
        calls.append(_call(setup.order_book, calldata(fee, four, [maker, base, lower, upper]),
                           block))
    calls.append(_call(setup.insurance_fund, selector("getInsuranceFundCapacity()"), block))
    try:
        answers = iter(await chain.batch(calls))
    except Reverted as exc:
        # Anvil answers a call at its head while it mines the next block (the keeper's own
        # send) with that block's state and the head's timestamp: Perp's funding settlement
        # then subtracts a later settlement time (`SafeMath: subtraction overflow`). The same
        # calls succeed at the same block right after; failing the refresh re-synced the
        # strategy 1-3 times in each run of the crash test.
        log.info("perp reads retried", block=block, reason=str(exc)[:80])
        answers = iter(await chain.batch(calls))

    def mark_inputs() -> dict[str, MarkInputs]:
        out: dict[str, MarkInputs] = {}
        for base in bases:
            values = [_words(next(answers), ["uint256"])[0] for _ in range(5)]
            out[base] = MarkInputs(*(int(v) for v in values))
        return out

    marks = mark_inputs()
    ahead = mark_inputs() if ahead_time is not None else {}
    payments = {a: int(_words(next(answers), ["int256"])[0]) for a in accounts}
    prices = {base: int(_words(next(answers), ["uint160"])[0]) for base in priced}
    fees: dict[str, dict[tuple[str, int, int], int]] = {}
    for maker, key in held:
        fees.setdefault(maker, {})[key] = int(_words(next(answers), ["uint256"])[0])
    (capacity,) = _words(next(answers), ["int256"])
    return BlockReads(block, marks, ahead, payments, prices, fees, int(capacity))

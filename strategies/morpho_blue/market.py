"""Morpho Blue reads through a `ChainReader`, always in batches: markets, positions, oracles, IRMs.

`read_snapshot` reads, at one block, every market's `market(id)` and `idToMarketParams(id)`,
every (market, borrower) `position(id, user)`, and classifies each market's price source and
interest-rate model (see `OracleModel` / `IrmModel`) so that the book can mirror them from
logs alone. `read_prices_and_rates` is the one batch that reads what cannot be mirrored.
Calldata is pre-encoded with eth_abi from the signatures in IMorpho / IIrm / IOracle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.crypto import keccak

from keeper.errors import KeeperError
from keeper.strategy import ChainReader
from strategies.morpho_blue import math
from strategies.morpho_blue.math import MarketParams, MarketState, PositionState

ZERO_ADDRESS = "0x" + "00" * 20
_PARAMS = "(address,address,address,address,uint256)"
_MARKET = "(uint128,uint128,uint128,uint128,uint128,uint128)"

# Runtime code hashes of IRMs whose borrowRateView is mirrored in math.py, and the mirror.
# IrmMock of @morpho-org/morpho-blue 1.0.0 as the devnet compiles it (solc 0.8.19, viaIR,
# 999999 runs, paris); its borrowRateView is pure, so the code fixes the formula.
IRM_MOCK = "irm_mock"
KNOWN_IRMS: dict[str, str] = {
    "0x79f41067ccbb51f32d81cd4ed0f79951cc19efe44340c8dc8d6db86f0c175d1c": IRM_MOCK,
}


@dataclass(frozen=True)
class _Fn:
    """One view function: its signature and output types."""

    signature: str
    outputs: tuple[str, ...]

    @property
    def selector(self) -> bytes:
        return function_signature_to_4byte_selector(self.signature)

    def data(self, *args: Any) -> str:
        inner = self.signature[self.signature.index("(") + 1 : -1]
        types = _split(inner)
        return "0x" + (self.selector + encode(types, list(args))).hex()

    def decode(self, result: str) -> tuple[Any, ...]:
        return tuple(decode(list(self.outputs), bytes.fromhex(result.removeprefix("0x"))))


def _split(inner: str) -> list[str]:
    """Top-level comma split of an ABI type list (tuples kept whole)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            out.append(inner[start:i])
            start = i + 1
    if inner:
        out.append(inner[start:])
    return out


MARKET = _Fn("market(bytes32)", ("uint128",) * 6)
ID_TO_MARKET_PARAMS = _Fn("idToMarketParams(bytes32)", ("address",) * 4 + ("uint256",))
POSITION = _Fn("position(bytes32,address)", ("uint256", "uint128", "uint128"))
PRICE = _Fn("price()", ("uint256",))
COLLATERAL_FEED = _Fn("COLLATERAL_FEED()", ("address",))
LOAN_FEED = _Fn("LOAN_FEED()", ("address",))
SCALE_FACTOR = _Fn("SCALE_FACTOR()", ("uint256",))
LATEST_ROUND_DATA = _Fn("latestRoundData()", ("uint80", "int256", "uint256", "uint256", "uint80"))
BORROW_RATE_VIEW = _Fn(f"borrowRateView({_PARAMS},{_MARKET})", ("uint256",))
LIQUIDATE = f"liquidate({_PARAMS},address,uint256,uint256,bytes)"
LIQUIDATE_SELECTOR = function_signature_to_4byte_selector(LIQUIDATE)


@dataclass(frozen=True)
class FeedOracleModel:
    """An oracle whose `price()` is FeedOracle.price of two Chainlink-style feeds."""

    collateral_feed: str
    loan_feed: str
    scale_factor: int


@dataclass(frozen=True)
class OracleModel:
    """How a market's collateral price is known: mirrored from feeds, or only by reading."""

    address: str
    feed_oracle: FeedOracleModel | None  # None: not mirrored, read `price()` at the block


@dataclass(frozen=True)
class IrmModel:
    """How a market's borrow rate is known: "none" (irm = 0), a mirror, or "read"."""

    address: str
    kind: str  # "none", IRM_MOCK, or "read"


@dataclass(frozen=True)
class Snapshot:
    """Everything read at one block to seed the book."""

    block: int
    params: Mapping[str, MarketParams]
    markets: Mapping[str, MarketState]
    positions: Mapping[str, Mapping[str, PositionState]]
    oracles: Mapping[str, OracleModel]
    irms: Mapping[str, IrmModel]
    answers: Mapping[str, int]  # feed -> latest answer
    prices: Mapping[str, int | None]  # oracle -> price() at the block (None: reverted)
    rates: Mapping[str, int]  # market id -> borrowRateView(params, stored market)


def _call(to: str, data: str, block: int) -> tuple[str, Sequence[Any]]:
    return ("eth_call", [{"to": to, "data": data}, hex(block)])


def _id(market_id: str) -> bytes:
    return bytes.fromhex(market_id.removeprefix("0x"))


def params_tuple(p: MarketParams) -> tuple[str, str, str, str, int]:
    return (p.loan_token, p.collateral_token, p.oracle, p.irm, p.lltv)


def market_tuple(m: MarketState) -> tuple[int, ...]:
    return (m.total_supply_assets, m.total_supply_shares, m.total_borrow_assets,
            m.total_borrow_shares, m.last_update, m.fee)


def market_id(params: MarketParams) -> str:
    """Mirrors MarketParamsLib.id: keccak256(abi.encode(marketParams))."""
    return "0x" + keccak(encode(["address", "address", "address", "address", "uint256"],
                                list(params_tuple(params)))).hex()


async def _batch_tolerant(
    chain: ChainReader, calls: Sequence[tuple[str, Sequence[Any]]]
) -> list[Any | None]:
    """A batch; if any call fails (a revert fails the whole batch), each call alone, None
    for those that fail. Only used at start-up for per-market (not per-account) reads."""
    try:
        return list(await chain.batch(calls))
    except KeeperError:
        out: list[Any | None] = []
        for method, params in calls:
            try:
                out.append(await chain.call(method, params))
            except KeeperError:
                out.append(None)
        return out


def _has_selectors(code: str, *fns: _Fn) -> bool:
    """Whether the runtime code pushes every selector (PUSH4 in the dispatcher)."""
    raw = bytes.fromhex(code.removeprefix("0x"))
    return all(b"\x63" + fn.selector in raw for fn in fns)


async def read_snapshot(
    chain: ChainReader,
    morpho: str,
    market_ids: Sequence[str],
    borrowers: Mapping[str, Iterable[str]],
    block: int,
) -> Snapshot:
    """Markets, positions, oracles and IRMs at `block`, in a handful of batched round trips."""
    ids = list(dict.fromkeys(market_ids))
    answers = await chain.batch(
        [_call(morpho, MARKET.data(_id(i)), block) for i in ids]
        + [_call(morpho, ID_TO_MARKET_PARAMS.data(_id(i)), block) for i in ids]
    )
    markets: dict[str, MarketState] = {}
    params: dict[str, MarketParams] = {}
    for n, i in enumerate(ids):
        state = MarketState(*MARKET.decode(answers[n]))
        loan, coll, oracle, irm, lltv = ID_TO_MARKET_PARAMS.decode(answers[len(ids) + n])
        if state.last_update == 0:
            raise KeeperError(f"morpho_blue: market {i} is not created on {morpho}")
        markets[i] = state
        params[i] = MarketParams(str(loan).lower(), str(coll).lower(), str(oracle).lower(),
                                 str(irm).lower(), int(lltv))
    pairs = [(i, u) for i in ids for u in dict.fromkeys(borrowers.get(i, ()))]
    answers = await chain.batch(
        [_call(morpho, POSITION.data(_id(i), u), block) for i, u in pairs]
    )
    positions: dict[str, dict[str, PositionState]] = {i: {} for i in ids}
    for (i, u), answer in zip(pairs, answers, strict=True):
        positions[i][u.lower()] = PositionState(*POSITION.decode(answer))
    oracles, answers_by_feed, prices = await _read_oracles(
        chain, sorted({p.oracle for p in params.values()}), block
    )
    irms, rates = await _read_irms(chain, params, markets, block)
    return Snapshot(block, params, markets, positions, oracles, irms, answers_by_feed, prices,
                    rates)


async def _read_oracles(
    chain: ChainReader, oracles: Sequence[str], block: int
) -> tuple[dict[str, OracleModel], dict[str, int], dict[str, int | None]]:
    codes = await chain.batch([("eth_getCode", [o, hex(block)]) for o in oracles])
    feedish = [o for o, c in zip(oracles, codes, strict=True)
               if _has_selectors(str(c), COLLATERAL_FEED, LOAN_FEED, SCALE_FACTOR, PRICE)]
    with_code = [o for o, c in zip(oracles, codes, strict=True) if len(str(c)) > 2]
    calls = [_call(o, PRICE.data(), block) for o in with_code]
    for o in feedish:
        calls += [_call(o, fn.data(), block) for fn in (COLLATERAL_FEED, LOAN_FEED, SCALE_FACTOR)]
    got = iter(await _batch_tolerant(chain, calls))
    prices: dict[str, int | None] = {o: None for o in oracles}
    for o in with_code:
        answer = next(got)
        prices[o] = _uint(PRICE, answer)
    candidates: dict[str, FeedOracleModel] = {}
    for o in feedish:
        raw = [next(got) for _ in range(3)]
        if any(r in (None, "0x") for r in raw):
            continue
        candidates[o] = FeedOracleModel(
            str(COLLATERAL_FEED.decode(str(raw[0]))[0]).lower(),
            str(LOAN_FEED.decode(str(raw[1]))[0]).lower(), SCALE_FACTOR.decode(str(raw[2]))[0],
        )
    feeds = sorted({f for m in candidates.values() for f in (m.collateral_feed, m.loan_feed)})
    rounds = await _batch_tolerant(
        chain, [_call(f, LATEST_ROUND_DATA.data(), block) for f in feeds]
    )
    answers = {f: int(LATEST_ROUND_DATA.decode(r)[1]) for f, r in zip(feeds, rounds, strict=True)
               if r not in (None, "0x")}
    models: dict[str, OracleModel] = {}
    for o in oracles:
        model = candidates.get(o)
        if model is not None:
            # Mirror only what reproduces the oracle's own answer at the block.
            try:
                mirrored: int | None = math.feed_oracle_price(
                    model.scale_factor, answers.get(model.collateral_feed, 0),
                    answers.get(model.loan_feed, 0),
                )
            except math.MorphoMathError:
                mirrored = None
            if mirrored is None or mirrored != prices[o]:
                model = None
        models[o] = OracleModel(o, model)
    return models, answers, prices


async def _read_irms(
    chain: ChainReader, params: Mapping[str, MarketParams], markets: Mapping[str, MarketState],
    block: int,
) -> tuple[dict[str, IrmModel], dict[str, int]]:
    addresses = sorted({p.irm for p in params.values() if int(p.irm, 16)})
    codes = await chain.batch([("eth_getCode", [a, hex(block)]) for a in addresses])
    kinds = {
        a: KNOWN_IRMS.get("0x" + keccak(bytes.fromhex(str(c).removeprefix("0x"))).hex(), "read")
        for a, c in zip(addresses, codes, strict=True)
    }
    ids = [i for i, p in params.items() if int(p.irm, 16)]
    answers = await _batch_tolerant(chain, [
        _call(params[i].irm, BORROW_RATE_VIEW.data(params_tuple(params[i]),
                                                   market_tuple(markets[i])), block)
        for i in ids
    ])
    rates: dict[str, int] = {}
    for i, answer in zip(ids, answers, strict=True):
        if answer in (None, "0x"):
            kinds[params[i].irm] = "read"  # no usable rate: nothing can be mirrored
            continue
        rates[i] = BORROW_RATE_VIEW.decode(answer)[0]
        if kinds[params[i].irm] == IRM_MOCK and rates[i] != math.irm_mock_borrow_rate(markets[i]):
            kinds[params[i].irm] = "read"
    models = {a: IrmModel(a, k) for a, k in kinds.items()}
    models[ZERO_ADDRESS] = IrmModel(ZERO_ADDRESS, "none")
    return models, rates


async def read_prices_and_rates(
    chain: ChainReader,
    oracles: Sequence[str],
    rate_inputs: Mapping[str, tuple[MarketParams, MarketState]],
    block: int,
) -> tuple[dict[str, int | None], dict[str, int | None]]:
    """ONE batch at `block`: `price()` of each oracle and `borrowRateView(params, market)` for
    each market id (with the stored market struct: the rate valid since its lastUpdate)."""
    ids = list(rate_inputs)
    calls = [_call(o, PRICE.data(), block) for o in oracles]
    calls += [
        _call(p.irm, BORROW_RATE_VIEW.data(params_tuple(p), market_tuple(m)), block)
        for p, m in (rate_inputs[i] for i in ids)
    ]
    answers = await _batch_tolerant(chain, calls)
    prices = {o: _uint(PRICE, a) for o, a in zip(oracles, answers[: len(oracles)], strict=True)}
    rates = {i: _uint(BORROW_RATE_VIEW, a)
             for i, a in zip(ids, answers[len(oracles):], strict=True)}
    return prices, rates


def _uint(fn: _Fn, answer: Any | None) -> int | None:
    """The single uint an answer holds; None for a failed or empty call."""
    if answer is None or answer == "0x":
        return None
    return int(fn.decode(str(answer))[0])


def liquidate_data(
    params: MarketParams, borrower: str, seized_assets: int, repaid_shares: int
) -> str:
    """Calldata of Morpho.liquidate(marketParams, borrower, seizedAssets, repaidShares, "")."""
    args = encode(
        [_PARAMS, "address", "uint256", "uint256", "bytes"],
        [params_tuple(params), borrower, seized_assets, repaid_shares, b""],
    )
    return "0x" + (LIQUIDATE_SELECTOR + args).hex()

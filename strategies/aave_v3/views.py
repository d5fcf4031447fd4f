"""The view calls of an Aave V3 market, pre-encoded with eth_abi: the functions read at
discovery (market.py), the pool's revision (which rule set it follows, rules.py), the v3.6
e-mode categories and sentinel, and the price sources' Chainlink aggregators.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_utils.abi import function_signature_to_4byte_selector

from keeper.errors import KeeperError, MalformedAnswer, RpcUnavailable
from keeper.strategy import ChainReader
from strategies.aave_v3.rules import RuleSet, rules_for_revision

ZERO_ADDRESS = "0x" + "00" * 20


@dataclass(frozen=True)
class _Fn:
    """One view function of an Aave V3 contract: its signature and its output types."""

    signature: str
    outputs: tuple[str, ...]

    @property
    def inputs(self) -> list[str]:
        inner = self.signature[self.signature.index("(") + 1 : -1]
        return inner.split(",") if inner else []

    def data(self, *args: Any) -> str:
        selector = function_signature_to_4byte_selector(self.signature).hex()
        return "0x" + selector + encode(self.inputs, list(args)).hex()

    def decode(self, result: str) -> tuple[Any, ...]:
        return tuple(decode(list(self.outputs), bytes.fromhex(result.removeprefix("0x"))))


_RESERVE_DATA = (
    "((uint256),uint128,uint128,uint128,uint128,uint128,uint40,uint16,"
    "address,address,address,address,uint128,uint128,uint128)"
)
_FNS = {
    "getPool": _Fn("getPool()", ("address",)),
    "getPriceOracle": _Fn("getPriceOracle()", ("address",)),
    "getPoolDataProvider": _Fn("getPoolDataProvider()", ("address",)),
    "getReservesList": _Fn("getReservesList()", ("address[]",)),
    "getReserveData": _Fn("getReserveData(address)", (_RESERVE_DATA,)),
    "getEModeCategoryData": _Fn(
        "getEModeCategoryData(uint8)", ("(uint16,uint16,uint16,address,string)",)
    ),
    "getUserConfiguration": _Fn("getUserConfiguration(address)", ("(uint256)",)),
    "getUserEMode": _Fn("getUserEMode(address)", ("uint256",)),
    "getAssetPrice": _Fn("getAssetPrice(address)", ("uint256",)),
    "getSourceOfAsset": _Fn("getSourceOfAsset(address)", ("address",)),
    "scaledBalanceOf": _Fn("scaledBalanceOf(address)", ("uint256",)),
    "principalBalanceOf": _Fn("principalBalanceOf(address)", ("uint256",)),
    "getUserStableRate": _Fn("getUserStableRate(address)", ("uint256",)),
    "getUserLastUpdated": _Fn("getUserLastUpdated(address)", ("uint40",)),
    # aave-v3-origin (v3.2+ e-mode by bitmaps, v3.3+ grace periods), and the sentinel
    "POOL_REVISION": _Fn("POOL_REVISION()", ("uint256",)),
    "getEModeCategoryCollateralConfig": _Fn(
        "getEModeCategoryCollateralConfig(uint8)", ("(uint16,uint16,uint16)",)),
    "getEModeCategoryCollateralBitmap": _Fn("getEModeCategoryCollateralBitmap(uint8)",
                                            ("uint128",)),
    "getEModeCategoryBorrowableBitmap": _Fn("getEModeCategoryBorrowableBitmap(uint8)",
                                            ("uint128",)),
    "getEModeCategoryLtvzeroBitmap": _Fn("getEModeCategoryLtvzeroBitmap(uint8)", ("uint128",)),
    "getLiquidationGracePeriod": _Fn("getLiquidationGracePeriod(address)", ("uint40",)),
    "getPriceOracleSentinel": _Fn("getPriceOracleSentinel()", ("address",)),
    "isLiquidationAllowed": _Fn("isLiquidationAllowed()", ("bool",)),
}


def _fn(_contract: str, name: str) -> _Fn:
    return _FNS[name]


def _call(to: str, data: str, block: int) -> tuple[str, Sequence[Any]]:
    return ("eth_call", [{"to": to, "data": data}, hex(block)])


def _address(value: Any) -> str:
    return str(value).lower()


async def read_rules(chain: ChainReader, pool: str, block: int) -> tuple[RuleSet, int]:
    """The pool's rule set from its `POOL_REVISION()` (rules.py); refuses unproven ones."""
    try:
        answer = await chain.eth_call(pool, _fn("pool", "POOL_REVISION").data(), block)
        (revision,) = _fn("pool", "POOL_REVISION").decode(answer)
    except (RpcUnavailable, MalformedAnswer):
        raise
    except (KeeperError, DecodingError):  # reverted, or not a uint256: not a known pool
        revision = None
    rules = rules_for_revision(revision, pool)
    return rules, int(revision)


async def read_sentinel(
    chain: ChainReader, addresses_provider: str, block: int
) -> tuple[str, bool]:
    """The provider's PriceOracleSentinel and its isLiquidationAllowed() (True if none):
    ValidationLogic.validateLiquidationCall (v3.6) asks it when HF >= 0.95."""
    (sentinel,) = _fn("provider", "getPriceOracleSentinel").decode(await chain.eth_call(
        addresses_provider, _fn("provider", "getPriceOracleSentinel").data(), block))
    sentinel = _address(sentinel)
    if int(sentinel, 16) == 0:
        return ZERO_ADDRESS, True
    (allows,) = _fn("sentinel", "isLiquidationAllowed").decode(await chain.eth_call(
        sentinel, _fn("sentinel", "isLiquidationAllowed").data(), block))
    return sentinel, bool(allows)


EMODE_IDS = range(1, 256)  # a uint8 category id; 0 is "no e-mode"


async def read_categories_v36(
    chain: ChainReader, pool: str, block: int
) -> dict[int, tuple[int, int, int, int, int, int]]:
    """v3.6 e-mode categories: (ltv, lt, bonus, collateral, borrowable, ltvzero bitmaps) by id.

    Membership lives in the categories' bitmaps (the reserves' e-mode bits are no longer
    written), so every id's collateral config is read (one batch), and the bitmaps of those
    that exist (a liquidation threshold, which the configurator requires).
    """
    fn = _fn("pool", "getEModeCategoryCollateralConfig")
    answers = await chain.batch([_call(pool, fn.data(i), block) for i in EMODE_IDS])
    configs = {i: fn.decode(a)[0] for i, a in zip(EMODE_IDS, answers, strict=True)}
    ids = [i for i, c in configs.items() if c[1] != 0]
    names = ("getEModeCategoryCollateralBitmap", "getEModeCategoryBorrowableBitmap",
             "getEModeCategoryLtvzeroBitmap")
    answers = await chain.batch(
        [_call(pool, _fn("pool", n).data(i), block) for i in ids for n in names])
    out = {}
    for k, i in enumerate(ids):
        collateral, borrowable, ltvzero = (
            _fn("pool", n).decode(answers[3 * k + j])[0] for j, n in enumerate(names))
        ltv, threshold, bonus = configs[i]
        out[i] = (ltv, threshold, bonus, collateral, borrowable, ltvzero)
    return out


AGGREGATOR = "0x245a7bfc"  # aggregator(): EACAggregatorProxy's current aggregator


async def resolve_feeds(chain: ChainReader, sources: Sequence[str], block: int) -> dict[str, str]:
    """Each price source's log emitter: its `aggregator()` when it is a Chainlink proxy
    (the proxy emits nothing; its aggregator emits AnswerUpdated), else the source itself.

    Asked one source at a time, because a source without `aggregator()` reverts, and a
    revert would fail a whole batch; it happens once per market at start-up.
    """
    feeds: dict[str, str] = {}
    for source in dict.fromkeys(sources):
        if int(source, 16) == 0:
            feeds[source] = source
            continue
        try:
            answer = await chain.eth_call(source, AGGREGATOR, block)
        except KeeperError:  # no aggregator(): the source emits its own logs
            answer = "0x"
        raw = answer.removeprefix("0x")
        aggregator = ("0x" + raw[-40:]).lower() if len(raw) == 64 else ZERO_ADDRESS
        feeds[source] = aggregator if int(aggregator, 16) else source
    return feeds

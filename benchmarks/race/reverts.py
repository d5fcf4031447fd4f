"""Why each reverted transaction of a bot reverted, from the chain alone (for verdict.py).

The trace of the transaction at its own position in its block (`debug_traceTransaction`,
callTracer) gives the revert reason (the deepest failing call's revert data: Aave's
numeric codes named, Morpho's strings, panics, the FlashLiquidator's errors) and the
accounts it tried to liquidate (every Pool `liquidationCall` and Morpho `liquidate` in the
call tree, so flash-executor batches count too).

Then the same call (same sender, target, calldata and value) is re-run with `eth_call`
against the states just before and just after each earlier event that may have broken it,
the latest first: every earlier liquidation of those accounts and the latest
`PRICE_POSTS_CHECKED` price posts (`AnswerUpdated` of any of the oracle's feeds). One
before which it would have gone through and after which it would not is what made it fail
(if it still went through after an event, something later broke it). The cause is

* `lost` when that was someone else's liquidation (an earlier transaction of the same
  block or of an earlier block), named with its transaction;
* `self` when it was the bot's own liquidation (it acted on a view older than it);
* `market` when it was a price post (the price rose back before it was mined: it acted on
  a view the market had left), named with the post's transaction;
* `revert` when nothing explains it (no such event, or it went through after them, or it
  failed before all of them): the reason, and whether the call would have passed at its
  block's parent state (then something in its own block changed the outcome; if not, it
  was sent on a view the chain had already left).

Where a node cannot re-run a call at an old state, the latest earlier liquidation by
someone else (else by the bot) is taken as the cause.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from benchmarks.race import abi
from benchmarks.race.records import Liquidation, Revert
from benchmarks.race.rpc import Rpc, RpcFault

if TYPE_CHECKING:
    from benchmarks.race.verdict import Contracts


PRICE_POSTS_CHECKED = 8


@dataclass(frozen=True)
class PricePost:
    """A feed's `AnswerUpdated`: where it was mined and by which transaction."""

    block: int
    tx_index: int
    tx_hash: str

    @property
    def position(self) -> tuple[int, int]:
        return self.block, self.tx_index


async def classify(rpc: Rpc, contracts: Contracts, reverts: Sequence[Revert],
                   liquidations: Sequence[Liquidation],
                   posts: Sequence[PricePost] = ()) -> list[Revert]:
    """Each of `reverts` (who, hash, position known) with its targets, reason and cause.

    The events that may have broken it are the earlier liquidations of its accounts and the
    latest `PRICE_POSTS_CHECKED` price posts before it (the latest first): the latest one
    the call passed just before and failed just after is the cause (see the docstring)."""
    if not reverts:
        return []
    traces = await rpc.batch([("debug_traceTransaction", [r.tx_hash, {"tracer": "callTracer"}])
                              for r in reverts])
    by_account: dict[str, list[Liquidation]] = defaultdict(list)
    for liquidation in sorted(liquidations, key=lambda x: x.position):
        by_account[liquidation.account].append(liquidation)
    plans: list[tuple[Revert, tuple[str, ...], str, list[Liquidation | PricePost]]] = []
    checks: list[tuple[str, list[Any]]] = []
    for revert, trace in zip(reverts, traces, strict=True):
        if isinstance(trace, RpcFault):
            plans.append((revert, (), f"no trace: {trace.message}", []))
            continue
        targets = tuple(dict.fromkeys(_targets(trace, contracts)))
        here = (revert.block, revert.tx_index)
        earlier: list[Liquidation | PricePost] = [
            x for t in targets for x in by_account.get(t, ()) if x.position < here]
        if targets:  # a call that liquidates nothing is not moved by a price
            earlier += sorted((p for p in posts if p.position < here), key=lambda p: p.position,
                              reverse=True)[:PRICE_POSTS_CHECKED]
        # Latest first; within one block a liquidation before a post (states are per block,
        # so the two cannot be told apart there, and the liquidation is the direct cause).
        earlier.sort(key=lambda x: (x.block, isinstance(x, Liquidation), x.tx_index),
                     reverse=True)
        call = {k: trace[k] for k in ("from", "to", "input", "value") if trace.get(k)}
        for state in [b for x in earlier for b in (x.block - 1, x.block)] + [revert.block - 1]:
            checks.append(("eth_call", [call, hex(state)]))
        plans.append((revert, targets, _reason(trace), earlier))
    answers = iter(await rpc.batch(checks))
    out = []
    for revert, targets, reason, earlier in plans:
        if reason.startswith("no trace"):
            out.append(_with(revert, targets, reason, "revert"))
            continue
        around = [(_passed(next(answers)), _passed(next(answers))) for _ in earlier]
        at_parent = _passed(next(answers))
        out.append(_decide(revert, targets, reason, earlier, around, at_parent=at_parent))
    return out


def _passed(answer: Any) -> bool | None:
    """An eth_call's answer: True it went through, False it reverted, None no state."""
    if not isinstance(answer, RpcFault):
        return True
    message = answer.message.lower()
    return False if answer.code == 3 or "revert" in message or "evm error" in message else None


def _decide(revert: Revert, targets: tuple[str, ...], reason: str,
            earlier: Sequence[Liquidation | PricePost],
            around: Sequence[tuple[bool | None, bool | None]], *, at_parent: bool | None) -> Revert:
    """`around`: whether the call passed just before and just after each earlier event's
    block (latest first)."""
    culprit: Liquidation | PricePost | None = None
    liquidations = [x for x in earlier if isinstance(x, Liquidation)]
    if any(None in pair for pair in around):  # no old state: the latest earlier liquidation
        others = [x for x in liquidations if x.who != revert.who]
        culprit = others[0] if others else (liquidations[0] if liquidations else None)
    else:
        for event, (before, after) in zip(earlier, around, strict=True):
            if after:  # it still passed after this one: what broke it came later
                break
            if before:
                culprit = event
                break
    if isinstance(culprit, PricePost):
        return _with(revert, targets, reason, "market", culprit)
    if culprit is not None:
        cause = "lost" if culprit.who != revert.who else "self"
        return _with(revert, targets, reason, cause, culprit)
    note = {True: "passed at its block's parent state", False: "failed at its block's parent "
            "state too", None: "its block's parent state not available"}[at_parent]
    return _with(revert, targets, f"{reason}; {note}", "revert")


def _with(revert: Revert, targets: tuple[str, ...], reason: str, cause: str,
          winner: Liquidation | PricePost | None = None) -> Revert:
    if winner is None:
        return Revert(revert.who, revert.tx_hash, revert.block, revert.tx_index, targets,
                      reason, cause)
    who = winner.who if isinstance(winner, Liquidation) else "oracle"
    return Revert(revert.who, revert.tx_hash, revert.block, revert.tx_index, targets, reason,
                  cause, winner.tx_hash, who, revert.block - winner.block)


def _targets(call: Mapping[str, Any], contracts: Contracts) -> list[str]:
    """The accounts every liquidation call in the tree was aimed at."""
    out: list[str] = []
    to = str(call.get("to", "")).lower()
    data = str(call.get("input", "0x"))
    if to == contracts.pool.lower() and data.startswith(abi.selector(abi.LIQUIDATION_CALL)):
        out.append(str(abi.decode_args(abi.LIQUIDATION_CALL, data)[2]).lower())
    elif (contracts.morpho and to == contracts.morpho.lower()
          and data.startswith(abi.selector(abi.MORPHO_LIQUIDATE))):
        params, borrower, *_ = abi.decode_args(abi.MORPHO_LIQUIDATE, data)
        out.append(f"{_market_id(params)}:{str(borrower).lower()}")
    for child in call.get("calls", ()):
        out += _targets(child, contracts)
    return out


def _market_id(params: Sequence[Any]) -> str:
    """keccak of the ABI-encoded MarketParams, as Morpho's `MarketParamsLib.id`."""
    encoded = encode(["address", "address", "address", "address", "uint256"], list(params))
    return "0x" + keccak(encoded).hex()


def _reason(trace: Mapping[str, Any]) -> str:
    """The deepest failing call's revert reason (where the revert started)."""
    failing = trace
    while True:
        child = next((c for c in failing.get("calls", ()) if c.get("error")), None)
        if child is None or not child.get("output"):
            break
        failing = child
    return abi.revert_reason(failing.get("output"), str(failing.get("error", "")))

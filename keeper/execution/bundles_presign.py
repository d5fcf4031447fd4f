"""Bundled transactions signed ahead: an armed prepared level's first transactions, signed
on the nonce lanes the bundle submitter would give them (bundle mode).

On the public path an armed level (keeper/execution/armed.py) signs its first sends with
the nonces the account's one stream would hand them (`Volley.presign`). In bundle mode each
liquidation takes a nonce lane of its own (keeper/execution/lanes.py), so signing ahead
means guessing the lane too: `presign_on_lanes` walks the intents in order and gives each
the lane `BundleLauncher` would take for it now (a free lane, lane 0 last for flash
liquidations, lane 0 alone for one paid with the account's tokens, one lane each), signed
for that lane's upcoming nonce, the next block's fees and the same gas limit the bundle
path uses (`gas_limit_ahead(intent, 0)`). Each is a `LanePresigned`: the lead's `Presigned`
plus the address of the lane that signed it.

When the level fires, the submitter asks for each intent's lane by that address and uses
the pre-signed bytes only if they are `usable`: the same lane, the same call, gas and tip,
the very nonce the lane reserves then, and a max fee that covers the next block; else it
signs on the spot. Nothing is reserved or journaled ahead: a stale guess costs a
signature, never a second transaction for a nonce (the nonce reserved at the send decides,
and a lane's nonce comes back only once no bundle holding it can land).

`BundleVolley` is the bundle executor's `volley`: its `presign` (what `Dispatcher.arm`
calls) is `BundleSubmitter.presign`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from keeper.execution.fees import Fees
from keeper.execution.lanes import Lane, Lanes
from keeper.execution.sender import Presigned, Unsigned
from keeper.execution.volley import Volley, gas_limit_ahead
from keeper.types import TxIntent

if TYPE_CHECKING:
    from keeper.execution.executor import Executor


@dataclass(frozen=True)
class LanePresigned(Presigned):
    """A transaction signed ahead on one nonce lane: `signer` is the lane's address."""

    signer: str = ""


def bundle_call(intent: TxIntent) -> Unsigned:
    """The call the bundle path signs for `intent`: its gas limit is `gas_limit_ahead(intent,
    0)` (no simulation stands before a bundle; the builder drops a failing one), never under
    what its largest liquidation needs alone. A flash batch's limit is its members' sum
    less what batches were seen to save (`GasBook.batch_saving`), and a batch receipt
    whose members were mostly taken before it teaches a saving that brings the next sum to
    zero or below: signed so, every builder drops the bundle ("intrinsic gas too high"),
    as the auction benchmark showed."""
    opp = intent.opportunity
    floor = max(o.gas_limit for o in intent.opportunities)
    # With the margin over the strategy's figure, paid from the wallet too: at the figure
    # alone (450k) the auction benchmark's WBTC liquidations ran out of gas at 437k, and in
    # a bundle of several (each may revert) landed reverted, paying their gas and tip.
    limit = gas_limit_ahead(dataclasses.replace(intent, gas_limit=max(intent.gas_limit, floor)),
                            0)
    return Unsigned(intent.call.to, intent.call.data, limit, opp.key,
                    priority_fee=opp.priority_fee or None)


def planned_lanes(lanes: Lanes, intents: Sequence[TxIntent]) -> list[Lane | None]:
    """The lane each intent would take if launched now, in order (None: none left)."""
    taken: set[str] = set()
    out: list[Lane | None] = []
    for intent in intents:
        lane = next((lane for lane in lanes.order(own_tokens=intent.spender is not None)
                     if lane.holder is None and lane.address not in taken), None)
        if lane is not None:
            taken.add(lane.address)
        out.append(lane)
    return out


def usable(ahead: Presigned | None, lane: Lane, call: Unsigned, nonce: int, fees: Fees, *,
           base_fee: int) -> bool:
    """May `ahead` be sent as `call` on `lane` with the `nonce` it reserved now?"""
    return (isinstance(ahead, LanePresigned) and ahead.signer == lane.address
            and ahead.fits(call, nonce, fees, base_fee))


async def presign_on_lanes(
    lanes: Lanes, intents: Sequence[TxIntent], base_fee: int,
    known: Mapping[str, Presigned] | None = None,
) -> dict[str, Presigned]:
    """`intents` signed, by key, on the lanes and nonces a launch would give them now (see
    the module docstring); `known`: earlier signatures, reused when they are the same call
    on the same lane, nonce and fees. The event loop runs between two signatures."""
    out: dict[str, Presigned] = {}
    for intent, lane in zip(intents, planned_lanes(lanes, intents), strict=True):
        nonce = lane.upcoming if lane is not None else None
        if lane is None or nonce is None:
            continue
        call = bundle_call(intent)
        fees = lane.sender._fees(base_fee, call.priority_fee)
        if fees is None:  # above the fee cap: it would not be sent
            continue
        done = known.get(call.key) if known is not None else None
        if done is None or not usable(done, lane, call, nonce, fees, base_fee=base_fee) or \
                (done.max_fee, done.priority_fee) != fees:
            tx_hash, raw = await lane.sender.sign(call.to, call.data, call.gas, nonce, fees)
            done = LanePresigned(call.to, call.data, call.gas, nonce, *fees, tx_hash, raw,
                                 signer=lane.address)
            await asyncio.sleep(0)
        out[call.key] = done
    return out


class Presigner(Protocol):
    """What signs an armed level's bundled transactions ahead (`BundleSubmitter`)."""

    async def presign(
        self, intents: Sequence[TxIntent], base_fee: int,
        known: Mapping[str, Presigned] | None = None,
    ) -> tuple[int, dict[str, Presigned]]: ...


class BundleVolley(Volley):
    """The bundle executor's volley: arming a level (`Dispatcher.arm` calls `presign`)
    signs on the nonce lanes (`presigner`), not on the account's one stream. Its `launch`
    is never used: a bundle executor launches through its submitter."""

    def __init__(self, executor: Executor, presigner: Presigner) -> None:
        super().__init__(executor)
        self._presigner = presigner

    async def presign(
        self, intents: Sequence[TxIntent], base_fee: int,
        known: Mapping[str, Presigned] | None = None,
    ) -> tuple[int, dict[str, Presigned]]:
        return await self._presigner.presign(intents, base_fee, known)

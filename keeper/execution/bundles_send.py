"""Sending bundled transactions to the builders: one liquidation's bundle for its target
blocks, or every liquidation of one dispatch together behind one oracle transaction.

- alone: `eth_sendBundle [ours]`, one request per target block, the first block's first
  (the later ones may follow in the background: `Live.rest`);
- behind a pending public transaction (`Backrun.raw`): `eth_sendBundle [oracle raw,
  ours...]`, one per target block;
- behind a hinted private one (`Backrun.hash` only): one `mev_sendBundle` for the range,
  body `[{hash}, {tx: ours}...]`.

A builder (and MEV-Share) includes at most one bundle holding a given transaction, so the
liquidations a price update opens go behind it in ONE bundle: with more than one, each may
revert (`canRevert`, `revertingTxHashes`) so that a position someone else took first does
not drop the others (its revert costs its gas; alone, none may revert and a failing bundle
costs nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from keeper.execution.builders import BuilderClient, BuilderReply, bundle_params
from keeper.execution.bundles_journal import BundledTx
from keeper.execution.lanes import Lane
from keeper.types import TxIntent

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Backrun:
    """The transaction ours must follow: `raw` for a public pending one (then an
    eth_sendBundle holds both), or only its `hash` when the builder holds it privately (a
    hinted SVR update: mev_sendBundle)."""

    hash: str
    raw: str | None = None


@dataclass
class Live:
    """One bundled transaction followed to its end."""

    key: str
    strategy: str
    accounts: tuple[str, ...]
    collateral: str
    debt: str
    ranked_at: int
    lane: Lane
    tx: BundledTx
    call_to: str
    intent: TxIntent | None = None  # None when recovered after a restart
    backrun: Backrun | None = None
    rounds: int = 0
    rest: asyncio.Task[None] | None = None  # the bundles for the later target blocks
    presigned: bool = False  # its bytes were signed ahead (an armed level)
    marked: bool = False  # marked sent in the journal at launch (its follower need not)
    index: int = -1  # its follower's place in its launch's list (-1: none)


class BundleSender:
    """Puts bundled transactions in bundles and sends them to every builder."""

    def __init__(self, client: BuilderClient) -> None:
        self.client = client
        self._later: set[asyncio.Task[None]] = set()

    async def alone(self, live: Live, first: int, *, rest_later: bool = False) -> None:
        """`live`'s transaction in a bundle of its own for blocks first..last (the first
        block's request first; `rest_later`: the others in a task, `live.rest`)."""
        await self._per_block([live], [live.tx.raw_tx], first, rest_later=rest_later)

    async def together(self, lives: Sequence[Live], first: int) -> None:
        """One lane's transactions (consecutive nonces, in order) in one bundle for their
        target blocks, each allowed to revert: they land together or not at all."""
        await self._per_block(lives, [live.tx.raw_tx for live in lives], first,
                              rest_later=True, reverting=[live.tx.tx_hash for live in lives]
                              if len(lives) > 1 else [])

    async def behind(self, lives: Sequence[Live], backrun: Backrun,
                     blocks: tuple[int, int] | None = None) -> None:
        """Every one of `lives` in one bundle behind `backrun`, for `blocks` (first, last;
        by default the first one's target blocks)."""
        raws = [live.tx.raw_tx for live in lives]
        first, last = blocks or (lives[0].tx.first_block, lives[0].tx.last_block)
        may_revert = len(lives) > 1
        if backrun.raw is None:
            body: list[dict[str, Any]] = [
                {"hash": backrun.hash}, *({"tx": raw, "canRevert": may_revert} for raw in raws)]
            self._log(lives, first, last, await self.client.mev_send_bundle(body, first, last))
            return
        await self._per_block(lives, [backrun.raw, *raws], first, rest_later=True,
                              reverting=[live.tx.tx_hash for live in lives] if may_revert
                              else [], last=last)

    async def _per_block(
        self, lives: Sequence[Live], txs: list[str], first: int, *, rest_later: bool,
        reverting: Sequence[str] = (), last: int | None = None,
    ) -> None:
        last = lives[0].tx.last_block if last is None else last
        replies = await self.client.send_bundle(txs, first, reverting=reverting)
        self._log(lives, first, first, replies)
        if last <= first:
            return
        rest = self._rest(lives, txs, first + 1, last, reverting)
        if not rest_later:
            await rest
        elif lives[0].rest is None:
            lives[0].rest = asyncio.ensure_future(rest)
        else:  # a later bundle holding it too (a backrun's next wave): held here till done
            task = asyncio.ensure_future(rest)
            self._later.add(task)
            task.add_done_callback(self._later.discard)

    async def _rest(self, lives: Sequence[Live], txs: list[str], first: int, last: int,
                    reverting: Sequence[str]) -> None:
        requests = [("eth_sendBundle", [bundle_params(txs, block, reverting=reverting)])
                    for block in range(first, last + 1)]
        replies = [r for per in await self.client.send_many(requests) for r in per]
        self._log(lives, first, last, replies)

    @staticmethod
    def _log(lives: Sequence[Live], first: int, last: int, replies: list[BuilderReply]) -> None:
        refused = [(r.builder, r.error) for r in replies if not r.ok]
        log.info("bundle sent", keys=[live.key for live in lives],
                 txs=[live.tx.tx_hash for live in lives], lanes=[live.lane.index for live in lives],
                 blocks=f"{first}-{last}", accepted=len(replies) - len(refused),
                 refused=refused or None,
                 signed_ahead=sum(live.presigned for live in lives))

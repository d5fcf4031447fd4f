"""The sending half of bundle mode (`BundleSubmitter`, keeper/execution/bundles.py): one
dispatch's intents claimed in one database transaction (behind a backrun: its first wave's
in one, the rest's in another once the first wave's bundle has left), each on a free nonce
lane, signed (or taken as signed ahead), journaled, and sent in bundles to every builder.

Exactly once, as on the public path: every intent is claimed before it is signed,
and every signed transaction is in the journal (with the blocks its bundles target) before
a bundle holding it leaves. Signed on the spot, its record is synced to disk first (one
fsync per bundle alone, one for a backrun's whole group). Taken from an armed level
(`presigned`, keeper/execution/bundles_presign.py), the records are written before the
bundle leaves without the fsync (they survive the process: a restart follows the same
bytes until their last target block) and synced with the `sent` marks right after the
first bundles are out, as `Sender.send_all` does for a pre-signed volley: no signature and
no fsync stand between the oracle transaction and the bundle.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import structlog

from keeper.execution.bundles_chain import OwnChain
from keeper.execution.bundles_journal import BundleBook, BundledTx
from keeper.execution.bundles_presign import LanePresigned, bundle_call, usable
from keeper.execution.bundles_send import Backrun, BundleSender, Live
from keeper.execution.executor import Executor
from keeper.execution.journal import Journal, Signed
from keeper.execution.lanes import Lanes
from keeper.execution.sender import Presigned
from keeper.execution.volley import Follow, done, with_members
from keeper.types import Outcome, TxIntent

log = structlog.get_logger(__name__)

GROUPS_KEPT = 64  # backrun targets remembered (a target is mined or gone within blocks)
# Seconds the signing of a backrun's second wave waits once the first wave's bundle is on
# its way: the loop writes that request meanwhile (with signing in between, each of its
# few turns came a signature, ~1 ms, apart: 10 ms more to the builder in the benchmark).
WAVE_PAUSE = 0.001


class BundleLauncher:
    """Claims, lanes, signatures, journal and the first bundles of one dispatch."""

    executor: Executor
    lanes: Lanes
    chain: OwnChain  # lane 0's transactions in plain bundles, which later ones join
    book: BundleBook
    send: BundleSender
    blocks: int
    head: int
    signed_ahead: int  # transactions sent as an armed level signed them
    signed_now: int  # transactions signed when sent
    _groups: OrderedDict[str, list[Live]]  # by backrun target: what was sent behind it

    async def follow(self, live: Live) -> Outcome:
        raise NotImplementedError

    async def launch(
        self, intents: Sequence[TxIntent], base_fee: int, backrun: Backrun | None = None,
        presigned: Mapping[str, Presigned] | None = None,
    ) -> list[Follow]:
        """Claim, sign, journal and send each intent's bundle (best first), each on a free
        lane; one coroutine per intent, in order, follows it to its outcome. Behind a
        `backrun`, all of them go in one bundle (a builder includes one bundle holding a
        given transaction), journaled together first, with those of earlier dispatches
        behind the same transaction (`_behind`). `presigned`: an armed level's
        transactions, sent as signed where they fit (the module docstring). Behind a
        backrun of several, a first wave leaves before the rest is signed: those signed
        ahead, else the best one alone."""
        first = max(self.head, *(i.opportunity.block for i in intents)) + 1 if intents else 0
        ahead = presigned or {}
        # Behind a backrun the first wave is claimed alone, the rest once it has left (the
        # claims of a level of ~30 took 3-6 ms before its first bundle).
        wave = len(intents) if backrun is None else max(1, next(
            (n for n, i in enumerate(intents) if i.opportunity.key not in ahead), len(intents)))
        claims: list[bool | None] = [None] * len(intents)
        try:
            claims[:wave] = self._claim(intents[:wave])
        except Exception as exc:  # nothing was claimed
            return [done(with_members(i, self._failed(i, exc))) for i in intents]
        keys = {i.opportunity.key for i in intents}
        spare = {p.signer for k, p in ahead.items() if k in keys and isinstance(p, LanePresigned)}
        fast = presigned is not None
        follows: list[Follow] = []
        sending: list[asyncio.Task[None]] = []
        group: list[Live] = []
        # Paid from the account's tokens, they all need lane 0: one bundle from it (alone,
        # a later nonce's bundle could not land before an earlier one's), holding lane 0's
        # chain of earlier dispatches' too (bundles_chain.py).
        own: list[Live] | None = [] if backrun is None and any(
            i.spender is not None for i in intents) else None
        out = 0  # group[:out] has left, behind the backrun
        step = 0  # intents[:step] are prepared (or refused)
        try:
            for index, intent in enumerate(intents):
                key = intent.opportunity.key
                if backrun is not None and group and not out and (
                        not fast or key not in ahead):
                    # The first wave: what was signed ahead, else the best one alone, leaves
                    # now; the whole dispatch follows in a bundle holding it too (that one
                    # pays more: the builder takes it over the first if both are in time).
                    sending += self._behind(group, backrun, follows, wave=0,
                                            durable=not fast)
                    out = len(group)
                    # Signing never yields: a turn of the loop carries the request out.
                    await asyncio.sleep(WAVE_PAUSE)
                elif out:
                    await asyncio.sleep(0)
                if index == wave:
                    try:
                        claims[wave:] = self._claim(intents[wave:])
                    except Exception as exc:  # none of the rest was claimed: none is sent
                        follows += [done(with_members(i, self._failed(i, exc)))
                                    for i in intents[wave:]]
                        step = len(intents)
                        break
                step += 1
                claimed = claims[index]
                if not claimed:
                    follows.append(done(with_members(intent, Outcome(key, "duplicate"))))
                    continue
                bundle = own if backrun is None else [*self._groups.get(backrun.hash, ()),
                                                      *group]
                join = {live.tx.tx_hash for live in bundle or ()}
                try:
                    prepared = await self._prepare(
                        intent, base_fee, backrun, first, ahead=ahead.get(key), spare=spare,
                        journal=backrun is None, durable=not fast, join=join)
                except Exception as exc:  # this one only: those before it are out, followed
                    prepared = self._failed(intent, exc)
                if isinstance(prepared, Outcome):
                    follows.append(done(with_members(intent, prepared)))
                    continue
                if own is not None and intent.spender is not None:
                    own.append(prepared)  # leaves with the others, below
                    self.chain.add(prepared)  # a dispatch sent meanwhile joins it
                elif backrun is None:  # its bundle leaves while the next one is signed
                    sending.append(asyncio.ensure_future(self.send.alone(
                        prepared, first, rest_later=True)))
                    sending += self._beside(prepared)
                prepared.index = len(follows)
                group.append(prepared)
                follows.append(self._followed(prepared, intent))
            if backrun is not None and len(group) > out:
                sending += self._behind(group[out:], backrun, follows, wave=out,
                                        durable=not fast)
            if own:
                sending.append(asyncio.ensure_future(self.chain.send(own, first)))
        except BaseException:
            for intent, claimed in zip(intents[step:], claims[step:], strict=True):
                if claimed:  # claimed, never prepared: claimable again
                    with contextlib.suppress(Exception):
                        self._abandon(intent.opportunity.key)
            raise
        if sending:
            await asyncio.gather(*sending)  # every first bundle is out when this returns
        if fast and group:
            marked(self.executor.journal, [live for live in group if live.index >= 0])
        return follows

    def _claim(self, intents: Sequence[TxIntent]) -> list[bool]:
        ex = self.executor
        return ex.journal.claim_all([(i.opportunity, i.members) for i in intents],
                                    ex.chain.chain_id)

    def _behind(self, new: list[Live], backrun: Backrun, follows: list[Follow], *,
                wave: int, durable: bool = False,
                journaled: bool = False) -> list[asyncio.Task[None]]:
        """Journal `new` and send them behind `backrun`, in one bundle with the unresolved
        transactions sent behind it before (a builder includes one bundle holding a given
        transaction: the bundle that holds them all pays the most). `wave` > 0: an earlier
        part of this dispatch has left; a failed journal write then fails only `new`.
        `journaled`: `new` is in the journal already (it left in a bundle of its own)."""
        try:
            if not journaled:
                self._journal_group(new, durable=durable)
        except BaseException:
            if not wave:
                for follow in follows:
                    follow.close()  # nothing of the dispatch left: none is followed
                raise
            for live in new:  # never left the keeper; the earlier wave is followed
                follows[live.index].close()
                follows[live.index] = done(Outcome(live.key, "error",
                                                   reason="not sent: journal write failed"))
                live.index = -1
            return []
        try:
            union = self._union(backrun.hash, new)
        except Exception as exc:  # journaled: they leave anyway, without the earlier ones
            log.warning("earlier backruns of the target not resent", target=backrun.hash,
                        error=f"{type(exc).__name__}: {exc}")
            union = new
        blocks = (new[0].tx.first_block, new[0].tx.last_block)
        return [asyncio.ensure_future(self.send.behind(union, backrun, blocks))]

    def _beside(self, live: Live) -> list[asyncio.Task[None]]:
        """A flash liquidation sold into the pools that ours behind a pending oracle
        transaction also sell into, for the same block: it goes behind that transaction too,
        after them, in the bundle holding them all (besides its own bundle).

        The builder orders separate bundles by what they pay, so its own bundle may land
        first in the block; the ones behind the oracle transaction were priced before it
        was ranked and their exits fall short (seen: four backruns reverted behind a
        $2.7M sale of the same collateral, and the breaker tripped). It was ranked after
        theirs (`Dispatcher.pending_swaps`), so behind them it gets what it was priced at;
        the bundle holding all pays the most and is taken over its own."""
        if live.intent is None or live.intent.spender is not None:
            return []  # paid from the wallet: it sells nothing
        for lives in reversed(list(self._groups.values())):
            crowded = [x for x in lives if x.tx.tx_hash in x.lane.held
                       and x.tx.first_block <= live.tx.first_block <= x.tx.last_block
                       and x.intent is not None and x.intent.spender is None
                       and x.collateral == live.collateral]
            if crowded and (backrun := crowded[0].backrun) is not None:
                return self._behind([live], backrun, [], wave=1, journaled=True)
        return []

    def _union(self, target: str, new: list[Live]) -> list[Live]:
        """`new` after the transactions sent behind `target` before that may still land
        (their lanes still hold them); those are journaled for `new`'s last target block
        first if theirs is earlier (a bundle holding them may land until then)."""
        last = new[0].tx.last_block
        earlier = [live for live in self._groups.get(target, ())
                   if live.tx.tx_hash in live.lane.held]
        if any(live.lane is self.chain.lane for live in new):  # joined lane 0's chain
            # Its transactions first, in nonce order: the new ones' nonces follow them.
            earlier = [*(x for x in self.chain.bundle(0) if x not in earlier), *earlier]
        for live in earlier:
            if live.tx.last_block < last:
                self.book.extend(live.tx.tx_hash, last)
                live.tx = dataclasses.replace(live.tx, last_block=last)
        union = [*earlier, *new]
        self._groups[target] = union
        self._groups.move_to_end(target)
        while len(self._groups) > GROUPS_KEPT:
            self._groups.popitem(last=False)
        return union

    def _failed(self, intent: TxIntent, exc: Exception) -> Outcome:
        """An intent that could not be signed or journaled (nothing of it left the keeper)."""
        key = intent.opportunity.key
        log.error("bundle not prepared", key=key, error=f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(Exception):  # claimable again, if it was claimed
            self._abandon(key)
        return Outcome(key, "error", reason=f"not sent: {type(exc).__name__}: {exc}")

    def _abandon(self, key: str) -> None:
        """A claimed intent that will not be sent: claimable again."""
        self.executor.journal.mark_abandoned(key)

    def _journal_group(self, group: list[Live], *, durable: bool = True) -> None:
        """The group's signed transactions in the journal in one write (synced unless
        `durable` is False); if that fails, none left the keeper: their nonces and lanes
        are given back."""
        try:
            self.book.record_signed_all([
                (Signed(live.key, live.tx.nonce, live.tx.tx_hash, live.tx.raw_tx,
                        live.tx.max_fee, live.tx.priority_fee), live.lane.address)
                for live in group], first_block=group[0].tx.first_block,
                last_block=group[0].tx.last_block, durable=durable)
        except BaseException:
            for live in group:
                live.lane.nonces.release(live.tx.nonce)
                live.lane.let_go(live.tx.tx_hash)
                with contextlib.suppress(Exception):  # claimable again (the write failed)
                    self._abandon(live.key)
            raise

    async def _followed(self, live: Live, intent: TxIntent) -> Outcome:
        try:
            return with_members(intent, await self.follow(live))
        finally:
            if intent.spender is not None:
                opp = intent.opportunity
                self.executor.capital.release(opp.debt, opp.wallet_draw, spent=True)

    async def _prepare(
        self, intent: TxIntent, base_fee: int, backrun: Backrun | None, first: int, *,
        ahead: Presigned | None, spare: set[str], journal: bool, durable: bool,
        join: set[str],
    ) -> Live | Outcome:
        """A claimed intent on a lane (the one `ahead` was signed on, if free; `join`: the
        bundle it goes in, whose lane 0 it may share), signed for blocks `first`.. (or
        `ahead`, if usable), and (`journal`) journaled."""
        ex, opp = self.executor, intent.opportunity
        fees = ex.sender._fees(base_fee, opp.priority_fee or None)
        if fees is None:
            self._abandon(opp.key)
            return Outcome(opp.key, "fee-cap", reason="base fee above max_fee_per_gas")
        spender = intent.spender
        lane = self.lanes.take("", own_tokens=spender is not None, spare=spare, join=join,
                               prefer=ahead.signer if isinstance(ahead, LanePresigned) else None)
        # Lane 0 holding only its chain of plain bundles: a wallet-paid one joins it.
        lane = self.chain.claim(lane, own_tokens=spender is not None, plain=backrun is None)
        if lane is None:
            log.debug("no free nonce lane", key=opp.key, own_tokens=spender is not None,
                      backrun=backrun is not None, lane0=len(self.lanes.lanes[0].held))
            self._abandon(opp.key)
            return Outcome(opp.key, "send-failed", reason="every nonce lane holds a bundle")
        reserved = False
        try:
            if spender is not None:
                if not await ex.capital.reserve(opp.debt, opp.wallet_draw):
                    lane.let_go()
                    self._abandon(opp.key)
                    return Outcome(opp.key, "no-capital", reason="debt asset is committed")
                reserved = True
                await ex.allowances.ensure(opp.debt, spender, opp.debt_to_cover, base_fee)
            nonce = await lane.nonces.reserve()
            try:
                call = bundle_call(intent)
                signed_ahead = usable(ahead, lane, call, nonce, fees, base_fee=base_fee)
                if ahead is not None and signed_ahead:
                    tx_hash, raw, fees = ahead.tx_hash, ahead.raw, (ahead.max_fee,
                                                                    ahead.priority_fee)
                    self.signed_ahead += 1
                else:
                    tx_hash, raw = await lane.sender.sign(call.to, call.data, call.gas,
                                                          nonce, fees)
                    self.signed_now += 1
                tx = BundledTx(opp.key, tx_hash, nonce, raw, fees[0], fees[1], lane.address,
                               first, first + self.blocks - 1)
                if journal:
                    self.book.record_signed(Signed(opp.key, nonce, tx_hash, raw, *fees),
                                            sender=lane.address, first_block=tx.first_block,
                                            last_block=tx.last_block, durable=durable)
            except BaseException:
                lane.nonces.release(nonce)  # never left the keeper
                raise
        except BaseException:
            lane.let_go()
            if reserved:
                ex.capital.release(opp.debt, opp.wallet_draw, spent=False)
            raise
        lane.hold(tx_hash)
        return Live(opp.key, opp.strategy, tuple(o.account for o in intent.opportunities),
                    opp.collateral, opp.debt, opp.block, lane, tx, intent.call.to,
                    intent=intent, backrun=backrun, presigned=signed_ahead)


def marked(journal: Journal, group: Sequence[Live]) -> None:
    """The group handed to the builders: marked sent, and every record before synced,
    in one write (a failure leaves each mark to its follower, synced then)."""
    try:
        journal.mark_sent_all([(live.key, live.tx.tx_hash) for live in group], durable=True)
    except Exception as exc:
        log.warning("bundle marks not written; each follower writes its own",
                    error=f"{type(exc).__name__}: {exc}")
        return
    for live in group:
        live.marked = True

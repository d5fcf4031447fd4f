"""Armed levels' pieces without a chain: when a pre-signed transaction may still be sent
(`Presigned.fits`), when an arming is stale (kept levels are armed again then, and only
then), and that a level's arming reaches dispatch."""

from __future__ import annotations

import asyncio

from keeper.execution.armed import Armed
from keeper.execution.sender import Presigned, Unsigned
from keeper.prepared import Level
from keeper.types import Call, TxIntent
from tests.unit.test_prepared_levels import FEED, _head, _lane, _log, _opps

GWEI = 10**9
CALL = Unsigned("0x" + "aa" * 20, "0x1234", 300_000, "k")
BASE = 10 * GWEI
TIP = GWEI
# Signed for nonce 7 at base fee BASE, the policy's 2x base fee + tip.
READY = Presigned(CALL.to, CALL.data, CALL.gas, 7, 2 * BASE + TIP, TIP, "0xh", "0xraw")


def test_a_presigned_transaction_fits_only_its_own_call_nonce_and_tip() -> None:
    offer = (2 * BASE + TIP, TIP)
    assert READY.fits(CALL, 7, offer, BASE)
    assert not READY.fits(CALL, 8, offer, BASE)  # another nonce: the stream moved
    assert not READY.fits(Unsigned(CALL.to, "0x5678", CALL.gas, "k"), 7, offer, BASE)
    assert not READY.fits(Unsigned(CALL.to, CALL.data, 400_000, "k"), 7, offer, BASE)
    assert not READY.fits(CALL, 7, (2 * BASE + 2 * TIP, 2 * TIP), BASE)  # another bid


def test_a_presigned_max_fee_must_cover_the_next_blocks_base_fee() -> None:
    # The base fee fell: the max fee signed is more than the offer now, still fine.
    assert READY.fits(CALL, 7, (BASE + TIP, TIP), BASE // 2)
    # It rose: fine while the next block's base fee (at most 1/8 higher) plus the tip fits.
    rose = 2 * BASE * 8 // 9 - GWEI  # (rose + rose / 8) + tip stays under 2x BASE + tip
    assert READY.fits(CALL, 7, (2 * rose + TIP, TIP), rose)
    assert not READY.fits(CALL, 7, (4 * BASE + TIP, TIP), 2 * BASE)
    # At the fee cap, an offer no higher than what was signed is fine whatever the base fee.
    assert READY.fits(CALL, 7, (2 * BASE + TIP, TIP), 3 * BASE)


def test_an_arming_is_stale_once_the_nonce_or_the_base_fee_moved() -> None:
    armed = Armed({}, {"k": READY}, nonce=7, base_fee=BASE)
    assert not armed.stale(7, BASE)
    assert armed.stale(8, BASE) and armed.stale(7, BASE + 1) and armed.stale(None, BASE)
    assert armed.signed == 1


def test_an_armed_intent_carries_the_opportunity_it_is_sent_with() -> None:
    first, again = _opps(1)[0], _opps(1, block=11)[0]
    built = TxIntent(first, Call(CALL.to, CALL.data), 300_000, None)
    armed = Armed({(first.key,): built}, {}, nonce=0, base_fee=BASE)
    intent = armed.intent((again,))
    assert intent is not None and intent.opportunity is again and intent.call == built.call
    assert armed.intent((_opps(2)[1],)) is None  # not armed: built when sent


def test_a_fired_level_hands_its_arming_to_the_dispatcher() -> None:
    armed = Armed({}, {"k": READY}, nonce=7, base_fee=BASE)
    lane, sent = _lane([Level(FEED, 99, -1, _opps(2), armed)], _head(10))
    assert lane.heard(_log(99, 11)) == 2
    assert sent.armed == [armed]


class _Nonces:
    next_nonce: int | None = 7


class _Executor:
    nonces = _Nonces()


class Arming:
    """Stands in for the dispatcher's `arm`: records each call, arms at the stream's nonce."""

    def __init__(self) -> None:
        self.executor = _Executor()
        self.base_fee = BASE
        self.gate = None  # no [ha]: this keeper sends
        self.calls = 0

    async def arm(self, opportunities: object, *, signed: int, known: Armed | None) -> Armed:
        self.calls += 1
        return Armed({}, {}, nonce=self.executor.nonces.next_nonce or 0,
                     base_fee=self.base_fee)


def test_kept_levels_are_armed_again_only_once_the_nonce_or_the_base_fee_moved() -> None:
    lane, _ = _lane([Level(FEED, 99, -1, _opps(1), Armed({}, {}, nonce=7, base_fee=BASE))],
                    _head(10))
    arming = Arming()
    lane.engine.dispatcher = arming  # type: ignore[assignment]
    lane.engine.next_base_fee = BASE  # what a preparation signs for (the dispatcher's)
    asyncio.run(lane.prepare(_head(11), changed=False))  # nothing moved: kept as armed
    assert arming.calls == 0
    arming.executor.nonces.next_nonce = 8  # a send of ours took nonce 7
    asyncio.run(lane.prepare(_head(12), changed=False))
    [level] = lane.ready(FEED)
    assert arming.calls == 1 and level.armed is not None and level.armed.nonce == 8
    lane.engine.next_base_fee = 2 * BASE  # the next block's base fee moved
    asyncio.run(lane.prepare(_head(13), changed=False))
    [level] = lane.ready(FEED)
    assert arming.calls == 2 and level.armed is not None and level.armed.base_fee == 2 * BASE


def test_a_level_fired_while_arming_stays_fired() -> None:
    """The feed's log is heard while the levels are being armed (arming awaits between
    signatures): the level goes out unarmed, and arming neither fails on the levels it
    was walking nor puts the fired feed's levels back."""
    armed = Armed({}, {}, nonce=6, base_fee=BASE)  # stale: armed again
    lane, sent = _lane([Level(FEED, 99, -1, _opps(1), armed)], _head(10))

    class FiringArming(Arming):
        async def arm(self, opportunities: object, *, signed: int,
                      known: Armed | None) -> Armed:
            assert lane.heard(_log(98, 11)) == 1  # the answer arrives meanwhile
            return await super().arm(opportunities, signed=signed, known=known)

    arming = FiringArming()
    arming.dispatch = sent.dispatch  # type: ignore[attr-defined]
    arming.touched_after = sent.touched_after  # type: ignore[attr-defined]
    lane.engine.dispatcher = arming  # type: ignore[assignment]
    asyncio.run(lane.prepare(_head(11), changed=False))
    assert arming.calls == 1 and len(sent.sent) == 1 and sent.armed == [armed]
    assert lane.ready(FEED) == []

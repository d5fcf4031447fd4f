"""A fired level's lead before the rest (keeper/prepared_lead.py): which send leads
(`Armed.lead`), how a level splits, that the rest is dispatched only once the lead's launch
is done, and that `at_block` stamps a liquidation exactly as `dataclasses.replace` does."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import cast

from keeper.execution.armed import Armed, at_block
from keeper.execution.dispatch import Dispatcher
from keeper.execution.sender import Presigned
from keeper.prepared_lead import dispatch_level, split_lead
from keeper.types import Call, Candidate, Opportunity, TxIntent

GWEI = 10**9


def _opportunity(key: str, account: str, block: int = 10) -> Opportunity:
    candidate = Candidate("aave_v3", account, "0xc", "0xd", 10**18, 9 * 10**17, key,
                          lambda repay: repay, 400_000, "0xpool")
    return Opportunity("aave_v3", key, account, "0xc", "0xd", 10**18, 2 * 10**18, 5, 1,
                       400_000, 3, 1, "0xq", 9 * 10**17, block, candidate, priority_fee=7)


def _signed(nonce: int) -> Presigned:
    return Presigned("0xto", "0x", 1, nonce, 3 * GWEI, GWEI, f"0xh{nonce}", f"0xr{nonce}")


def _armed(sends: Sequence[tuple[str, ...]], signed: int) -> Armed:
    """An arming of `sends` in this order, the first `signed` signed from nonce 5."""
    opp = _opportunity("x", "0xa")
    intents = {keys: TxIntent(opp, Call("0xto", "0x"), 1, None) for keys in sends}
    presigned = {keys[0]: _signed(5 + n) for n, keys in enumerate(sends[:signed])}
    return Armed(intents, presigned, nonce=5, base_fee=GWEI)


def test_at_block_stamps_as_replace_does() -> None:
    opps = [_opportunity("k1", "0xa"), _opportunity("k2", "0xb", block=8)]
    stamped = at_block(opps, 12)
    assert stamped == [dataclasses.replace(o, block=12) for o in opps]
    assert all(s is not o for s, o in zip(stamped, opps, strict=True))
    assert [o.block for o in opps] == [10, 8]  # the level's own are left as they were


def test_the_lead_is_the_send_signed_with_the_first_nonce() -> None:
    armed = _armed([("a", "b"), ("c",), ("d",)], signed=3)
    assert armed.lead == ("a", "b")
    assert _armed([("a",)], signed=0).lead == ()  # nothing signed ahead: no lead


def test_a_level_splits_into_its_lead_and_the_rest_only_when_the_lead_is_all_there() -> None:
    kept = [_opportunity(k, f"0x{k}") for k in "abcd"]
    lead, rest = split_lead(_armed([("a", "b"), ("c",), ("d",)], signed=3), kept)
    assert [o.key for o in lead] == ["a", "b"] and [o.key for o in rest] == ["c", "d"]
    # "b" was touched by our own liquidation since the level was prepared: one dispatch.
    without_b = [o for o in kept if o.key != "b"]
    assert split_lead(_armed([("a", "b"), ("c",)], signed=2), without_b) == ([], without_b)
    assert split_lead(None, kept) == ([], kept)


class Recorder:
    """Stands in for the dispatcher: records dispatches; `launched` waits until released."""

    def __init__(self) -> None:
        self.sent: list[list[str]] = []
        self.blocks: list[set[int]] = []
        self.release = asyncio.Event()

    def dispatch(self, opportunities: Sequence[Opportunity], tasks: object, *,
                 armed: object = None) -> int:
        self.sent.append([o.key for o in opportunities])
        self.blocks.append({o.block for o in opportunities})
        return len(opportunities)

    async def launched(self) -> None:
        await self.release.wait()


async def test_the_rest_is_dispatched_once_the_leads_launch_is_done() -> None:
    kept = [_opportunity(k, f"0x{k}") for k in "abc"]
    recorder = Recorder()
    armed = _armed([("a",), ("b",), ("c",)], signed=3)
    async with asyncio.TaskGroup() as tasks:
        handed = dispatch_level(cast(Dispatcher, recorder), tasks, kept, 11, armed)
        assert handed == 3
        for _ in range(5):
            await asyncio.sleep(0)
        assert recorder.sent == [["a"]]  # the lead alone, the rest waits for its launch
        recorder.release.set()
    assert recorder.sent == [["a"], ["b", "c"]]
    assert recorder.blocks == [{11}, {11}]  # each stamped with the block of the answer


async def test_a_level_without_a_lead_goes_as_one_dispatch() -> None:
    kept = [_opportunity(k, f"0x{k}") for k in "ab"]
    recorder = Recorder()
    async with asyncio.TaskGroup() as tasks:
        assert dispatch_level(cast(Dispatcher, recorder), tasks, kept, 11,
                              _armed([("a",), ("b",)], signed=0)) == 2
    assert recorder.sent == [["a", "b"]]

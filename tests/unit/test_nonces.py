"""Tests for keeper.execution.nonces: contiguous reservations, sync rules, release and reuse."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest

from keeper.execution.nonces import NonceManager


def chain_nonce(value: int) -> Callable[[], Awaitable[int]]:
    async def fetch() -> int:
        await asyncio.sleep(0)
        return value

    return fetch


async def test_hundred_concurrent_reservations_are_contiguous_and_distinct() -> None:
    manager = NonceManager("0xabc")
    assert await manager.sync(chain_nonce(17), None) == 17
    rng = random.Random(7)

    async def take() -> int:
        for _ in range(rng.randrange(3)):
            await asyncio.sleep(0)
        return await manager.reserve()

    nonces = await asyncio.gather(*(take() for _ in range(100)))
    assert len(set(nonces)) == 100
    assert sorted(nonces) == list(range(17, 117))
    assert manager.next_nonce == 117
    assert manager.in_flight == tuple(range(17, 117))


async def test_sync_journal_ahead_of_chain() -> None:
    # Signed before a crash but never seen by the node: do not reuse those nonces.
    manager = NonceManager()
    assert await manager.sync(chain_nonce(5), 9) == 10
    assert await manager.reserve() == 10


async def test_sync_chain_ahead_of_journal() -> None:
    # Another tool sent from this account, or the journal is new.
    manager = NonceManager()
    assert await manager.sync(chain_nonce(42), 9) == 42
    assert await manager.reserve() == 42
    fresh = NonceManager()
    assert await fresh.sync(chain_nonce(0), None) == 0
    assert await fresh.reserve() == 0


async def test_sync_equal_sources() -> None:
    manager = NonceManager()
    assert await manager.sync(chain_nonce(10), 9) == 10


async def test_released_nonce_is_reused_first() -> None:
    manager = NonceManager()
    await manager.sync(chain_nonce(3), None)
    a, b, c = [await manager.reserve() for _ in range(3)]
    assert (a, b, c) == (3, 4, 5)
    manager.release(b)
    assert manager.in_flight == (3, 5)
    assert await manager.reserve() == 4  # the gap is filled before any new nonce
    assert await manager.reserve() == 6
    manager.release(6)
    manager.release(3)
    assert await manager.reserve() == 3  # lowest first
    assert await manager.reserve() == 6
    assert await manager.reserve() == 7


async def test_release_needs_a_reservation() -> None:
    manager = NonceManager()
    await manager.sync(chain_nonce(0), None)
    with pytest.raises(ValueError, match="not reserved"):
        manager.release(0)
    nonce = await manager.reserve()
    manager.release(nonce)
    with pytest.raises(ValueError, match="not reserved"):
        manager.release(nonce)


async def test_reserve_before_sync_fails() -> None:
    with pytest.raises(RuntimeError, match="before sync"):
        await NonceManager().reserve()


async def test_confirm_ends_the_reservation() -> None:
    manager = NonceManager()
    await manager.sync(chain_nonce(0), None)
    first = await manager.reserve()
    second = await manager.reserve()
    manager.confirm(first)
    assert manager.in_flight == (second,)
    assert manager.highest_confirmed == first
    with pytest.raises(ValueError):
        manager.release(first)
    # a nonce found in the journal after a restart, mined by the old process
    manager.confirm(5)
    assert manager.highest_confirmed == 5
    assert await manager.reserve() == 6


async def test_resync_keeps_unused_released_nonces_below_next() -> None:
    manager = NonceManager()
    await manager.sync(chain_nonce(0), None)
    for _ in range(4):
        await manager.reserve()
    manager.release(1)
    # the chain saw 0; the journal holds up to 3: nonce 1 is still a gap to fill
    assert await manager.sync(chain_nonce(1), 3) == 4
    assert manager.in_flight == ()
    assert await manager.reserve() == 1
    assert await manager.reserve() == 4
    # once the chain has used a released nonce it is not handed out again
    manager.release(4)
    assert await manager.sync(chain_nonce(5), 3) == 5
    assert await manager.reserve() == 5


async def test_sync_rejects_negative_values() -> None:
    with pytest.raises(ValueError):
        await NonceManager().sync(chain_nonce(-1), None)
    with pytest.raises(ValueError):
        await NonceManager().sync(chain_nonce(0), -2)


async def test_skip_to_never_hands_out_a_used_nonce_again() -> None:
    """The node said "nonce too low": nothing below the chain's nonce is handed out again,
    released ones included, while reservations in flight keep theirs."""
    manager = NonceManager("0xabc")

    async def pending() -> int:
        return 5

    await manager.sync(pending, None)
    held = await manager.reserve()  # 5, in flight
    freed = await manager.reserve()  # 6
    manager.release(freed)
    await manager.skip_to(9)
    assert await manager.reserve() == 9
    assert held in manager.in_flight
    await manager.skip_to(3)  # an older answer never moves it back
    assert await manager.reserve() == 10


async def test_reissue_gives_back_a_nonce_whose_bundle_expired() -> None:
    manager = NonceManager()

    async def chain() -> int:
        return 5

    await manager.sync(chain, journal_max_nonce=5)  # nonce 5 journaled by an earlier run
    assert manager.next_nonce == 6
    manager.reissue(5)  # its bundles expired unincluded: 5 is handed out again first
    assert await manager.reserve() == 5
    assert await manager.reserve() == 6
    manager.confirm(6)
    manager.reissue(6)  # mined: never handed out again
    manager.reissue(9)  # never handed out: nothing to give back
    assert await manager.reserve() == 7

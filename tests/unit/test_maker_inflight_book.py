"""InFlight (strategies/maker/inflight.py): the room of the keeper's barks in flight is
taken, per ilk (dirt) and in total (Dirt), until the vault's art moves or it expires."""

from __future__ import annotations

from strategies.maker.book import Urn, VaultBook
from strategies.maker.inflight import INFLIGHT_BLOCKS, InFlight
from strategies.maker.math import DogIlk


def test_room_is_taken_until_the_bark_lands_or_expires() -> None:
    book = VaultBook()
    book.urns[("ETH-B", "0xb")] = Urn(10, 7)
    book.urns[("ETH-C", "0xc")] = Urn(20, 9)
    flying = InFlight()
    flying.forget_landed(book, 100)
    flying.sent("ETH-B", "0xb", art=7, tab=30)
    flying.sent("ETH-C", "0xc", art=9, tab=5)
    dog = DogIlk(chop=1, hole=100, dirt=1, Hole=1000, Dirt=2)
    assert flying.taken(dog, "ETH-B", added=4) == DogIlk(1, 100, 31, 1000, 41)
    assert ("ETH-B", "0xb") in flying and ("ETH-B", "0xc") not in flying
    book.urns[("ETH-B", "0xb")] = Urn(0, 0)  # barked: its Bark (and the Vat grab) mined
    flying.forget_landed(book, 101)
    assert flying.dirt() == 5 and flying.dirt("ETH-B") == 0
    flying.forget_landed(book, 100 + INFLIGHT_BLOCKS)
    assert flying.dirt("ETH-C") == 5
    flying.forget_landed(book, 101 + INFLIGHT_BLOCKS)  # never seen mined: dropped
    assert not flying.barks

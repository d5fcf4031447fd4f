"""Maker's mirrored arithmetic and the Vat-note decoding, on cases worked out by hand from
the dss sources (the parity tests check the same functions against the chain)."""

from __future__ import annotations

from eth_abi.abi import encode

from keeper.types import Event
from strategies.maker.book import FOLD, FORK, FROB, GRAB, VaultBook, ilk_word
from strategies.maker.math import (
    RAD,
    RAY,
    WAD,
    BarkPlan,
    Calc,
    ClipParams,
    DogIlk,
    bark_plan,
    linear_price,
    rpow,
    stairstep_price,
    status,
    take_amounts,
)

URN = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20


def test_rpow_exact_powers_and_edges() -> None:
    assert rpow(2 * RAY, 10, RAY) == 1024 * RAY
    assert rpow(RAY // 2, 3, RAY) == RAY // 8
    assert rpow(5 * RAY, 0, RAY) == RAY and rpow(0, 7, RAY) == 0
    # 0.99^2 = 0.9801 exactly in ray; the half-up rounding only shows past 27 digits.
    assert rpow(99 * RAY // 100, 2, RAY) == 9801 * RAY // 10_000


def test_calculators() -> None:
    top = 3000 * RAY
    assert linear_price(top, 0, 3600) == top
    assert linear_price(top, 1800, 3600) == 1500 * RAY
    assert linear_price(top, 3600, 3600) == 0
    cut = 99 * RAY // 100
    assert stairstep_price(top, 19, 10, cut) == 2970 * RAY  # one step of 10 s
    assert stairstep_price(top, 20, 10, cut) == 3000 * 9801 * RAY // 10_000


def test_status_needs_redo_on_tail_or_cusp() -> None:
    params = ClipParams(tail=1000, cusp=RAY // 2, chip=0, tip=0, chost=0,
                        calc=Calc("linear", tau=2000))
    assert status(params, 0, 100 * RAY, 900) == (False, 55 * RAY)
    assert status(params, 0, 100 * RAY, 1001)[0]  # past tail
    assert status(params, 0, 100 * RAY, 1000) == (False, 50 * RAY)  # at cusp, not below


def test_take_amounts_caps_and_chost() -> None:
    price = 2 * RAY
    # Buying more than the tab: owe is the tab, the slice what it buys.
    assert take_amounts(100 * RAD, 80 * WAD, 80 * WAD, price, 10 * RAD) == (50 * WAD, 100 * RAD)
    # A partial take leaving less than chost is cut to leave exactly chost.
    assert take_amounts(100 * RAD, 80 * WAD, 48 * WAD, price, 10 * RAD) == (45 * WAD, 90 * RAD)
    # At or under chost only the whole lot may be bought.
    assert take_amounts(10 * RAD, 80 * WAD, 1 * WAD, price, 10 * RAD) is None
    assert take_amounts(10 * RAD, 5 * WAD, 5 * WAD, price, 10 * RAD) == (5 * WAD, 10 * RAD)


def test_bark_plan_limits_and_dust() -> None:
    rate, spot, dust = RAY, 1 * RAY, 100 * RAD
    roomy = DogIlk(chop=WAD, hole=10_000 * RAD, dirt=0, Hole=10_000 * RAD, Dirt=0)
    assert bark_plan(1000 * WAD, 1000 * WAD, rate, spot, dust=dust, dog=roomy) == (
        "Dog/not-unsafe")
    assert bark_plan(900 * WAD, 1000 * WAD, rate, spot, dust=dust, dog=roomy) == BarkPlan(
        dart=1000 * WAD, dink=900 * WAD, tab=1000 * RAD)
    full = DogIlk(chop=WAD, hole=500 * RAD, dirt=500 * RAD, Hole=10_000 * RAD, Dirt=0)
    assert bark_plan(900 * WAD, 1000 * WAD, rate, spot, dust=dust, dog=full) == (
        "Dog/liquidation-limit-hit")
    # Room for 50 DAI: a partial auction of 50 would be under dust.
    small = DogIlk(chop=WAD, hole=550 * RAD, dirt=500 * RAD, Hole=10_000 * RAD, Dirt=0)
    assert bark_plan(900 * WAD, 1000 * WAD, rate, spot, dust=dust, dog=small) == (
        "Dog/dusty-auction-from-partial-liquidation")
    # Room for 950 of 1000: the 50 left would be dust, so the whole vault goes.
    most = DogIlk(chop=WAD, hole=1450 * RAD, dirt=500 * RAD, Hole=10_000 * RAD, Dirt=0)
    plan = bark_plan(900 * WAD, 1000 * WAD, rate, spot, dust=dust, dog=most)
    assert isinstance(plan, BarkPlan) and plan.dart == 1000 * WAD


def _note(topic0: str, args: list[tuple[str, object]]) -> Event:
    """A Vat note as dss's `note` modifier logs it: topics = selector and the first three
    arguments, data = ABI bytes of the first 224 bytes of calldata."""
    types, values = [t for t, _ in args], [v for _, v in args]
    calldata = bytes.fromhex(topic0[2:10]) + encode(types, values)
    payload = calldata[:224].ljust(224, b"\0")
    data = encode(["uint256", "uint256"], [32, 224]) + payload
    words = ["0x" + w.hex() for w in (encode([t], [v]) for t, v in args[:3])]
    return Event(address="0xvat", topics=(topic0, *words), data="0x" + data.hex(),
                 block_number=1, block_hash="0x", transaction_hash="0x",
                 transaction_index=0, log_index=0)


def test_book_follows_frob_fork_grab_and_fold() -> None:
    ilk = bytes.fromhex(ilk_word("ETH-B")[2:])
    book = VaultBook()
    book.apply(_note(FROB, [("bytes32", ilk), ("address", URN), ("address", URN),
                            ("address", URN), ("int256", 10 * WAD), ("int256", 500 * WAD)]))
    book.apply(_note(FORK, [("bytes32", ilk), ("address", URN), ("address", OTHER),
                            ("int256", 4 * WAD), ("int256", 100 * WAD)]))
    book.apply(_note(GRAB, [("bytes32", ilk), ("address", URN), ("address", OTHER),
                            ("address", OTHER), ("int256", -6 * WAD), ("int256", -400 * WAD)]))
    book.apply(_note(FOLD, [("bytes32", ilk), ("address", OTHER), ("int256", -RAY // 100)]))
    assert book.urns == {("ETH-B", OTHER): book.urn("ETH-B", OTHER)}
    assert (book.urn("ETH-B", OTHER).ink, book.urn("ETH-B", OTHER).art) == (4 * WAD, 100 * WAD)
    assert book.ilks["ETH-B"].Art == 100 * WAD
    assert book.ilks["ETH-B"].rate == -RAY // 100  # no init here: fold's signed delta alone

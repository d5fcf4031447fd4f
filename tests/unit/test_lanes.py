"""Nonce lanes (keeper/execution/lanes.py) and their journal-backed nonce streams
(keeper/execution/bundles_journal.py): each lane's highest journaled nonce is its own, the
main account's also counts its public transactions, a dropped transaction's nonce counts
for none; a lane is taken by one transaction at a time, and lane 0 alone holds tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account

from keeper.chain.http import HttpRpc
from keeper.execution.bundles_journal import BundleBook
from keeper.execution.fees import FeePolicy
from keeper.execution.journal import Journal, Signed
from keeper.execution.lanes import Lane, Lanes
from keeper.execution.nonces import NonceManager
from keeper.execution.sender import Sender
from keeper.types import Opportunity
from tests.factories import candidate

MAIN, LANE = Account.create(), Account.create()


def _opp(n: int) -> Opportunity:
    return Opportunity(
        strategy="aave_v3", key=f"k{n}", account="0x" + f"{n:040x}", collateral="0x" + "c0" * 20,
        debt="0x" + "d0" * 20, debt_to_cover=1, collateral_received=1, gross_value=1,
        slippage=0, gas_limit=1, gas_cost=0, net_profit=1, quote_token="0x" + "e0" * 20,
        health_factor=1, block=1, candidate=candidate())


def test_each_lane_has_its_own_journaled_nonce_stream(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        book = BundleBook(journal)
        for n, (sender, nonce) in enumerate([(MAIN, 7), (LANE, 2), (LANE, 3)]):
            assert journal.claim(_opp(n), 1)
            book.record_signed(Signed(f"k{n}", nonce, f"0x{n:064x}", "0x02", 1, 1),
                               sender=sender.address, first_block=5, last_block=7)
        assert journal.claim(_opp(9), 1)  # a public transaction of the main account
        journal.record_signed("k9", 8, "0x" + "99" * 32, "0x02", 1, 1)
        assert book.max_nonce(LANE.address) == 3
        assert book.max_nonce(MAIN.address, main=True) == 8
        assert book.max_nonce(MAIN.address) == 7  # its bundled ones only
        journal.mark_dropped("k2", f"0x{2:064x}")  # nonce 3 expired unincluded
        assert book.max_nonce(LANE.address) == 2
        assert sorted(t.key for t in book.live()) == ["k0", "k1"]  # k9 is public


def test_a_lane_holds_one_transaction_and_lane_zero_the_tokens(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        chain = HttpRpc("http://127.0.0.1:1")
        fees = FeePolicy(10, 1)
        lanes = Lanes([Lane(i, a, Sender(chain, a, journal, fees, NonceManager()))
                       for i, a in enumerate((MAIN, LANE))])
        first = lanes.take("a", own_tokens=True)
        assert first is not None and first.index == 0
        assert lanes.take("b", own_tokens=True) is None  # only lane 0 holds the tokens
        second = lanes.take("c", own_tokens=False)
        assert second is not None and second.index == 1 and lanes.free == 0
        assert lanes.take("d", own_tokens=False) is None
        first.holder = None
        assert lanes.by_address(MAIN.address.upper().replace("0X", "0x")) is first
        with pytest.raises(ValueError, match="its own account"):
            Lanes([first, Lane(1, MAIN, first.sender)])


async def test_flash_liquidations_take_lane_zero_last_and_a_lane_asked_for(
        tmp_path: Path) -> None:
    third = Account.create()
    with Journal(tmp_path / "j.sqlite") as journal:
        chain = HttpRpc("http://127.0.0.1:1")
        lanes = Lanes([Lane(i, a, Sender(chain, a, journal, FeePolicy(10, 1), NonceManager()))
                       for i, a in enumerate((MAIN, LANE, third))])
        assert [lane.index for lane in lanes.order(own_tokens=False)] == [1, 2, 0]
        # Asked for by address (the lane it was signed on ahead), when free.
        asked = lanes.take("a", own_tokens=False, prefer=third.address.lower())
        assert asked is not None and asked.index == 2
        # Lanes kept for others' signatures ahead are taken only when nothing else is free.
        spare = {LANE.address.lower()}
        other = lanes.take("b", own_tokens=False, spare=spare)
        assert other is not None and other.index == 0
        last = lanes.take("c", own_tokens=False, spare=spare)
        assert last is not None and last.index == 1 and lanes.free == 0


async def test_a_lanes_upcoming_nonce_is_the_one_it_hands_out_next(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        nonces = NonceManager()
        lane = Lane(0, MAIN, Sender(HttpRpc("http://127.0.0.1:1"), MAIN, journal,
                                    FeePolicy(10, 1), nonces))
        assert lane.upcoming is None  # not synced yet

        async def chain_nonce() -> int:
            return 5

        await nonces.sync(chain_nonce, None)
        assert lane.upcoming == 5
        first, second = await nonces.reserve(), await nonces.reserve()
        assert lane.upcoming == 7
        nonces.reissue(first)  # a bundle that can no longer land gives its nonce back
        assert lane.upcoming == first == await nonces.reserve()
        assert second == 6


def test_lane_zero_joins_only_the_bundle_it_holds(tmp_path: Path) -> None:
    """Lane 0 holding transactions of the bundle being built (`join`) takes the next one
    of its own tokens; holding another bundle's, or one being signed, it does not. The
    lane is free once each transaction it held is let go; several held are shared."""
    with Journal(tmp_path / "j.sqlite") as journal:
        chain = HttpRpc("http://127.0.0.1:1")
        lanes = Lanes([Lane(i, a, Sender(chain, a, journal, FeePolicy(10, 1), NonceManager()))
                       for i, a in enumerate((MAIN, LANE))])
        zero = lanes.take("", own_tokens=True)
        assert zero is not None
        assert lanes.take("", own_tokens=True, join={"0xa"}) is None  # still being signed
        zero.hold("0xa")
        assert zero.shared == set()  # alone in its bundle
        assert lanes.take("", own_tokens=True, join={"0xb"}) is None  # another bundle's
        assert lanes.take("", own_tokens=False, join={"0xa"}) is lanes.lanes[1]  # flash
        assert lanes.take("", own_tokens=True, join={"0xa"}) is zero
        zero.hold("0xb")
        assert zero.held == zero.shared == {"0xa", "0xb"} and zero.holder is not None
        zero.let_go("0xa")
        assert zero.holder == "0xb" and zero.shared == {"0xb"}
        zero.let_go("0xb")
        assert zero.holder is None and not zero.held and not zero.shared

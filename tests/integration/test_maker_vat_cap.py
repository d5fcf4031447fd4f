"""`max_vat_dai` is one running total of the DAI the Maker strategy moves into the Vat.

On the Maker devnet after a crash to $1,700: ETH-B's unsafe vaults are barked (Dog.bark,
sent directly) and their auctions run 10 minutes, and ETH-A's vaults are bitable. The
strategy's candidates at the head, configured with Cat + Flipper too: with a cap that
leaves room for everything, every running auction is offered a take of its whole tab and
the Flipper side bites; with a cap of the first takes' DAI only, the takes offered add up
to no more than the cap (each later one shrinks to what is left, or is not offered), the
Flipper side is told what the takes hold, and with nothing left it offers no bite.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from web3 import Web3

from keeper.chain.follower import block_ref
from keeper.chain.http import HttpRpc
from keeper.devnet import maker as mcd
from keeper.devnet.crash import CrashStep, apply_step
from keeper.strategy import StrategyContext
from keeper.types import Candidate
from strategies.maker import MakerStrategy
from strategies.maker.book import ilk_word
from strategies.maker.math import RAY, WAD
from tests.conftest import Devnet
from tests.integration.maker_devnet import maker_devnet, rolled_back
from tests.integration.maker_helpers import maker_config


@pytest.fixture(scope="module")
def maker_session() -> Iterator[Devnet]:
    with maker_devnet() as devnet:
        yield devnet


@pytest.fixture
def maker(maker_session: Devnet) -> Iterator[Devnet]:
    with rolled_back(maker_session):
        yield maker_session


async def _candidates(devnet: Devnet, cap: Decimal) -> tuple[MakerStrategy, list[Candidate]]:
    info = devnet.info.maker
    assert info is not None and info.keeper_contract is not None
    ilks = {n: {"join": i.join} for n, i in info.ilks.items()}
    config = maker_config(devnet, info.keeper_contract, ilks=ilks, max_vat_dai=cap,
                          flip_exit_pair=info.pairs["MCD_WETH/MCD_DAI"])
    strategy = MakerStrategy(config, StrategyContext(chain_id=devnet.info.chain_id,
                                                     liquidator=devnet.info.accounts.liquidator))
    chain = await HttpRpc.open(devnet.info.rpc_url, timeout=60)
    try:
        head = block_ref(await chain.call("eth_getBlockByNumber", ["latest", False]))
        await strategy.sync(chain, head)
        return strategy, list(strategy.candidates(head))
    finally:
        await chain.aclose()


def _takes(candidates: list[Candidate]) -> list[Candidate]:
    return [c for c in candidates if ":take:" in c.key]


def _bites(candidates: list[Candidate]) -> list[Candidate]:
    return [c for c in candidates if ":flip:bite:" in c.key]


async def test_takes_and_bids_share_one_cap(maker: Devnet) -> None:
    info = maker.info.maker
    assert info is not None
    apply_step(maker.w3, maker.info, CrashStep(0, "t", {"WETH": Decimal("1700")}, None))
    vat = mcd.contract(maker.w3, "Vat", info.vat)
    dog = mcd.contract(maker.w3, "Dog", info.dog)
    sender = Web3.to_checksum_address(maker.info.accounts.liquidator)
    ilk = bytes.fromhex(ilk_word("ETH-B")[2:])
    rate, spot = vat.functions.ilks(ilk).call()[1:3]
    barked = 0
    for vault in (v for v in info.vaults if v.ilk == "ETH-B"):
        ink, art = vat.functions.urns(ilk, vault.urn).call()
        if ink * spot < art * rate:
            tx = dog.functions.bark(ilk, Web3.to_checksum_address(vault.urn), sender)
            assert maker.w3.eth.wait_for_transaction_receipt(
                tx.transact({"from": sender}), timeout=30)["status"] == 1
            barked += 1
    assert barked >= 2, barked
    maker.rpc("evm_increaseTime", 600)
    maker.rpc("evm_mine")

    roomy, everything = await _candidates(maker, Decimal(10**9))
    takes = _takes(everything)
    assert len(takes) == barked, [c.key for c in everything]
    assert _bites(everything)
    assert roomy.flip is not None and roomy.flip.taken == sum(c.max_repay for c in takes) * RAY

    first = takes[0].max_repay
    cap = first + takes[1].max_repay // 2  # the first take whole, half the second
    capped, some = await _candidates(maker, Decimal(cap) / WAD)
    offered = _takes(some)
    assert sum(c.max_repay for c in offered) <= cap
    assert offered[0].max_repay == first and offered[1].max_repay == cap - first
    assert len(offered) == 2  # nothing left for a third
    assert capped.flip is not None and capped.flip.taken == cap * RAY
    assert not _bites(some)  # the takes hold the whole cap: no DAI for a first bid

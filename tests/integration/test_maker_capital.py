"""The Maker strategy's capital: the DAI cap across takes and bids, and takes that need none.

On the Maker devnet after a crash to $1,700: ETH-B's unsafe vaults are barked (Dog.bark,
sent directly by the liquidator) and their auctions run 10 minutes, and ETH-A's vaults
are bitable.

- `max_vat_dai` is one running total of the DAI moved into the Vat. The strategy's
  candidates at the head, configured with Cat + Flipper too: with a cap that leaves room
  for everything, every running auction is offered a take of its whole tab and the Flipper
  side bites; with a cap of the first takes' DAI only, the takes offered add up to no more
  than the cap (each later one shrinks to what is left, or is not offered), the Flipper
  side is told what the takes hold, and with nothing left it offers no bite.
- A clipperCall take (MakerKeeper.takeAndSell) pays from its own sale (the candidate is not
  paid from the wallet: `Candidate.from_wallet`): with no DAI at all in the account (and no
  kick of its own paying it any), the keeper engine still takes every ETH-B auction that
  way, at a profit, none reverting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

from web3 import Web3

from keeper.chain.follower import block_ref
from keeper.chain.http import HttpRpc
from keeper.devnet import maker as mcd
from keeper.devnet.crash import CrashStep, apply_step
from keeper.execution.fees import FeePolicy
from keeper.execution.journal import Journal
from keeper.strategy import StrategyContext
from keeper.types import Candidate, Outcome
from strategies.maker import MakerStrategy
from strategies.maker.book import ilk_word
from strategies.maker.math import RAY, WAD
from tests.conftest import Devnet
from tests.integration.helpers import devnet_keeper
from tests.integration.maker_helpers import maker_config

GWEI = 10**9


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


def _bark_eth_b(maker: Devnet) -> int:
    """The crash to $1,700, Dog.bark of every unsafe ETH-B vault by the liquidator, and 10
    minutes of the auctions; how many were barked."""
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
    return barked


async def test_takes_and_bids_share_one_cap(maker: Devnet) -> None:
    barked = _bark_eth_b(maker)
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


async def test_a_clipper_call_take_needs_no_dai_on_hand(maker: Devnet, tmp_path: Path) -> None:
    info = maker.info.maker
    assert info is not None and info.keeper_contract is not None
    barked = _bark_eth_b(maker)
    dai = mcd.contract(maker.w3, "Dai", info.dai)
    owner = Web3.to_checksum_address(maker.info.accounts.liquidator)
    held = dai.functions.balanceOf(owner).call()
    tx = dai.functions.transfer(maker.info.accounts.deployer, held)
    assert maker.w3.eth.wait_for_transaction_receipt(
        tx.transact({"from": owner}), timeout=30)["status"] == 1
    # ETH-B only: its vaults are barked already, so no kick of the keeper pays it DAI.
    config = maker_config(maker, info.keeper_contract,
                          ilks={"ETH-B": {"join": info.ilks["ETH-B"].join}},
                          clip_exit_pair=info.pairs["MCD_WETH/MCD_DAI"])
    journal = Journal(tmp_path / "j.sqlite")
    context = StrategyContext(chain_id=maker.info.chain_id, liquidator=owner)
    keeper = await devnet_keeper(maker.info, journal, MakerStrategy(config, context),
                                 fees=FeePolicy(3_000 * GWEI, GWEI), min_profit=10**15)
    try:
        stop = asyncio.Event()
        task = asyncio.create_task(keeper.run(stop))
        try:
            deadline = time.monotonic() + 60
            while _confirmed_sells(keeper.outcomes) < barked:
                assert time.monotonic() < deadline, list(keeper.outcomes)
                # A minute of the auctions a block: their prices fall below the pair's.
                await asyncio.to_thread(maker.rpc, "evm_increaseTime", 60)
                await asyncio.to_thread(maker.rpc, "evm_mine")
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await task
        outcomes = list(keeper.outcomes)
        assert not [o for o in outcomes if o.status in ("reverted", "error")], outcomes
        # Nothing paid the account DAI before the sales: no kick, no reset (Clipper.redo).
        assert all(":sell:" in o.key for o in outcomes), [o.key for o in outcomes]
        sells = [o for o in outcomes if o.status == "confirmed" and ":sell:" in o.key]
        assert all(o.realized_profit > 0 for o in sells), sells
        assert dai.functions.balanceOf(owner).call() > 0  # each sale's surplus came back
    finally:
        await keeper.aclose()
        journal.close()


def _confirmed_sells(outcomes: Iterable[Outcome]) -> int:
    """The ETH-B auctions taken whole or in part by a confirmed clipperCall take."""
    return len({o.key.split(":")[6] for o in outcomes
                if o.status == "confirmed" and ":sell:" in o.key})

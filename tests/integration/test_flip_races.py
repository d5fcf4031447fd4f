"""The keeper's Flipper bids where the turn-by-turn rival test does not go: an auction that
ended unbid (tick, then bid, in one MakerKeeper call) and a bid a rival outruns in the same
block (a race lost, never a revert for the breaker). On the Maker devnet, through the whole
engine (tests/integration/flip_helpers.py's `flip_keeper`)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_abi.abi import encode
from web3 import Web3
from web3.contract import Contract

from keeper.devnet import maker as mcd
from keeper.devnet.maker_seed import WAD, follow_price
from keeper.execution.journal import Journal
from strategies.maker import cat_bite
from strategies.maker import flip_rules as rules
from strategies.maker.flip import FlipIntent
from strategies.maker.flip_book import SELECTOR
from tests.conftest import Devnet
from tests.integration.flip_helpers import (
    ETH_A,
    chain_bids,
    file_cat_box,
    flip_keeper,
    flipper,
    fund_bidder,
    keeper_turn,
    send,
)
from tests.integration.helpers import fresh_accounts
from tests.integration.maker_helpers import keeper_contract


def bitten_elsewhere(maker: Devnet, biter: str) -> tuple[Contract, int]:
    """Maker's price at $1,700 and the ETH-A vault opened at 1.02 bitten by `biter`, then the
    Cat's box set to 0 (the keeper only bids in these tests): the Flipper and the auction."""
    info = maker.info.maker
    assert info is not None
    follow_price(maker.w3, info, Decimal("1700"))
    urn = next(v.urn for v in info.vaults if v.ilk == ETH_A and v.opened_at == 1.02)
    call = cat_bite.bite_call(info.cat, ETH_A, urn)
    send(maker, biter, call.to, call.data)
    file_cat_box(maker, 0)
    flip = flipper(maker)
    return flip, int(flip.functions.kicks().call())


async def test_an_auction_nobody_bid_on_is_ticked_and_bid(maker: Devnet, tmp_path: Path) -> None:
    """An auction kicked by someone else and never bid on, past `tau`: the keeper's one send
    ticks it and bids in the same MakerKeeper call (Flipper.tick then Flipper.tend)."""
    info = maker.info.maker
    assert info is not None
    (biter,) = fresh_accounts(maker, 1)
    flip, auction_id = await asyncio.to_thread(bitten_elsewhere, maker, biter)
    tau = int(flip.functions.tau().call())
    maker.rpc("evm_increaseTime", tau + 10)
    maker.rpc("evm_mine")
    stale = chain_bids(maker, [auction_id])[auction_id]
    now = int(maker.w3.eth.get_block("latest")["timestamp"])
    assert rules.tick_refusal(stale, now) is None and stale.tic == 0
    contract = await asyncio.to_thread(keeper_contract, maker)
    journal = Journal(tmp_path / "journal.sqlite")
    keeper, side = await flip_keeper(maker, journal, contract)
    try:
        maker.rpc("evm_mine")  # a head after the one it synced at
        sent = await keeper_turn(keeper)
        (tend,) = sent
        intent = tend.candidate.private
        assert isinstance(intent, FlipIntent) and intent.kind == "tend", tend
        assert tend.key.endswith(f":flip:{flip.address.lower()}:{auction_id}:tend:{stale.lot}:"
                                 f"{intent.bid}:after-tick:{stale.end}"), tend.key
        (outcome,) = keeper.outcomes.since(0)
        assert outcome.status == "confirmed", outcome
        mined = maker.w3.eth.get_block(outcome.block)
        after = chain_bids(maker, [auction_id])[auction_id]
        params = next(iter(side.ilks.values())).book.params
        assert after.guy == contract.lower() and after.lot == stale.lot
        assert (after.end, after.tic) == (mined["timestamp"] + params.tau,
                                          mined["timestamp"] + params.ttl)
        assert after.bid == intent.bid > 0
        assert side.forbidden and all(r.startswith("Cat/liquidation-limit-hit")
                                      for r in side.forbidden.values())
    finally:
        await keeper.aclose()
        journal.close()


async def test_a_bid_the_rival_outruns_is_a_lost_race(maker: Devnet, tmp_path: Path) -> None:
    """Not turn by turn: the rival sees the keeper's bid in the pool and sends the same
    bid with a higher tip, mined first in the same block. The keeper's bid reverts, and
    the executor calls it a race lost (valid where it was ranked), not a revert."""
    info = maker.info.maker
    assert info is not None
    (rival,) = fresh_accounts(maker, 1)
    rival = Web3.to_checksum_address(rival)
    await asyncio.to_thread(fund_bidder, maker, rival, 50_000 * WAD)
    flip, auction_id = await asyncio.to_thread(bitten_elsewhere, maker, rival)
    contract = await asyncio.to_thread(keeper_contract, maker)
    account = maker.info.accounts.liquidator.lower()
    dai = mcd.contract(maker.w3, "Dai", info.dai)  # approved now: the bid is its first send
    await asyncio.to_thread(send, maker, account, info.dai,
                            dai.encode_abi("approve", [contract, 2**256 - 1]))
    journal = Journal(tmp_path / "journal.sqlite")
    keeper, _side = await flip_keeper(maker, journal, contract)
    maker.rpc("evm_setAutomine", False)
    try:
        maker.rpc("evm_mine")  # a head after the one it synced at
        turn = asyncio.create_task(keeper_turn(keeper))

        def pending_bid() -> dict[str, Any] | None:
            block = maker.rpc("eth_getBlockByNumber", "pending", True)
            assert isinstance(block, dict)
            return next((t for t in block["transactions"] if t["from"].lower() == account
                         and str(t["to"]).lower() == contract.lower()), None)

        deadline = asyncio.get_running_loop().time() + 60
        while (mine := await asyncio.to_thread(pending_bid)) is None:
            assert asyncio.get_running_loop().time() < deadline, "the keeper sent no bid"
            await asyncio.sleep(0.05)
        auction = chain_bids(maker, [auction_id])[auction_id]
        data = SELECTOR["tend"] + encode(["uint256"] * 3, [auction_id, auction.lot,
                                                           auction.tab]).hex()
        tip = int(mine.get("maxPriorityFeePerGas", mine["gasPrice"]), 16) * 10
        maker.rpc("eth_sendTransaction", {
            "from": rival, "to": flip.address, "data": data, "gas": hex(300_000),
            "maxPriorityFeePerGas": hex(tip), "maxFeePerGas": hex(tip * 100)})
        maker.rpc("evm_mine")
        sent = await asyncio.wait_for(turn, 60)
        assert sent, "the keeper ranked no bid"
        (outcome,) = keeper.outcomes.since(0)
        assert outcome.status == "lost", outcome
        after = chain_bids(maker, [auction_id])[auction_id]
        assert after.guy == rival.lower() and after.bid == auction.tab
    finally:
        maker.rpc("evm_setAutomine", True)
        await keeper.aclose()
        journal.close()


async def test_a_lot_someone_else_dealt_to_the_keeper_is_exited(maker: Devnet,
                                                                tmp_path: Path) -> None:
    """The keeper wins an auction but the rival calls Flipper.deal first (anyone may): the
    lot lands in MakerKeeper's Vat balance; the keeper's next send exits it to the account
    (MakerKeeper.exitGem), mirrored from the Vat's flux and slip notes."""
    info = maker.info.maker
    assert info is not None
    (rival,) = fresh_accounts(maker, 1)
    flip, auction_id = await asyncio.to_thread(bitten_elsewhere, maker, rival)
    contract = await asyncio.to_thread(keeper_contract, maker)
    journal = Journal(tmp_path / "journal.sqlite")
    keeper, side = await flip_keeper(maker, journal, contract)
    weth = mcd.contract(maker.w3, "WETH9", info.weth)
    account = Web3.to_checksum_address(maker.info.accounts.liquidator)
    try:
        maker.rpc("evm_mine")
        assert [o.candidate.private.kind for o in await keeper_turn(keeper)
                if isinstance(o.candidate.private, FlipIntent)] == ["tend"]
        won = chain_bids(maker, [auction_id])[auction_id]
        assert won.guy == contract.lower()
        maker.rpc("evm_increaseTime", int(flip.functions.ttl().call()) + 10)
        await asyncio.to_thread(send, maker, rival, flip.address,
                                SELECTOR["deal"] + encode(["uint256"], [auction_id]).hex())
        before = int(weth.functions.balanceOf(account).call())
        sent = await keeper_turn(keeper)
        kinds = [o.candidate.private.kind for o in sent
                 if isinstance(o.candidate.private, FlipIntent)]
        assert kinds == ["exit"], kinds
        assert int(weth.functions.balanceOf(account).call()) - before == won.lot
        exited = keeper.outcomes.since(1)
        assert [o.status for o in exited] == ["confirmed"] and exited[0].realized_profit > 0
        maker.rpc("evm_mine")
        assert await keeper_turn(keeper) == [] and side.held.gems[ETH_A] == 0  # once
    finally:
        await keeper.aclose()
        journal.close()

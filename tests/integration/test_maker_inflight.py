"""A bark in flight holds its Dog room: the next step offers no bark beyond what is left.

On the Maker devnet after a crash to $1,700, the Dog's global `Hole` is set (Dog.file, as
the pause proxy) to leave room for exactly the first ETH-B bark the strategy plans. The
keeper builds and sends that bark with automine off, so it is in flight (sent, not mined)
when the strategy is asked for candidates again: it must offer neither that bark again nor
any other (ETH-B's next, or ETH-C's, which shares Hole), since the one in flight takes all
the room. Then the block is mined: the bark succeeds, and the strategy, fed the block,
forgets it (its vault's art moved) and sees Hole full from the book.
"""

from __future__ import annotations

from decimal import Decimal

from eth_typing import HexStr
from web3 import Web3

from keeper.chain.follower import block_ref
from keeper.chain.http import HttpRpc
from keeper.devnet import maker as mcd
from keeper.devnet.crash import CrashStep, apply_step
from keeper.devnet.deployer import rpc
from strategies.maker import math
from strategies.maker.strategy import MakerAction, MakerStrategy
from tests.conftest import Devnet
from tests.integration.maker_helpers import feed, strategy


async def _synced(maker: Devnet, contract: str) -> MakerStrategy:
    mine = strategy(maker, contract)
    chain = await HttpRpc.open(maker.info.rpc_url, timeout=60)
    try:
        head = block_ref(await chain.call("eth_getBlockByNumber", ["latest", False]))
        await mine.sync(chain, head)
    finally:
        await chain.aclose()
    return mine


def _barks(mine: MakerStrategy) -> list[str]:
    head = mine.synced
    assert head is not None
    return [c.key for c in mine.candidates(head) if ":bark:" in c.key]


async def test_a_bark_in_flight_holds_its_room(maker: Devnet) -> None:
    info = maker.info.maker
    assert info is not None and info.keeper_contract is not None
    apply_step(maker.w3, maker.info, CrashStep(0, "t", {"WETH": Decimal("1700")}, None))
    mine = await _synced(maker, info.keeper_contract)
    assert mine.clips is not None
    state, dog = mine.book.ilks["ETH-B"], mine.clips.dog_ilk("ETH-B")
    unsafe = mine.book.unsafe("ETH-B")
    assert len(unsafe) >= 2 and mine.book.unsafe("ETH-C"), unsafe
    first = math.bark_plan(unsafe[0][1].ink, unsafe[0][1].art, state.rate, state.spot,
                           dust=state.dust, dog=dog)
    assert not isinstance(first, str), first
    proxy = Web3.to_checksum_address(info.pause_proxy)
    rpc(maker.w3, "anvil_impersonateAccount", proxy)
    rpc(maker.w3, "anvil_setBalance", proxy, hex(10**20))
    file = mcd.contract(maker.w3, "Dog", info.dog).get_function_by_signature(
        "file(bytes32,uint256)")(b"Hole".ljust(32, b"\0"), dog.Dirt + first.tab)
    assert maker.w3.eth.wait_for_transaction_receipt(
        file.transact({"from": proxy}), timeout=30)["status"] == 1
    rpc(maker.w3, "anvil_stopImpersonatingAccount", proxy)

    mine = await _synced(maker, info.keeper_contract)
    head = mine.synced
    assert head is not None
    offered = [c for c in mine.candidates(head) if ":bark:" in c.key]
    assert [c.key for c in offered] == [
        f"{maker.info.chain_id}:maker:{unsafe[0][0]}:bark:ETH-B:{unsafe[0][0]}:"
        f"{unsafe[0][1].ink}:{unsafe[0][1].art}"]
    action = offered[0].private
    assert isinstance(action, MakerAction) and action.tab == first.tab
    call = mine.build(offered[0], offered[0].max_repay)
    sender = Web3.to_checksum_address(maker.info.accounts.liquidator)
    rpc(maker.w3, "evm_setAutomine", False)
    try:
        sent = maker.w3.eth.send_transaction({
            "from": sender, "to": Web3.to_checksum_address(call.to), "data": HexStr(call.data),
            "gas": offered[0].gas_limit})
        # In flight: the same block's book, the next step. Nothing fits beside it (without
        # its room counted, ETH-B's next vault is offered: it would revert, limit hit).
        assert _barks(mine) == []
        rpc(maker.w3, "evm_mine")
    finally:
        rpc(maker.w3, "evm_setAutomine", True)
    receipt = maker.w3.eth.wait_for_transaction_receipt(sent, timeout=30)
    assert receipt["status"] == 1
    chain = await HttpRpc.open(maker.info.rpc_url, timeout=60)
    try:
        await feed(chain, mine, head.number + 1, receipt["blockNumber"])
        mined = block_ref(await chain.call("eth_getBlockByNumber", ["latest", False]))
    finally:
        await chain.aclose()
    assert mine.candidates(mined) is not None and not mine.inflight.barks
    assert [c.key for c in mine.candidates(mined) if ":bark:" in c.key] == []
    assert mine.forbidden[("ETH-B", unsafe[1][0])] == "Dog/liquidation-limit-hit"

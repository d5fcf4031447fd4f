"""Barks of one block land as planned in any order when the Dog's room binds.

On the Maker devnet after a crash to $1,700, ETH-C's `hole` is set (Dog.file, as the pause
proxy) to the first two unsafe vaults' whole tabs less half the second's: room for one
whole bark and a partial one (the global Hole raised so that ETH-C's own hole binds).
The strategy's ETH-C barks at the head are sent through the
keeper's MakerKeeper in the reverse of the order it planned them, each in its own block:
each one succeeds and leaves its vault with exactly the debt its plan (math.bark_plan, in
the strategy's order) left. Planning the partial bark beside the whole one would not: in
reverse order the partial one takes the whole one's room.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from web3 import Web3

from keeper.chain.follower import block_ref
from keeper.chain.http import HttpRpc
from keeper.devnet import maker as mcd
from keeper.devnet.crash import CrashStep, apply_step
from keeper.devnet.deployer import rpc
from keeper.devnet.maker_keeper import maker_keeper_artifact
from strategies.maker import math
from strategies.maker.book import ilk_word
from strategies.maker.strategy import MakerAction, MakerStrategy
from tests.conftest import Devnet
from tests.integration.maker_helpers import strategy


async def _synced(maker: Devnet, contract: str) -> MakerStrategy:
    mine = strategy(maker, contract)
    chain = await HttpRpc.open(maker.info.rpc_url, timeout=60)
    try:
        head = block_ref(await chain.call("eth_getBlockByNumber", ["latest", False]))
        await mine.sync(chain, head)
    finally:
        await chain.aclose()
    return mine


async def test_a_blocks_barks_land_as_planned_in_any_order(maker: Devnet) -> None:
    info = maker.info.maker
    assert info is not None and info.keeper_contract is not None
    apply_step(maker.w3, maker.info, CrashStep(0, "t", {"WETH": Decimal("1700")}, None))
    ilk = bytes.fromhex(ilk_word("ETH-C")[2:])
    mine = await _synced(maker, info.keeper_contract)
    assert mine.clips is not None
    state, dog = mine.book.ilks["ETH-C"], mine.clips.dog_ilk("ETH-C")
    unsafe = mine.book.unsafe("ETH-C")
    assert len(unsafe) >= 2, unsafe
    tabs = [v.art * state.rate * dog.chop // math.WAD for _u, v in unsafe[:2]]
    proxy = Web3.to_checksum_address(info.pause_proxy)
    rpc(maker.w3, "anvil_impersonateAccount", proxy)
    rpc(maker.w3, "anvil_setBalance", proxy, hex(10**20))
    dog_contract = mcd.contract(maker.w3, "Dog", info.dog)
    # The global Hole (10k DAI) out of the way: ETH-B's barks, planned first, would fill it.
    for file in (dog_contract.functions.file(ilk, b"hole".ljust(32, b"\0"),
                                             dog.dirt + tabs[0] + tabs[1] // 2),
                 dog_contract.get_function_by_signature("file(bytes32,uint256)")(
                     b"Hole".ljust(32, b"\0"), 10**60)):
        assert maker.w3.eth.wait_for_transaction_receipt(
            file.transact({"from": proxy}), timeout=30)["status"] == 1
    rpc(maker.w3, "anvil_stopImpersonatingAccount", proxy)

    mine = await _synced(maker, info.keeper_contract)
    assert mine.clips is not None
    dog = mine.clips.dog_ilk("ETH-C")
    head = mine.synced
    assert head is not None
    barks = [c for c in mine.candidates(head) if ":bark:ETH-C:" in c.key]
    assert barks
    # The debt each planned bark leaves, in the strategy's order.
    left: dict[str, int] = {}
    for candidate in barks:
        action = candidate.private
        assert isinstance(action, MakerAction)
        vault = mine.book.urn("ETH-C", action.urn)
        plan = math.bark_plan(vault.ink, vault.art, state.rate, state.spot, dust=state.dust,
                              dog=dog)
        assert not isinstance(plan, str), plan
        dog = replace(dog, dirt=dog.dirt + plan.tab, Dirt=dog.Dirt + plan.tab)
        left[action.urn] = vault.art - plan.dart
    keeper = maker.w3.eth.contract(address=Web3.to_checksum_address(info.keeper_contract),
                                   abi=maker_keeper_artifact().abi)
    vat = mcd.contract(maker.w3, "Vat", info.vat)
    sender = Web3.to_checksum_address(maker.info.accounts.liquidator)
    for urn in reversed(list(left)):
        tx = keeper.functions.bark(info.dog, ilk, Web3.to_checksum_address(urn))
        assert maker.w3.eth.wait_for_transaction_receipt(
            tx.transact({"from": sender}), timeout=30)["status"] == 1
    for urn, art in left.items():
        assert vat.functions.urns(ilk, Web3.to_checksum_address(urn)).call()[1] == art, urn

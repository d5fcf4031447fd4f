"""Helpers for the Flipper tests: bidders that act through plain JSON-RPC transactions, the
chain's view of an auction, a Flipper book followed block by block, and a keeper running the
`maker` strategy on ETH-A (Cat + Flipper) stepped one turn at a time.

A bidder is an unlocked anvil dev account: it gets Maker DAI from the liquidator, joins it
into the Vat and `hope`s the Flipper, then sends `tend`/`dent`/`deal`/`tick` itself with
`eth_sendTransaction` (never through the keeper's code).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from eth_typing import ChecksumAddress, HexStr
from web3 import Web3
from web3.contract import Contract

from keeper.chain.http import HttpRpc
from keeper.devnet import maker as mcd
from keeper.devnet.maker_seed import WAD, ilk_id
from keeper.execution.fees import FeePolicy
from keeper.execution.journal import Journal
from keeper.strategy import StrategyContext
from keeper.types import BlockRef, Event, Opportunity
from keeper.wiring import Keeper
from strategies.maker import MakerStrategy
from strategies.maker.flip import FlipSide
from strategies.maker.flip_book import FlipBook, bids_call, decode_bid
from strategies.maker.flip_rules import Bid
from tests.conftest import Devnet
from tests.integration.helpers import devnet_keeper, liquidator
from tests.integration.maker_helpers import maker_config

ETH_A = "ETH-A"
GWEI = 10**9


def flipper(devnet: Devnet) -> Contract:
    """The ETH-A Flipper."""
    assert devnet.info.maker is not None
    return mcd.contract(devnet.w3, "Flipper", devnet.info.maker.ilks[ETH_A].auction)


def vat(devnet: Devnet) -> Contract:
    assert devnet.info.maker is not None
    return mcd.contract(devnet.w3, "Vat", devnet.info.maker.vat)


def send(devnet: Devnet, sender: str, to: str, data: str, value: int = 0) -> dict[str, Any]:
    """One plain transaction from an unlocked account; its receipt (asserted successful)."""
    tx = {"from": sender, "to": to, "data": data, "gas": hex(1_000_000), "value": hex(value)}
    tx_hash = str(devnet.rpc("eth_sendTransaction", tx))
    receipt = devnet.w3.eth.wait_for_transaction_receipt(HexStr(tx_hash), timeout=60)
    assert receipt["status"] == 1, f"{data[:10]} from {sender} reverted"
    return dict(receipt)


def fund_bidder(devnet: Devnet, bidder: ChecksumAddress, dai: int) -> None:
    """`dai` Maker DAI (wad) into `bidder`'s Vat balance, and the Flipper hoped."""
    info = devnet.info.maker
    assert info is not None
    token = mcd.contract(devnet.w3, "Dai", info.dai)
    join = mcd.contract(devnet.w3, "DaiJoin", info.dai_join)
    v = vat(devnet)
    calls = [
        (liquidator(devnet), info.dai, token.encode_abi("transfer", [bidder, dai])),
        (bidder, info.dai, token.encode_abi("approve", [info.dai_join, dai])),
        (bidder, info.dai_join, join.encode_abi("join", [bidder, dai])),
        (bidder, info.vat, v.encode_abi("hope", [flipper(devnet).address])),
    ]
    for sender, to, data in calls:
        send(devnet, sender, to, data)


def chain_bids(devnet: Devnet, ids: list[int], block: int | str = "latest") -> dict[int, Bid]:
    """Flipper.bids(id) of each id, read at `block`."""
    to = flipper(devnet).address
    tag = hex(block) if isinstance(block, int) else block
    return {i: decode_bid(str(devnet.rpc("eth_call", {"to": to, "data": bids_call(i)}, tag)))
            for i in ids}


def revert_reason(devnet: Devnet, sender: str, to: str, data: str) -> str | None:
    """None when `eth_call` of the call succeeds at the head; else the node's error text
    (it carries the contract's revert string)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_call",
                       "params": [{"from": sender, "to": to, "data": data}, "latest"]}).encode()
    request = urllib.request.Request(devnet.info.rpc_url, body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        reply: dict[str, Any] = json.loads(answer.read())
    if "error" not in reply:
        return None
    return json.dumps(reply["error"])


async def block_ref(rpc: HttpRpc, number: int | str) -> BlockRef:
    tag = hex(number) if isinstance(number, int) else number
    head = await rpc.call("eth_getBlockByNumber", [tag, False])
    return BlockRef(int(head["number"], 16), head["hash"], head["parentHash"],
                    int(head["timestamp"], 16))


async def follow(rpc: HttpRpc, book: FlipBook, last: int) -> BlockRef:
    """Apply every block after `last` up to the head to `book`; returns the head."""
    head = await block_ref(rpc, "latest")
    if head.number <= last:
        return head
    events: list[Event] = await rpc.get_logs(book.subscriptions(), last + 1, head.number)
    for number in range(last + 1, head.number + 1):
        ref = await block_ref(rpc, number)
        book.apply([e for e in events if e.block_number == number], ref)
    return head


def gem(devnet: Devnet, who: str) -> int:
    """`who`'s ETH-A gem in the Vat (wad)."""
    return int(vat(devnet).functions.gem(ilk_id(ETH_A), Web3.to_checksum_address(who)).call())


def vat_dai(devnet: Devnet, who: str) -> int:
    """`who`'s DAI in the Vat (rad)."""
    return int(vat(devnet).functions.dai(Web3.to_checksum_address(who)).call())


def as_proxy(devnet: Devnet, to: str, data: str) -> None:
    info = devnet.info.maker
    assert info is not None
    devnet.rpc("anvil_impersonateAccount", info.pause_proxy)
    try:
        send(devnet, info.pause_proxy, to, data)
    finally:
        devnet.rpc("anvil_stopImpersonatingAccount", info.pause_proxy)


def file_cat_box(devnet: Devnet, box: int) -> None:
    info = devnet.info.maker
    assert info is not None
    cat = mcd.contract(devnet.w3, "Cat", info.cat)
    as_proxy(devnet, info.cat, cat.encode_abi("file", [b"box".ljust(32, b"\0"), box]))


async def flip_keeper(devnet: Devnet, journal: Journal, contract: str) -> tuple[Keeper, FlipSide]:
    info = devnet.info
    assert info.maker is not None
    config = maker_config(devnet, contract, ilks={ETH_A: {"join": info.maker.ilks[ETH_A].join}},
                          flip_exit_pair=info.maker.pairs["MCD_WETH/MCD_DAI"],
                          max_vat_dai=5_000, flip_min_profit=5)
    context = StrategyContext(chain_id=info.chain_id, liquidator=info.accounts.liquidator)
    strategy = MakerStrategy(config, context)
    keeper = await devnet_keeper(info, journal, strategy, fees=FeePolicy(3_000 * GWEI, 2 * GWEI),
                                 min_profit=10**15)
    assert isinstance(strategy.flip, FlipSide)
    return keeper, strategy.flip


async def keeper_turn(keeper: Keeper) -> list[Opportunity]:
    """One engine step at the head, its sends awaited to their receipts."""
    async with asyncio.TaskGroup() as tasks:
        return await keeper.step(tasks)


__all__ = ["WAD"]

"""Helpers for the Maker tests: the strategy's config off devnet.json, the MakerKeeper
contract for the liquidator, and feeding the strategy a range of blocks' logs."""

from __future__ import annotations

from collections.abc import Sequence

from web3 import Web3

from keeper.chain.follower import block_ref
from keeper.chain.http import HttpRpc
from keeper.devnet.maker_keeper import deploy_maker_keeper
from keeper.strategy import StrategyContext
from keeper.types import Event
from strategies.maker import MakerConfig, MakerStrategy
from tests.conftest import Devnet


def keeper_contract(devnet: Devnet) -> str:
    """A MakerKeeper owned by the devnet's liquidator."""
    maker = devnet.info.maker
    assert maker is not None
    owner = Web3.to_checksum_address(devnet.info.accounts.liquidator)
    deployed = deploy_maker_keeper(devnet.w3, owner, vat=maker.vat, dai_join=maker.dai_join,
                                   dai=maker.dai)
    return str(deployed.address)


def maker_config(devnet: Devnet, contract: str, **extra: object) -> MakerConfig:
    """`[strategies.maker]` for the devnet's Dog-liquidated ilks (ETH-B, ETH-C)."""
    maker = devnet.info.maker
    assert maker is not None
    ilks = {n: {"join": i.join} for n, i in maker.ilks.items() if i.engine == "clip"}
    return MakerConfig.model_validate({
        "vat": maker.vat, "dog": maker.dog, "cat": maker.cat, "spot": maker.spot,
        "jug": maker.jug, "dai": maker.dai, "dai_join": maker.dai_join,
        "keeper_contract": contract, "ilks": ilks, **extra})


def strategy(devnet: Devnet, contract: str) -> MakerStrategy:
    context = StrategyContext(chain_id=devnet.info.chain_id,
                              liquidator=devnet.info.accounts.liquidator)
    return MakerStrategy(maker_config(devnet, contract), context)


async def feed(chain: HttpRpc, maker: MakerStrategy, start: int, end: int) -> list[int]:
    """Apply the logs of blocks start..end, block by block (each with its header); returns
    the blocks that had logs."""
    events: list[Event] = []
    for log_filter in maker.subscriptions():
        events.extend(await chain.get_logs(log_filter, start, end))
    blocks: list[int] = sorted({e.block_number for e in events})
    for number in blocks:
        raw = await chain.call("eth_getBlockByNumber", [hex(number), False])
        mine: Sequence[Event] = sorted((e for e in events if e.block_number == number),
                                       key=lambda e: e.log_index)
        maker.apply(mine, block_ref(raw))
    return blocks

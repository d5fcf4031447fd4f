"""Helpers for the Maker tests: the strategy's config off devnet.json, the MakerKeeper
contract for the liquidator, feeding the strategy a range of blocks' logs, the keeper's
reverted transactions and its journal checked against the receipts."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from web3 import Web3

from keeper.chain.follower import block_ref
from keeper.chain.http import HttpRpc
from keeper.devnet.maker_keeper import deploy_maker_keeper
from keeper.dex.uniswap_v2 import PairBook
from keeper.execution.receipts import gas_paid, transfers
from keeper.ranking import realized_value
from keeper.strategy import StrategyContext
from keeper.types import Event
from keeper.wiring import Keeper
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


def reverted_sends(devnet: Devnet, low: int, high: int) -> list[str]:
    """The liquidator's transactions mined in blocks low..high whose receipt says reverted
    (whatever the executor classed them as: a race lost to the market reverted too)."""
    me = devnet.info.accounts.liquidator.lower()
    out = []
    for number in range(low, high + 1):
        for tx in devnet.w3.eth.get_block(number, full_transactions=True)["transactions"]:
            assert not isinstance(tx, bytes)  # full transactions were asked for
            if str(tx["from"]).lower() == me and \
                    devnet.w3.eth.get_transaction_receipt(tx["hash"])["status"] != 1:
                out.append(tx["hash"].to_0x_hex())
    return out


async def journal_ledger(
    keeper: Keeper, path: Path, account: str, quote: str
) -> tuple[int, Counter[str]]:
    """Every send the journal at `path` holds as mined is asserted confirmed, with its
    journaled profit equal to its receipt's ERC-20 transfers valued as the engine values
    them (in `quote`, on the keeper's pools as they stand: call it while nothing trades
    them). Returns the journaled profit's sum and, by token, what those transfers moved
    in (+) and out (-) of `account`, to set against its balances."""
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT t.tx_hash, t.status, t.realized_profit, i.collateral, i.debt"
            " FROM transactions t JOIN intents i ON i.key = t.intent_key"
            " WHERE t.block_number IS NOT NULL").fetchall()
    dex = keeper.engine.dex
    assert isinstance(dex, PairBook)
    account = account.lower()
    moved: Counter[str] = Counter()
    total = 0
    for tx_hash, status, profit, collateral, debt in rows:
        assert status == "confirmed", (status, tx_hash)
        receipt = await keeper.chain.call("eth_getTransactionReceipt", [tx_hash])
        flows = transfers(receipt)
        paid = sum(v for t, s, _d, v in flows if t == debt.lower() and s == account)
        got = sum(v for t, _s, d, v in flows if t == collateral.lower() and d == account)
        assert int(profit) == realized_value(
            dex, quote, collateral=collateral.lower(), debt=debt.lower(),
            collateral_received=got, debt_paid=paid, gas_paid=gas_paid(receipt)), tx_hash
        for token, source, dest, value in flows:
            moved[token] += (value if dest == account else 0) - (value if source == account
                                                                  else 0)
        total += int(profit)
    return total, moved

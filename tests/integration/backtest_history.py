"""A devnet "history" for the archive backtest: blocks with ambient traffic, price drops, and a
competing liquidator bot, mined one by one with automine off.

Each block holds, in this order: a few ambient transfers; the competitor's liquidations
(decided by polling `Pool.getUserAccountData` of the seeded WETH-collateral borrowers at
the previous block, like a simple per-block bot); on every third block a WETH price drop
posted by the feed owner; one more ambient transfer. So the price update sits in the
middle of a block of several transactions, and the competitor reacts one block later.

The keeper of the backtests is the devnet liquidator (dev account 1, $5M of every token).
It sends nothing in the range; its allowances are set before it, as a live keeper's would.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from eth_typing import ChecksumAddress, HexStr
from web3 import Web3

from keeper.config import KeeperConfig, load_config
from keeper.devnet.artifacts import aave
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY
from keeper.devnet.info import DevnetInfo
from keeper.devnet.tokens import price_feed, to_feed_answer
from tests.conftest import Devnet, seeded_borrowers
from tests.integration.helpers import (
    MAX_UINT,
    SPECS,
    WAD,
    contract,
    fresh_accounts,
    liquidator,
    tokens,
    units,
)

POOL_ABI = "protocol/pool/Pool.sol/Pool.json"
WETH_DROP = Decimal("0.95")  # each price update: WETH falls 5%
LIQUIDATION_GAS = 1_200_000
TRANSFER_GAS = 100_000


@dataclass
class History:
    """The generated range and what happened in it."""

    first: int
    last: int
    keeper: ChecksumAddress
    competitor: ChecksumAddress
    price_blocks: list[int] = field(default_factory=list)
    liquidations: list[HexStr] = field(default_factory=list)  # the competitor's tx hashes
    busiest: int = 0  # most transactions in one block


def _fund(devnet: Devnet, competitor: ChecksumAddress, traders: list[ChecksumAddress]) -> None:
    """Before the range (automine on): tokens and allowances for the competitor, allowances for
    the keeper (Aave Pool and Morpho), a little USDC for the traders."""
    info = devnet.info
    keeper = liquidator(devnet)
    spenders = [Web3.to_checksum_address(a) for a in (info.aave_v3.pool, info.morpho_blue.morpho)]
    sent = []
    for symbol, token in tokens(devnet).items():
        sent.append(token.functions.mint(competitor, units(symbol, 1_000_000)).transact(
            {"from": competitor}))
        for spender in spenders:
            sent.append(token.functions.approve(spender, MAX_UINT).transact({"from": competitor}))
            sent.append(token.functions.approve(spender, MAX_UINT).transact({"from": keeper}))
    usdc = tokens(devnet)["USDC"]
    for trader in traders:
        sent.append(usdc.functions.mint(trader, units("USDC", 10_000)).transact({"from": trader}))
    # Automine answers a send before it mines it: the range must start after all of these.
    for tx in sent:
        devnet.w3.eth.wait_for_transaction_receipt(tx)


def make_history(devnet: Devnet, *, blocks: int = 30, seed: int = 3) -> History:
    """Mine `blocks` blocks of scenario on the devnet; returns the range and its story."""
    w3, info = devnet.w3, devnet.info
    rng = random.Random(seed)
    competitor, *traders = fresh_accounts(devnet, 3)
    _fund(devnet, competitor, traders)
    pool = contract(devnet, aave(POOL_ABI), info.aave_v3.pool)
    feed = contract(devnet, price_feed(), info.feeds["WETH"])
    erc20 = tokens(devnet)
    usdc, weth = erc20["USDC"], erc20["WETH"]
    # The bot watches the WETH-collateral Aave borrowers with one debt asset.
    watched = [(p.address, next(iter(p.debt_usd))) for p in seeded_borrowers("aave_v3")
               if p.kind in ("weth-usdc", "weth-dai")]
    deployer = Web3.to_checksum_address(info.accounts.deployer)
    history = History(w3.eth.block_number + 1, 0, liquidator(devnet), competitor)
    price = SPECS["WETH"].usd_price
    attempted: set[str] = set()

    def ambient() -> None:
        sender, receiver = rng.sample(traders, 2)
        usdc.functions.transfer(receiver, units("USDC", rng.randint(1, 50))).transact(
            {"from": sender, "gas": TRANSFER_GAS})

    devnet.rpc("evm_setAutomine", False)
    try:
        for index in range(blocks):
            for _ in range(rng.randint(1, 3)):
                ambient()
            weak = [(user, debt) for user, debt in watched if user not in attempted
                    and pool.functions.getUserAccountData(user).call()[5] < WAD]
            for user, debt in weak[:3]:
                attempted.add(user)
                tx = pool.functions.liquidationCall(
                    weth.address, erc20[debt].address, user, MAX_UINT, False,
                ).transact({"from": competitor, "gas": LIQUIDATION_GAS})
                history.liquidations.append(HexStr(Web3.to_hex(tx)))
            if index % 3 == 1:
                price *= WETH_DROP
                feed.functions.updateAnswer(to_feed_answer(price)).transact(
                    {"from": deployer, "gas": TRANSFER_GAS})
                history.price_blocks.append(w3.eth.block_number + 1)
            ambient()
            devnet.rpc("evm_mine")
            mined = w3.eth.get_block("latest")
            history.busiest = max(history.busiest, len(mined["transactions"]))
    finally:
        devnet.rpc("evm_setAutomine", True)
    history.last = w3.eth.block_number
    return history


def devnet_keeper_config(info: DevnetInfo, directory: Path, *, active: bool) -> KeeperConfig:
    """The devnet keeper's config (dry-run, both strategies); `active` gives it the
    liquidator's key through the environment, which is restored afterwards."""
    path = directory / "keeper.toml"
    path.write_text(
        f'[chain]\nchain_id = {info.chain_id}\nhttp_urls = ["{info.rpc_url}"]\n\n'
        f'[execution]\nmode = "dry-run"\nquote_token = "{info.tokens["WETH"].address}"\n'
        'min_profit_quote = "0"\nmax_fee_per_gas_gwei = "3000"\n\n'
        f'[dex]\nuniswap_v2_factory = "{info.uniswap_v2.factory}"\n\n'
        f'[strategies.aave_v3]\naddresses_provider = "{info.aave_v3.addresses_provider}"\n\n'
        f'[strategies.morpho_blue]\nmorpho = "{info.morpho_blue.morpho}"\n')
    key = "KEEPER_ACCOUNT__PRIVATE_KEY"
    saved = os.environ.pop(key, None)
    try:
        if active:
            os.environ[key] = DEVNET_LIQUIDATOR_KEY
        return load_config(path)
    finally:
        os.environ.pop(key, None)
        if saved is not None:
            os.environ[key] = saved

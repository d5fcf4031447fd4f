"""The engine liquidating through the flash executor, from an account that holds no debt asset.

A FlashLiquidator owned by a fresh dev account (ETH only) is deployed on the devnet; the
engine, sending as that account with `flash_executor` set, follows a crash on both
protocols. Every liquidation borrows its debt asset by flash loan (Morpho Blue's, free),
sells the seized collateral, and pays the surplus to the account in WETH (the quote
token); the contract reverts unless it covers the gas and the minimum profit.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from eth_account import Account
from web3 import Web3

from keeper.demo import build_keeper
from keeper.deploy_executor import deploy_flash_liquidator
from keeper.execution.journal import Journal
from tests.conftest import Devnet
from tests.integration.helpers import FRESH_ACCOUNT_INDEXES, crash_in_one_block, tokens

MNEMONIC = "test test test test test test test test test test test junk"
GWEI = 10**9
TIMEOUT = 60.0


def _owner() -> tuple[str, str]:
    Account.enable_unaudited_hdwallet_features()
    account = Account.from_mnemonic(
        MNEMONIC, account_path=f"m/44'/60'/0'/0/{FRESH_ACCOUNT_INDEXES[-1]}")
    return account.address, "0x" + bytes(account.key).hex()


async def test_flash_liquidations_from_an_account_without_debt_assets(
    devnet: Devnet, tmp_path: Path
) -> None:
    address, key = _owner()
    erc20s = tokens(devnet)
    held = {s: int(t.functions.balanceOf(address).call()) for s, t in erc20s.items()}
    assert all(v == 0 for v in held.values()), held
    Account.enable_unaudited_hdwallet_features()
    deployed = await asyncio.to_thread(
        deploy_flash_liquidator, devnet.w3, address, Account.from_key(key),
        aave_pool=devnet.info.aave_v3.pool, morpho=devnet.info.morpho_blue.morpho,
        max_fee_per_gas=100 * GWEI, priority_fee=GWEI)
    journal = Journal(tmp_path / "j.sqlite")
    engine = await build_keeper(devnet.info, journal, key=key, flash_executor=deployed.address,
                                ws=True)
    eth_before = int(devnet.w3.eth.get_balance(Web3.to_checksum_address(address)))
    try:
        await asyncio.to_thread(crash_in_one_block, devnet)
        stop = asyncio.Event()
        task = asyncio.create_task(engine.run(stop))
        deadline = time.monotonic() + TIMEOUT
        try:
            # Until both protocols have a confirmed liquidation and nothing is in flight.
            while True:
                protocols = {o.key.split(":")[1] for o in engine.outcomes.confirmed}
                if protocols >= {"aave_v3", "morpho_blue"} and not engine.inflight:
                    break
                assert time.monotonic() < deadline, (protocols, engine.outcomes.recent[-5:])
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await task
    finally:
        await engine.aclose()
        journal.close()
    outcomes = engine.outcomes
    assert not [o for o in outcomes if o.status in ("reverted", "error")], outcomes
    confirmed = engine.outcomes.confirmed
    assert all(o.realized_profit > 0 for o in confirmed), confirmed
    after = {s: int(t.functions.balanceOf(address).call()) for s, t in erc20s.items()}
    eth_spent = eth_before - int(devnet.w3.eth.get_balance(Web3.to_checksum_address(address)))
    weth_gain = after["WETH"] - held["WETH"]
    # The surplus arrives in WETH only; it pays for the gas, and the rest is profit.
    assert all(after[s] == 0 for s in after if s != "WETH"), after
    # Sends that did not confirm (lost races, withdrawn sends) cost their gas: their
    # realized profit is that cost, negative.
    assert weth_gain - eth_spent == sum(o.realized_profit for o in outcomes) > 0, [
        (o.status, o.realized_profit, o.gas_paid) for o in outcomes if o.status != "confirmed"]
    # A crash makes many liquidations of one debt token at once: they go out in batches.
    transactions = {o.tx_hash: 1 + len(o.members) for o in confirmed}
    assert max(transactions.values()) > 1, transactions
    assert sum(transactions.values()) == len(confirmed)
    with Journal(tmp_path / "j.sqlite") as reopened:
        for o in confirmed:
            record = reopened.get(o.key)
            assert record is not None and record.status == "confirmed", (o, record)
        assert reopened.summary().counts["confirmed"] == len(confirmed)
    print(f"\nflash: {len(confirmed)} liquidations in {len(transactions)} transactions "
          f"({dict(Counter(o.key.split(':')[1] for o in confirmed))}), "
          f"batch sizes {sorted(transactions.values(), reverse=True)}, "
          f"WETH gained {weth_gain}, gas paid {eth_spent} wei")
